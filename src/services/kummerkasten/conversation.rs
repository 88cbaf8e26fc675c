//! The submitter's side of a conversation, in direct messages with the bot: what a submitter writes there becomes
//! a message on one of their tickets (`write`, decided by akte like every change).
//!
//! Which ticket: a Discord *reply* to one of the bot's direct messages goes to the ticket that message was about
//! (the ticket store knows every message the bot delivered, `query::sent_about`); a plain message goes to the
//! submitter's only ticket that is not closed; with several, the bot asks which with a select menu, and with none
//! it offers to open a new ticket with the message. A message to a ticket closed longer than the reopen window
//! opens a new ticket that follows the closed one instead.
//!
//! Everything a submitter sends is hostile text: bounded (4,000 characters, 10 attachments) and rate-limited per
//! person ([`Limiter`]); the excess is answered once and not recorded. The command id is derived from the
//! Discord message id, so a message handled twice is one message. The bot answers each recorded message with a
//! ✅ reaction once the broker has the command, and with a short reply when akte refuses it or it could not be
//! sent. The decisions here are pure functions ([`Limiter::admit`], [`check`], [`route`], the texts), tested
//! without Discord; [`received`] and [`chosen`] do the I/O.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poise::serenity_prelude as serenity;
use serde_json::{Value, json};

use super::{Data, NAME, connect};
use crate::discord::{clip, plain};
use crate::intake::{self, Submission};
use crate::kafka::tickets::send_command;
use crate::lifecycle::{ATTACHMENTS_MAX, MESSAGE_MAX, TicketState};
use crate::schema::lifecycle::{Action, Actor, ActorSource, Attachment, Change, Command, Status, Via};
use crate::store::query;

/// How many messages one person may send in [`WINDOW`] before the rest are refused.
pub const PER_WINDOW: usize = 10;
/// The window of the rate limit.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The most tickets a select menu offers (Discord's limit on a menu's options).
const CHOICES_MAX: usize = 25;
/// How long the bot waits for akte's answer before it stops waiting (the message is recorded either way).
const ANSWER_PATIENCE: Duration = Duration::from_secs(10);
/// How long an answer to one of the bot's messages waits for the ticket store to learn which ticket that message
/// was about: its delivery is recorded right after it was sent, but goes through akte and the store.
const SENT_PATIENCE: Duration = Duration::from_secs(10);
/// How many people the limiter remembers before it forgets the quiet ones.
const REMEMBERED_MAX: usize = 10_000;
/// The reaction that says "recorded".
const RECEIPT: &str = "✅";
/// The reaction that says "not recorded" (over the rate limit, after the one answer that says so).
const NOT_RECORDED: &str = "⛔";
/// How old a message a start still takes: older ones (from before franz took direct messages, say) are left alone.
const CATCH_UP_AGE: Duration = Duration::from_secs(24 * 3600);
/// The custom id prefix of the ticket choice (a select menu) and of the offer to open a ticket (a button).
pub const PICK: &str = "conv:pick:";
pub const OPEN: &str = "conv:open:";

/// Messages per person in a sliding window. A person over the limit is told once per window.
#[derive(Debug, Default)]
pub struct Limiter {
    seen: HashMap<u64, (VecDeque<Instant>, bool)>,
}

/// What the limiter says about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Over the limit; `tell` on the first refusal in the window.
    No {
        tell: bool,
    },
}

impl Limiter {
    /// Whether `user` may send a message at `now`.
    pub fn admit(&mut self, user: u64, now: Instant) -> Admit {
        if self.seen.len() >= REMEMBERED_MAX {
            self.seen.retain(|_, (times, _)| times.back().is_some_and(|last| now.duration_since(*last) < WINDOW));
        }
        let (times, told) = self.seen.entry(user).or_default();
        while times.front().is_some_and(|first| now.duration_since(*first) >= WINDOW) {
            times.pop_front();
        }
        if times.len() < PER_WINDOW {
            times.push_back(now);
            *told = false;
            return Admit::Yes;
        }
        let tell = !*told;
        *told = true;
        Admit::No { tell }
    }
}

/// What the bot keeps for conversations: the rate limit; a lock per person, so that one person's messages are
/// handled one after the other (and a new ticket one opened is known before their next message is routed) while
/// nobody waits for anybody else; and which ticket each chosen message went to, so that a second choice of the
/// same message is no second message.
#[derive(Debug, Default)]
pub struct Conversations {
    limiter: Mutex<Limiter>,
    order: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    chosen: Mutex<HashMap<u64, String>>,
    /// Held by the start's look for missed messages ([`catch_up`]).
    catching_up: tokio::sync::Mutex<()>,
}

