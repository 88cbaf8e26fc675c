//! The staff side of the bot: a card per ticket in the staff channel (or its team's own, `people::StaffChannel`),
//! kept up to date, whose buttons work the ticket through akte; and direct messages that keep each ticket's submitter informed.
//!
//! `card` builds a card from a ticket's state (pure), `cards` is the card map (which message is whose card, on a
//! topic every franz of the cluster shares, so several processes post one card per ticket), `notify` says what a
//! submitter is told (pure) and sends it, `follow` posts and edits cards, and sends those messages, from
//! `ticket-events` (two followers, so neither waits for the other), and `buttons` turns presses of staff members
//! into lifecycle commands. The gateway session is kummerkasten's own (one per bot), so this module has no task of
//! its own beyond `follow`; it reads tickets from the ticket store and never writes it.

pub mod buttons;
pub mod card;
pub mod cards;
pub mod follow;
pub mod notify;

use std::path::PathBuf;

use crate::people::StaffChannel;
use crate::store::Store;

/// What the staff side needs. It runs when there are cards, or messages to submitters, or both.
#[derive(Clone)]
pub struct Settings {
    /// Where the cards go and who may press their buttons; `None` without a staff channel and role.
    pub cards: Option<StaffChannel>,
    /// Whether submitters get a direct message when their ticket is claimed, answered publicly or closed.
    pub notify_submitter: bool,
    /// A private thread per ticket, where those messages go instead (`kummerkasten::threads`).
    pub threads: Option<super::threads::Threads>,
    /// The threads opened here, shared with the bot that reads them.
    pub threads_known: super::threads::Known,
    /// The ticket store the cards and messages are drawn from, and where akte's answers to presses appear.
    pub store: Store,
    /// The card map's topic (`cards`), shared by every franz on the cluster.
    pub cards_topic: String,
    /// Where an earlier franz kept its cards, beside the ticket store: imported to `cards_topic` once, then renamed.
    pub cards_path: PathBuf,
    /// Where the staff list is (`people`), which says whose Discord account may press the cards' buttons.
    pub staff_dir: PathBuf,
    /// Partitions of `ticket-commands`, to put a command where akte decides its ticket.
    pub partitions: i32,
    /// `ticket-commands`, where presses and deliveries go.
    pub commands_topic: String,
    /// The web desk's public URL (`desk.public_url`): cards link to their ticket's page there.
    pub desk_url: Option<String>,
    /// Where a card, a direct message or a press that failed is reported as the bot's last problem.
    pub troubles: crate::troubles::Troubles,
    /// The topic where what Discord refused for good is published (the desk's problems page, absturz).
    pub errors_topic: String,
    /// Whether the direct message about a close carries the ticket's transcript as a file.
    pub transcript_on_close: bool,
    /// The satisfaction question a close message ends with, above its five buttons, when submitters are asked.
    pub survey: Option<String>,
    /// Counts what Discord refused for good (`franz_discord_refused_total`).
    pub refused: prometheus_client::metrics::family::Family<
        crate::metrics::RefusedLabel,
        prometheus_client::metrics::counter::Counter,
    >,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("staff::Settings")
            .field("cards", &self.cards)
            .field("notify_submitter", &self.notify_submitter)
            .field("store", &self.store)
            .field("cards_topic", &self.cards_topic)
            .field("cards_path", &self.cards_path)
            .field("staff_dir", &self.staff_dir)
            .field("partitions", &self.partitions)
            .field("desk_url", &self.desk_url)
            .field("errors_topic", &self.errors_topic)
            .finish_non_exhaustive()
    }
}

/// Where franz kept its cards before the cards topic: beside the ticket store. A file there is imported once.
pub fn cards_path(store: &Store) -> PathBuf {
    store.path().with_file_name("discord-cards.sqlite")
}

/// Why the staff side is off, when it is: one line for the ready table; `None` when both settings are there.
pub fn off_reason(channel: Option<u64>, role: Option<u64>) -> Option<&'static str> {
    match (channel, role) {
        (Some(_), Some(_)) => None,
        (None, _) => Some(
            "staff cards off: set DISCORD_STAFF_CHANNEL_ID and DISCORD_STAFF_ROLE_ID for a card per ticket with \
             Claim and Close (README: Staff cards in Discord)",
        ),
        (Some(_), None) => Some(
            "staff cards off: DISCORD_STAFF_CHANNEL_ID is set but DISCORD_STAFF_ROLE_ID is not, and without a staff \
             role nobody could press the buttons",
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_staff_side_is_off_with_a_reason_unless_both_channel_and_role_are_set() {
        assert_eq!(super::off_reason(Some(1), Some(2)), None);
        assert!(super::off_reason(None, None).unwrap().contains("DISCORD_STAFF_CHANNEL_ID"));
        assert!(super::off_reason(Some(1), None).unwrap().contains("DISCORD_STAFF_ROLE_ID is not"));
    }
}
