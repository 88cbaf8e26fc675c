//! What the mailbox of tickets by email is doing now, for `/readyz` and `franz status`: briefkasten writes it,
//! `ops` reads it. Whether the mailbox is connected, waiting with IDLE or looking on a schedule, or down and when
//! it is tried again; when a mail was last taken; how many replies the mail server could not take yet.
//!
//! A mailbox that cannot be reached does not make franz unready: the desk, Discord and the rest work on, and the
//! state (with the last problem beside it) says what is wrong. Nothing here holds the password.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// How the state of a mailbox that cannot be reached begins.
pub const NOT_CONNECTED: &str = "not connected";

/// The mailbox as `/readyz` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MailboxState {
    /// The mailbox read, as `mail.imap_url`, and the user who signs in.
    pub mailbox: String,
    pub user: String,
    /// What it does now: `starting`, `connecting`, `reading`, `waiting for mail (IDLE)`, `looking every 60s`,
    /// or `not connected: why; trying again in 8s`.
    pub state: String,
    /// Since when it does that (RFC 3339, UTC).
    pub since: String,
    /// When a mail was last taken (RFC 3339, UTC).
    #[serde(default)]
    pub last_taken: Option<String>,
    /// Where replies are sent (`mail.smtp_url`); `None` when they are not sent by mail.
    #[serde(default)]
    pub replies: Option<String>,
    /// Replies the mail server could not take yet, each tried again on its own.
    #[serde(default)]
    pub replies_waiting: usize,
}

/// The mailbox's state, shared between the service that writes it and the endpoints that read it; `None` until
/// briefkasten starts. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Watch(Arc<Mutex<Option<MailboxState>>>);

impl Watch {
    /// briefkasten starts on `mailbox` as `user`, sending replies through `replies`, if set.
    pub fn start(&self, mailbox: String, user: String, replies: Option<String>) {
        let state = MailboxState {
            mailbox,
            user,
            state: "starting".to_owned(),
            since: crate::schema::now_rfc3339(),
            replies,
            ..MailboxState::default()
        };
        *self.lock() = Some(state);
    }

    /// The mailbox now does `what` (one line, free of secrets). `since` stays while the kind of state (the text
    /// before its first `:`) stays, so a mailbox down for an hour says since when, whatever the last failure was.
    pub fn doing(&self, what: impl std::fmt::Display) {
        if let Some(state) = self.lock().as_mut() {
            let what: String = crate::terminal::visible(&what.to_string()).chars().take(300).collect();
            let kind = |text: &str| text.split(':').next().unwrap_or_default().to_owned();
            if kind(&state.state) != kind(&what) {
                state.since = crate::schema::now_rfc3339();
            }
            state.state = what;
        }
    }

    /// The mailbox connects: shown as `connecting`, unless it is down, which it stays until it reads again.
    pub fn connecting(&self) {
        let down = self.lock().as_ref().is_some_and(|state| state.state.starts_with(NOT_CONNECTED));
        if !down {
            self.doing("connecting");
        }
    }

    /// A mail was taken now.
    pub fn taken(&self) {
        if let Some(state) = self.lock().as_mut() {
            state.last_taken = Some(crate::schema::now_rfc3339());
        }
    }

    /// `count` replies wait for the mail server.
    pub fn replies_waiting(&self, count: usize) {
        if let Some(state) = self.lock().as_mut() {
            state.replies_waiting = count;
        }
    }

    /// The state now, if briefkasten runs.
    pub fn get(&self) -> Option<MailboxState> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<MailboxState>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by an attack (#34, mailbox state), failing first: with the IMAP server down, every reconnect set
    /// `connecting` and then `not connected: …; trying again in 16s`, each a new `since`: after an hour down,
    /// `franz status` said "since" a few seconds ago.
    #[test]
    fn nothing_is_shown_until_briefkasten_starts_and_a_state_keeps_its_first_time() {
        let watch = Watch::default();
        watch.doing("reading");
        assert_eq!(watch.get(), None, "a franz without the mail service shows no mailbox");
        watch.start("imaps://imap.example.com/INBOX".into(), "support@example.com".into(), None);
        watch.doing("waiting for mail (IDLE)");
        let since = watch.get().unwrap().since;
        watch.doing("waiting for mail (IDLE)");
        assert_eq!(watch.get().unwrap().since, since, "the same state again is not a new one");
        watch.doing("not connected: refused\n\u{1b}[2J");
        assert!(!watch.get().unwrap().state.chars().any(char::is_control));
        // Reconnecting while down, and failing again otherwise, is the same state since the same time.
        let down_since = "2026-12-07T10:00:00Z".to_owned();
        watch.lock().as_mut().unwrap().since = down_since.clone();
        watch.connecting();
        watch.doing("not connected: timed out; trying again in 16s");
        let state = watch.get().unwrap();
        assert_eq!((state.state.as_str(), state.since), ("not connected: timed out; trying again in 16s", down_since));
        watch.doing("reading");
        watch.connecting();
        assert_eq!(watch.get().unwrap().state, "connecting");
        watch.taken();
        watch.replies_waiting(2);
        let state = watch.get().unwrap();
        assert!(state.last_taken.is_some());
        assert_eq!(state.replies_waiting, 2);
    }
}