impl Conversations {
    /// Waits for `user`'s turn; the guard ends it.
    async fn turn(&self, user: u64) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut order = self.order.lock().unwrap_or_else(|p| p.into_inner());
            if order.len() >= REMEMBERED_MAX {
                order.retain(|_, lock| Arc::strong_count(lock) > 1);
            }
            order.entry(user).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Remembers that message `id` went to `ticket`; the ticket it went to before, if it was chosen already.
    fn choose(&self, id: u64, ticket: &str) -> Option<String> {
        let mut chosen = self.chosen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(before) = chosen.get(&id) {
            return Some(before.clone());
        }
        if chosen.len() >= REMEMBERED_MAX {
            chosen.clear(); // the menus of long ago were replaced by their answers anyway
        }
        chosen.insert(id, ticket.to_owned());
        None
    }
}

/// A message as the bot takes it: text and attachments, bounded.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: u64,
    pub channel_id: u64,
    pub author: u64,
    pub username: String,
    pub body: String,
    pub attachments: Vec<Attachment>,
    /// The message it answers (a Discord reply), if any.
    pub reply_to: Option<u64>,
    /// The message that one answers, when it is the bot's (a long reply's later part answers its first part).
    pub reply_to_first: Option<u64>,
    /// Whether that message is one of the bot's messages about a ticket (its own, and no answer to someone: the
    /// bot's answers in a conversation are Discord replies, its messages about tickets are not).
    pub reply_to_notice: bool,
    /// Where it was written: a direct message, or a ticket's thread (a message in a server).
    pub via: Via,
}

impl Message {
    pub(super) fn from_discord(message: &serenity::Message) -> Message {
        let attachments = message
            .attachments
            .iter()
            .map(|file| Attachment {
                name: file.filename.clone(),
                size: u64::from(file.size),
                content_type: file.content_type.clone(),
                url: file.url.clone(),
                sha256: None,
            })
            .collect();
        Message {
            id: message.id.get(),
            channel_id: message.channel_id.get(),
            author: message.author.id.get(),
            username: message.author.name.clone(),
            body: message.content.trim().to_owned(),
            attachments,
            reply_to: message.message_reference.as_ref().and_then(|r| r.message_id).map(|id| id.get()),
            reply_to_first: message
                .referenced_message
                .as_ref()
                .filter(|answered| answered.author.bot)
                .and_then(|answered| answered.message_reference.as_ref()?.message_id)
                .map(|id| id.get()),
            reply_to_notice: message
                .referenced_message
                .as_ref()
                .is_some_and(|answered| answered.author.bot && answered.message_reference.is_none()),
            via: if message.guild_id.is_some() { Via::DiscordThread } else { Via::DiscordDm },
        }
    }

    /// The command that records this message on `ticket`; its id comes from the Discord message, so the same
    /// message is one command however often it is handled.
    pub fn command(&self, ticket: &str) -> Command {
        Command {
            command_id: format!("discord-message:{}", self.id),
            ticket_id: ticket.to_owned(),
            actor: Actor {
                source: ActorSource::Discord,
                name: self.username.clone(),
                id: Some(self.author.to_string()),
                staff: None,
            },
            action: Action::Write {
                body: self.body.clone(),
                attachments: self.attachments.clone(),
                via: self.via,
                message_id: Some(self.id.to_string()),
            },
        }
    }

    /// The text of a new ticket made of this message: its text, and its attachments as links as far as they fit
    /// in a ticket's text; the names of those that did not.
    fn ticket_text(&self) -> (String, Vec<String>) {
        self.text_with_links(crate::schema::MAX_MESSAGE_CHARS)
    }

    /// Its text and its attachments as links, as far as they fit in `max` characters; the names of those that did
    /// not.
    pub(super) fn text_with_links(&self, max: usize) -> (String, Vec<String>) {
        let mut text = self.body.clone();
        let mut left_out = Vec::new();
        for file in &self.attachments {
            let line = format!("\n[attachment] {} ({} bytes): {}", file.name, file.size, file.url);
            if text.trim().chars().count() + line.chars().count() <= max {
                text.push_str(&line);
            } else {
                left_out.push(file.name.clone());
            }
        }
        (text.trim().to_owned(), left_out)
    }
}

/// Why a message cannot be recorded at all, as the submitter reads it; `None` when it can.
pub fn check(message: &Message) -> Option<String> {
    let chars = message.body.chars().count();
    if chars > MESSAGE_MAX {
        return Some(format!(
            "This message has {chars} characters; a ticket takes at most {MESSAGE_MAX} per message. It was **not** \
             recorded: please send it in shorter parts."
        ));
    }
    if message.attachments.len() > ATTACHMENTS_MAX {
        return Some(format!(
            "This message has {} attachments; a ticket takes at most {ATTACHMENTS_MAX} per message. It was **not** \
             recorded: please send them in several messages.",
            message.attachments.len()
        ));
    }
    if message.body.is_empty() && message.attachments.is_empty() {
        return Some(
            "This message has no text or file the ticket can keep (stickers and embeds are not kept), so it was \
             not recorded."
                .to_owned(),
        );
    }
    None
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// To this ticket.
    To(TicketState),
    /// To a new ticket that follows this closed one (closed longer than the reopen window).
    Follow(TicketState),
    /// The submitter has several tickets that are not closed: ask which.
    Ask(Vec<TicketState>),
    /// The submitter has no ticket that is not closed: offer to open one.
    Offer,
}

/// Where a message goes: to `answered` (the ticket of the bot's message it replies to) if there is one, else to
/// the only one of `open` (the submitter's tickets that are not closed, newest first), else ask or offer. A closed
/// ticket past `reopen_within` (at `now`) is followed by a new ticket instead.
pub fn route(
    answered: Option<TicketState>,
    open: Vec<TicketState>,
    now: chrono::DateTime<chrono::Utc>,
    reopen_within: Duration,
) -> Route {
    let ticket = match answered {
        Some(ticket) => ticket,
        None if open.len() == 1 => open.into_iter().next().expect("one ticket"),
        None if open.is_empty() => return Route::Offer,
        None => return Route::Ask(open.into_iter().take(CHOICES_MAX).collect()),
    };
    let closed_long_ago = ticket.status == Status::Closed
        && ticket
            .closed_at
            .as_deref()
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            .is_some_and(|closed| now.signed_duration_since(closed).to_std().is_ok_and(|age| age > reopen_within));
    if closed_long_ago { Route::Follow(ticket) } else { Route::To(ticket) }
}

/// A ticket as a choice names it: its first line.
fn title(ticket: &TicketState) -> String {
    let first_line = ticket.body.lines().find(|line| !line.trim().is_empty()).unwrap_or("(no text)");
    clip(first_line.trim(), 90)
}

/// The question when the submitter has several tickets: a select menu of them, answering `message`.
pub fn ask(message: &Message, tickets: &[TicketState]) -> Value {
    let options: Vec<Value> = tickets
        .iter()
        .map(|ticket| {
            json!({
                "label": title(ticket),
                "value": ticket.id,
                "description": clip(&format!("ticket {} · {}", ticket.id, ticket.status.name()), 100),
            })
        })
        .collect();
    json!({
        "content": "You have several tickets open. Which one is this message about?",
        "components": [{"type": 1, "components": [{
            "type": 3, "custom_id": format!("{PICK}{}", message.id), "placeholder": "Choose a ticket",
            "min_values": 1, "max_values": 1, "options": options,
        }]}],
        "message_reference": {"message_id": message.id.to_string(), "fail_if_not_exists": false},
        "allowed_mentions": {"parse": []},
    })
}

/// The offer when the submitter has no open ticket: a button that opens one with `message`.
pub fn offer(message: &Message) -> Value {
    json!({
        "content": "You have no open ticket. Open a new one with this message?",
        "components": [{"type": 1, "components": [{
            "type": 2, "style": 1, "label": "Open a ticket", "custom_id": format!("{OPEN}{}", message.id),
        }]}],
        "message_reference": {"message_id": message.id.to_string(), "fail_if_not_exists": false},
        "allowed_mentions": {"parse": []},
    })
}

/// A plain answer to `message_id`, pinging nobody.
fn answer(message_id: u64, text: &str) -> Value {
    json!({
        "content": clip(text, 2000),
        "message_reference": {"message_id": message_id.to_string(), "fail_if_not_exists": false},
        "allowed_mentions": {"parse": []},
    })
}

/// The answer when the limit is reached.
pub fn too_fast() -> String {
    format!(
        "You are sending messages faster than the ticket can take them (at most {PER_WINDOW} a minute). This one \
         and the next ones in this minute are **not** recorded; please send them again in a minute."
    )
}

/// Handles a message to the bot: one in its direct messages is recorded on its ticket, or the bot asks, offers or
/// explains; one in a server goes to `threads` (a ticket's thread, or none of the bot's business).
pub async fn received(http: &serenity::Http, data: &Data, message: &serenity::Message) {
    if !takes(message) {
        return;
    }
    let message = Message::from_discord(message);
    if !admitted(http, data, &message).await {
        return;
    }
    let Some(store) = data.store.clone() else {
        say(http, data, &message, "This bot cannot take messages here; please use `/ticket` in the server.").await;
        return;
    };
    take(http, data, &store, message, None).await;
}

/// Whether the bot takes `message` at all: a person's own text (not the bot's messages, nor Discord's notices of a
/// pin or a new member).
pub(super) fn takes(message: &serenity::Message) -> bool {
    !message.author.bot && matches!(message.kind, serenity::MessageType::Regular | serenity::MessageType::InlineReply)
}

/// Whether `message` is within its author's rate limit and the bounds of a message; if not, the author is told
/// (once per window for the limit, a ⛔ on the later ones) and it is not recorded.
pub(super) async fn admitted(http: &serenity::Http, data: &Data, message: &Message) -> bool {
    let admitted =
        data.conversations.limiter.lock().unwrap_or_else(|p| p.into_inner()).admit(message.author, Instant::now());
    if let Admit::No { tell } = admitted {
        tracing::info!(user = message.author, "a message over the rate limit was not recorded");
        if tell {
            say(http, data, message, &too_fast()).await;
        } else {
            // Marked, so that the submitter sees which were not recorded, and no later start takes them.
            react(http, data, message, NOT_RECORDED).await;
        }
        return false;
    }
    if let Some(refusal) = check(message) {
        say(http, data, message, &refusal).await;
        return false;
    }
    true
}

/// Records the submitter's admitted `message` where it belongs: on `thread`'s ticket when it was written in that
/// ticket's thread, else where [`route`] sends a direct message.
pub(super) async fn take(
    http: &serenity::Http,
    data: &Data,
    store: &crate::store::Store,
    message: Message,
    thread: Option<TicketState>,
) {
    // Held to the end: the person's next message is routed once this one is recorded (and a ticket it opened is
    // known).
    let _turn = data.conversations.turn(message.author).await;
    let found = match thread {
        Some(ticket) => Ok((Some(ticket), Vec::new())),
        None => find(store, &message).await,
    };
    let (answered, open) = match found {
        Ok(found) => found,
        Err(error) => {
            problem(data, format!("a direct message could not be matched to its ticket: {error:#}"));
            say(
                http,
                data,
                &message,
                "Your message could **not** be recorded right now. Please send it again in a minute.",
            )
            .await;
            return;
        }
    };
    // A reply to a message about another person's ticket (forwarded, say) is no answer of theirs.
    let answered = answered.filter(|ticket| ticket.contact_id.as_deref() == Some(user_of(&message).as_str()));
    match route(answered, open, chrono::Utc::now(), data.reopen_within) {
        Route::To(ticket) => send(http, data, &message, message.command(&ticket.id)).await,
        Route::Follow(old) => {
            let (text, opened) = open_ticket(data, &message, Some(old.id.clone())).await;
            say(http, data, &message, &text).await;
            if let Some(new) = opened {
                // The next answer to the same closed ticket goes to this one: wait until the store knows it.
                let created = crate::schema::lifecycle::create_command_id(&new);
                if !matches!(store.answer(&new, &created, ANSWER_PATIENCE).await, Ok(Some(_))) {
                    tracing::warn!(ticket = %new, "a ticket opened from a direct message is not in the store yet");
                }
            }
        }
        Route::Ask(tickets) => post(http, data, message.channel_id, &ask(&message, &tickets)).await,
        Route::Offer if data.guild.is_some() => {
            let text = "You have no open ticket. To open one, use `/ticket` in the server.";
            say(http, data, &message, text).await;
        }
        Route::Offer => post(http, data, message.channel_id, &offer(&message)).await,
    }
}

/// The ticket of the bot's message that `message` answers, if any, and the author's tickets that are not closed.
/// An answer to a message of the bot's that the store does not know yet waits for it a little
/// ([`SENT_PATIENCE`]); one it never learns of (a message from before franz recorded deliveries) is a plain message.
async fn find(
    store: &crate::store::Store,
    message: &Message,
) -> anyhow::Result<(Option<TicketState>, Vec<TicketState>)> {
    let deadline = tokio::time::Instant::now() + SENT_PATIENCE;
    let mut progress = store.progress();
    loop {
        progress.borrow_and_update();
        let (store, user) = (store.clone(), message.author.to_string());
        let (reply_to, first) = (message.reply_to, message.reply_to_first);
        let found =
            tokio::task::spawn_blocking(move || -> anyhow::Result<(Option<Option<TicketState>>, Vec<TicketState>)> {
                let conn = store.reader()?;
                let sent_about = |id: u64| query::sent_about(&conn, &id.to_string());
                // The bot's message answered, or the first part of the long reply whose later part was answered.
                let about = match (reply_to.map(sent_about).transpose()?.flatten(), first) {
                    (Some(ticket), _) => Some(ticket),
                    (None, Some(first)) => sent_about(first)?,
                    (None, None) => None,
                };
                let answered = match reply_to {
                    Some(_) => match about {
                        // A ticket that a newer one follows is answered on the newest of them.
                        Some(ticket) => {
                            Some(query::newest_follower(&conn, &ticket)?.or(query::ticket(&conn, &ticket)?))
                        }
                        None => None,
                    },
                    None => Some(None),
                };
                let mine = query::by_contact(&conn, &user, query::PAGE_MAX)?;
                Ok((answered, mine.into_iter().filter(|t| t.status != Status::Closed).collect()))
            })
            .await??;
        match found {
            (Some(answered), open) => return Ok((answered, open)),
            (None, open) if !message.reply_to_notice => return Ok((None, open)),
            // Read again once the store applied more, until the deadline.
            (None, open) => match tokio::time::timeout_at(deadline, progress.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Ok((None, open)),
            },
        }
    }
}

/// How many submitters' direct messages (and tickets' threads) a start looks through: those of the newest tickets
/// changed within the reopen window.
pub(super) const CATCH_UP_MAX: usize = 100;
/// How many of a submitter's newest direct messages (or a thread's) a start looks at.
pub(super) const CATCH_UP_MESSAGES: u8 = 50;
/// How long a start waits for the ticket store to catch up before it looks for messages it missed.
const CATCH_UP_PATIENCE: Duration = Duration::from_secs(120);

/// After the bot (re)connects: handles the direct messages submitters sent while it was not listening (franz
/// stopped, or killed between receiving a message and publishing it), as if they arrived now. Discord does not send
/// them again; the bot reads the newest messages of each recent submitter's DM channel and takes the ones after the
/// newest it handled ([`unhandled`]). A message recorded already is not recorded twice (its command id comes from
/// the message).
pub async fn catch_up(http: &serenity::Http, data: &Data) {
    let Some(store) = data.store.clone() else { return };
    let Some(since) = catch_up_since(&store, data.reopen_within).await else { return };
    let (reader, after) = (store.clone(), since.clone());
    let contacts = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let conn = reader.reader()?;
        Ok(query::recent_contacts(&conn, &after, CATCH_UP_MAX)?)
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|found| found);
    let contacts = match contacts {
        Ok(contacts) => contacts,
        Err(error) => return problem(data, format!("cannot look for direct messages sent while away: {error:#}")),
    };
    let mut caught = 0;
    for user in contacts.iter().filter_map(|id| id.parse::<u64>().ok()) {
        if data.shutdown.is_cancelled() {
            return;
        }
        let history = async {
            let channel = http.create_private_channel(&json!({"recipient_id": user.to_string()})).await?;
            http.get_messages(channel.id, None, Some(CATCH_UP_MESSAGES)).await
        };
        match history.await {
            Ok(messages) => {
                for message in unhandled(&messages, chrono::Utc::now()) {
                    // Recorded already, its receipt lost (a Discord hiccup): the receipt again, nothing else.
                    if recorded(&store, message.id.get()).await {
                        receipt(http, data, &Message::from_discord(message)).await;
                        continue;
                    }
                    caught += 1;
                    received(http, data, message).await;
                }
            }
            Err(error) => {
                tracing::debug!(user, "cannot read a submitter's direct messages: {}", connect::describe(&error))
            }
        }
    }
    if caught > 0 {
        tracing::info!("took {caught} message(s) sent while the bot was away");
    }
}

/// Since when a start looks for messages it missed (RFC 3339: the reopen window back from now), once the ticket
/// store has caught up; `None`, with a warning, when it does not within [`CATCH_UP_PATIENCE`].
pub(super) async fn catch_up_since(store: &crate::store::Store, reopen_within: Duration) -> Option<String> {
    if !store.wait_for(CATCH_UP_PATIENCE, |progress| progress.caught_up).await {
        tracing::warn!("the ticket store has not caught up; messages sent while the bot was away are not looked for");
        return None;
    }
    let since = chrono::Utc::now() - chrono::Duration::from_std(reopen_within).unwrap_or_default();
    Some(since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// One start's look for missed messages at a time: a second session's look waits for the first, then sees what the
/// first handled. Held across [`catch_up`] and the threads' look.
pub(super) async fn one_look(data: &Data) -> tokio::sync::MutexGuard<'_, ()> {
    data.conversations.catching_up.lock().await
}

/// Whether the store has message `id` on a ticket.
pub(super) async fn recorded(store: &crate::store::Store, id: u64) -> bool {
    let store = store.clone();
    let found = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
        Ok(query::written(&*store.reader()?, &id.to_string())?.is_some())
    })
    .await;
    matches!(found, Ok(Ok(true)))
}

/// Of a DM channel's newest messages (newest first, as Discord lists them), the user's messages of the last
/// [`CATCH_UP_AGE`] before `now` that the bot never handled (it marks each with a reaction of its own, or answers it
/// with a message that replies to it), oldest first.
pub fn unhandled(messages: &[serenity::Message], now: chrono::DateTime<chrono::Utc>) -> Vec<&serenity::Message> {
    let answered: std::collections::HashSet<serenity::MessageId> = messages
        .iter()
        .filter(|message| message.author.bot)
        .filter_map(|message| message.message_reference.as_ref()?.message_id)
        .collect();
    let oldest = now - chrono::Duration::from_std(CATCH_UP_AGE).unwrap_or_default();
    let mut found: Vec<&serenity::Message> = messages
        .iter()
        .filter(|message| !message.author.bot && *message.timestamp >= oldest)
        .filter(|message| !message.reactions.iter().any(|r| r.me) && !answered.contains(&message.id))
        .collect();
    found.reverse();
    found
}

/// Handles the submitter's answer to [`ask`] or [`offer`]: `true` if the interaction was one of them.
pub async fn chosen(http: &serenity::Http, data: &Data, interaction: &serenity::Interaction) -> bool {
    let serenity::Interaction::Component(press) = interaction else { return false };
    let custom_id = press.data.custom_id.as_str();
    let (pick, id) = match (custom_id.strip_prefix(PICK), custom_id.strip_prefix(OPEN)) {
        (Some(id), _) => (true, id),
        (_, Some(id)) => (false, id),
        _ => return false,
    };
    // The answer replaces the question (or the offer) in place, its menu or button gone; an answer that asks to
    // choose again leaves them, in a message of its own that only the presser sees.
    let respond = |body: Value| async move {
        if let Err(error) = http.create_interaction_response(press.id, &press.token, &body, Vec::new()).await {
            problem(data, format!("could not answer a choice in a direct message: {}", connect::describe(&error)));
        }
    };
    let answer_press = |text: String| {
        let update = json!({"content": clip(&text, 2000), "components": [], "allowed_mentions": {"parse": []}});
        respond(json!({"type": 7, "data": update}))
    };
    let again = |text: &str| respond(super::replies::private_message(text));
    let retry = "Your message could **not** be recorded right now. Please choose again in a minute.";
    // Only what the bot offered on the message pressed counts (Discord leaves checking that to the app): its
    // button, or one of its menu's tickets, which are the presser's own.
    let offered = offered(&press.message, custom_id);
    let id = id.parse::<u64>().ok().and_then(std::num::NonZeroU64::new);
    let (Some(message_id), Some(offered)) = (id, offered) else {
        answer_press("That choice is not one this bot offered.".to_owned()).await;
        return true;
    };
    if !pick && data.guild.is_some() {
        answer_press("Tickets are opened with `/ticket` in the server.".to_owned()).await;
        return true;
    }
    // The message itself is read again from Discord: the choice carries only its id, and only its author may
    // decide where it goes.
    let original = http.get_message(press.channel_id, serenity::MessageId::from(message_id)).await;
    let original = match original {
        Ok(original) if original.author.id == press.user.id => Message::from_discord(&original),
        Ok(_) => {
            answer_press("Only the author of that message can choose where it goes.".to_owned()).await;
            return true;
        }
        Err(error) if connect::status(&error) == Some(404) => {
            answer_press("That message is gone, so there is nothing to record.".to_owned()).await;
            return true;
        }
        Err(error) => {
            problem(data, format!("could not read a message to record it: {}", connect::describe(&error)));
            again(retry).await;
            return true;
        }
    };
    if !pick {
        match open_ticket(data, &original, None).await {
            (text, Some(_)) => answer_press(text).await,
            (text, None) => again(&text).await,
        }
        return true;
    }
    let Some(ticket) = values(&press.data).first().cloned().filter(|ticket| offered.contains(ticket)) else {
        answer_press("No ticket this bot offered was chosen.".to_owned()).await;
        return true;
    };
    // One message goes to one ticket: a second choice (made before the menu was replaced) changes nothing.
    if let Some(before) = data.conversations.choose(original.id, &ticket) {
        answer_press(format!("This message was added to ticket {before} already.")).await;
        return true;
    }
    let command = original.command(&ticket);
    match send_command(&data.producer, &data.topics.commands, data.partitions, &command).await {
        Ok(()) => {
            answer_press(format!("Added to ticket {ticket}.")).await;
            receipt(http, data, &original).await;
            confirm(http, data, &original, &ticket, &command.command_id).await;
        }
        Err(error) => {
            data.conversations.chosen.lock().unwrap_or_else(|p| p.into_inner()).remove(&original.id);
            problem(data, format!("a direct message could not be recorded on {ticket}: {error:#}"));
            again(retry).await;
        }
    }
    true
}

/// What the bot's message offered under `custom_id`: `None` if it has no such component (a choice the bot never
/// offered), else the values of its menu (none for a button).
fn offered(message: &serenity::Message, custom_id: &str) -> Option<Vec<String>> {
    if !message.author.bot {
        return None;
    }
    let rows = serde_json::to_value(&message.components).ok()?;
    let component = rows
        .as_array()?
        .iter()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .find(|component| component["custom_id"] == custom_id)?;
    let options = component["options"].as_array().cloned().unwrap_or_default();
    Some(options.iter().filter_map(|option| option["value"].as_str().map(str::to_owned)).collect())
}

/// The values a select menu's answer carries (none for a button).
fn values(data: &serenity::ComponentInteractionData) -> Vec<String> {
    match &data.kind {
        serenity::ComponentInteractionDataKind::StringSelect { values } => values.clone(),
        _ => Vec::new(),
    }
}

fn user_of(message: &Message) -> String {
    message.author.to_string()
}

/// Publishes `command`, which records `message`, reacts with the receipt and tells the writer if akte refuses it;
/// if it could not be published, the writer is told so.
pub(super) async fn send(http: &serenity::Http, data: &Data, message: &Message, command: Command) {
    let ticket = &command.ticket_id;
    match send_command(&data.producer, &data.topics.commands, data.partitions, &command).await {
        Ok(()) => {
            receipt(http, data, message).await;
            confirm(http, data, message, ticket, &command.command_id).await;
        }
        Err(error) => {
            problem(data, format!("a message could not be recorded on {ticket}: {error:#}"));
            say(
                http,
                data,
                message,
                "Your message could **not** be recorded right now. Please send it again in a minute.",
            )
            .await;
        }
    }
}

/// Waits a little for akte's answer to `command_id` and tells the writer if it refused the message.
async fn confirm(http: &serenity::Http, data: &Data, message: &Message, ticket: &str, command_id: &str) {
    let Some(store) = &data.store else { return };
    match store.answer(ticket, command_id, ANSWER_PATIENCE).await {
        Ok(Some(event)) => {
            if let Change::Rejected { reason, .. } = event.change {
                let text = format!("Your message could not be added to ticket {ticket}: {}.", plain(&reason));
                say(http, data, message, &text).await;
            }
        }
        Ok(None) => tracing::debug!(ticket, "akte has not answered a direct message yet; it is recorded all the same"),
        Err(error) => tracing::warn!(ticket, "could not read akte's answer to a direct message: {error:#}"),
    }
}

/// Opens a new ticket with `message` (following `follows`, if given): what to tell the submitter, and the new
/// ticket's id once the broker has it.
async fn open_ticket(data: &Data, message: &Message, follows: Option<String>) -> (String, Option<String>) {
    let (text, left_out) = message.ticket_text();
    let submission = Submission {
        message: text,
        username: message.username.clone(),
        user_id: Some(message.author.to_string()),
        display_name: None,
        guild_id: None,
        channel_id: Some(message.channel_id.to_string()),
        interaction_id: Some(format!("dm-{}", message.id)),
        follows: follows.clone(),
        category: None,
        origin: None,
        message_id: None,
        automatic: None,
        attachments: Vec::new(),
    };
    let record = match intake::record(submission) {
        Ok(record) => record,
        Err(why) => return (format!("That message cannot become a ticket: {}.", plain(&why.to_string())), None),
    };
    match intake::publish_record(&data.producer, &data.topics.intake, &record).await {
        Ok(receipt) => {
            let mut text = match follows {
                Some(old) => format!(
                    "Your ticket {old} was closed a while ago, so this message opened a new ticket, `{}`, that \
                     follows it.",
                    receipt.ticket_id
                ),
                None => format!("Opened ticket `{}` with your message.", receipt.ticket_id),
            };
            if !left_out.is_empty() {
                text.push_str(&format!(
                    " Its text is as long as a ticket gets, so {} did not fit: please send them again as a reply \
                     to this message.",
                    clip(&plain(&left_out.join(", ")), 300)
                ));
            }
            (text, Some(receipt.ticket_id))
        }
        Err(error) => {
            problem(data, format!("a ticket from a direct message could not be published: {error:#}"));
            ("Your ticket could **not** be opened right now. Please try again in a minute.".to_owned(), None)
        }
    }
}

/// Reacts to the message with the receipt.
pub(super) async fn receipt(http: &serenity::Http, data: &Data, message: &Message) {
    react(http, data, message, RECEIPT).await;
}

/// Reacts to the message with `emoji`.
async fn react(http: &serenity::Http, data: &Data, message: &Message, emoji: &str) {
    let (Some(channel), Some(id)) =
        (std::num::NonZeroU64::new(message.channel_id), std::num::NonZeroU64::new(message.id))
    else {
        return;
    };
    let reaction = serenity::ReactionType::Unicode(emoji.to_owned());
    if let Err(error) = http.create_reaction(channel.into(), id.into(), &reaction).await {
        problem(data, format!("could not confirm a recorded direct message: {}", connect::describe(&error)));
    }
}

/// Answers `message` with `text`.
pub(super) async fn say(http: &serenity::Http, data: &Data, message: &Message, text: &str) {
    post(http, data, message.channel_id, &answer(message.id, text)).await;
}

async fn post(http: &serenity::Http, data: &Data, channel: u64, body: &Value) {
    let Some(channel) = std::num::NonZeroU64::new(channel) else { return };
    if let Err(error) = http.send_message(channel.into(), Vec::new(), body).await {
        problem(data, format!("could not answer a direct message: {}", connect::describe(&error)));
    }
}

pub(super) fn problem(data: &Data, problem: String) {
    tracing::warn!("{problem}");
    data.troubles.report(NAME, problem);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> Message {
        Message {
            id: 10,
            channel_id: 20,
            author: 42,
            username: "pontatot".into(),
            body: body.into(),
            attachments: Vec::new(),
            reply_to: None,
            reply_to_first: None,
            reply_to_notice: false,
            via: Via::DiscordDm,
        }
    }

    fn ticket(id: &str, status: Status, closed_at: Option<&str>) -> TicketState {
        TicketState {
            id: id.into(),
            status,
            closed_at: closed_at.map(String::from),
            contact_id: Some("42".into()),
            body: format!("ticket {id}"),
            ..TicketState::default()
        }
    }

    #[test]
    fn the_limit_admits_ten_a_minute_and_tells_once_per_window() {
        let mut limiter = Limiter::default();
        let start = Instant::now();
        for i in 0..PER_WINDOW {
            assert_eq!(limiter.admit(1, start + Duration::from_millis(i as u64)), Admit::Yes);
        }
        assert_eq!(limiter.admit(1, start + Duration::from_secs(1)), Admit::No { tell: true });
        assert_eq!(limiter.admit(1, start + Duration::from_secs(2)), Admit::No { tell: false });
        assert_eq!(
            limiter.admit(2, start + Duration::from_secs(2)),
            Admit::Yes,
            "another person has a limit of their own"
        );
        assert_eq!(limiter.admit(1, start + WINDOW + Duration::from_millis(5)), Admit::Yes, "the window moves on");
    }

    #[test]
    fn a_message_over_the_bounds_is_refused_with_the_reason() {
        assert_eq!(check(&message("hello")), None);
        let long = message(&"é".repeat(MESSAGE_MAX + 1));
        assert!(check(&long).unwrap().contains("4001 characters"), "{:?}", check(&long));
        assert!(check(&message(&"x".repeat(MESSAGE_MAX))).is_none(), "exactly the limit is fine");
        let file = Attachment {
            name: "a.png".into(),
            size: 1,
            content_type: None,
            url: "https://cdn/a.png".into(),
            sha256: None,
        };
        let many = Message { attachments: vec![file.clone(); ATTACHMENTS_MAX + 1], ..message("") };
        assert!(check(&many).unwrap().contains("11 attachments"));
        assert!(check(&Message { attachments: vec![file], ..message("") }).is_none(), "a file alone is a message");
        assert!(check(&message("")).is_some(), "nothing to keep");
    }

    #[test]
    fn a_message_goes_to_the_ticket_it_answers_else_the_only_open_one_else_asks_or_offers() {
        let now = chrono::Utc::now();
        let week = Duration::from_secs(7 * 86_400);
        let a = ticket("a", Status::Open, None);
        let b = ticket("b", Status::Waiting, None);
        assert_eq!(route(Some(b.clone()), vec![a.clone()], now, week), Route::To(b.clone()));
        assert_eq!(route(None, vec![a.clone()], now, week), Route::To(a.clone()));
        assert_eq!(route(None, vec![a.clone(), b.clone()], now, week), Route::Ask(vec![a.clone(), b]));
        assert_eq!(route(None, Vec::new(), now, week), Route::Offer);
        let recent = (now - chrono::Duration::days(2)).to_rfc3339();
        let old = (now - chrono::Duration::days(8)).to_rfc3339();
        let closed_lately = ticket("c", Status::Closed, Some(&recent));
        assert_eq!(route(Some(closed_lately.clone()), Vec::new(), now, week), Route::To(closed_lately));
        let closed_long_ago = ticket("d", Status::Closed, Some(&old));
        assert_eq!(route(Some(closed_long_ago.clone()), Vec::new(), now, week), Route::Follow(closed_long_ago));
    }

    #[test]
    fn the_choice_offers_at_most_twenty_five_tickets_and_pings_nobody() {
        let many: Vec<TicketState> = (0..30).map(|i| ticket(&i.to_string(), Status::Open, None)).collect();
        let Route::Ask(offered) = route(None, many, chrono::Utc::now(), Duration::ZERO) else { panic!("asks") };
        let menu = ask(&message("which?"), &offered);
        assert_eq!(menu["components"][0]["components"][0]["options"].as_array().unwrap().len(), 25);
        assert_eq!(menu["components"][0]["components"][0]["custom_id"], "conv:pick:10");
        assert_eq!(menu["allowed_mentions"]["parse"], json!([]));
    }

    #[test]
    fn one_discord_message_is_one_command_whatever_the_ticket_and_however_often() {
        let m = message("hi");
        assert_eq!(m.command("a").command_id, m.command("a").command_id);
        assert_eq!(m.command("a").command_id, "discord-message:10");
        assert!(m.command("a").command_id.len() <= crate::lifecycle::NAME_MAX);
        assert_eq!(m.command("a").actor.id.as_deref(), Some("42"));
    }

    /// Found by an attack (#25): `check` admits a message of up to 4,000 characters with up to 10 attachments, but the
    /// ticket such a message opens (the offer's button, or an answer to a ticket closed long ago) is its text with the
    /// attachments appended as links, and the intake takes at most 4,000 characters: a long message with a screenshot
    /// was admitted and then "cannot become a ticket".
    #[test]
    fn an_admitted_long_message_with_a_file_becomes_a_ticket() {
        let file = Attachment {
            name: "shot.png".into(),
            size: 1000,
            content_type: Some("image/png".into()),
            url: "https://cdn.discordapp.com/attachments/1/2/shot.png".into(),
            sha256: None,
        };
        let long = Message { attachments: vec![file], ..message(&"x".repeat(MESSAGE_MAX - 10)) };
        assert_eq!(check(&long), None, "admitted");
        // As `open_ticket` submits it.
        let submission = Submission {
            message: long.ticket_text().0,
            username: long.username.clone(),
            user_id: Some(long.author.to_string()),
            display_name: None,
            guild_id: None,
            channel_id: Some(long.channel_id.to_string()),
            interaction_id: Some(format!("dm-{}", long.id)),
            follows: None,
            category: None,
            message_id: None,
            automatic: None,
            origin: None,
            attachments: Vec::new(),
        };
        let record = intake::record(submission);
        assert!(record.is_ok(), "an admitted message cannot become a ticket: {:#}", record.unwrap_err());
    }
}
