//! A private thread per ticket (`DISCORD_TICKET_THREADS`): the ticket-channel style of the Discord ticket bots,
//! beside the direct messages.
//!
//! For each new ticket from Discord, the notices follower (`staff::follow`) opens a private thread in the configured
//! channel, adds the submitter, posts the ticket's text there, and records the thread on the ticket as the delivery
//! of its `created` event (`channel_id`); from then on the ticket's claims, public replies and closes are posted in
//! the thread instead of by direct message. What is written in the thread comes back here ([`received`]): the
//! submitter's messages become their messages on the ticket (`write`, through `discord_thread`, with the rate limit
//! and bounds of the direct messages), and a staff member's (the staff role, and a linked account once any is
//! linked, as for the cards' buttons) becomes a public reply under their identity, marked as written in the thread
//! so that it is not posted there again. Internal notes never reach the thread: only claims, public replies and
//! closes are told.
//!
//! Reading what people write in a server needs the privileged Message Content intent. Discord closes the gateway
//! (4014) for a bot that asks for an intent it was not granted, so the bot asks only when the application's flags
//! say it has it ([`message_content`]); without it, start-up says so and tickets go on by direct message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use poise::serenity_prelude as serenity;
use serde_json::{Value, json};

use super::conversation::{self, Message};
use super::{Data, connect};
use crate::discord::{clip, plain};
use crate::lifecycle::TicketState;
use crate::people::DiscordAccount;
use crate::schema::lifecycle::{Action, Actor, ActorSource, Command, Via};
use crate::store::query;

/// Where tickets get their threads, and who writes there as staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threads {
    /// The channel the threads are opened in.
    pub channel_id: u64,
    /// Members of this role write public replies in a thread (`DISCORD_STAFF_ROLE_ID`); without it, only the
    /// submitter's messages there are recorded.
    pub staff_role: Option<u64>,
}

/// The threads this process opened (thread id to ticket id), shared by the notices follower that opens them and the
/// bot that reads them: a submitter who writes the moment their thread appears is heard before the ticket store has
/// the thread's record.
#[derive(Debug, Clone, Default)]
pub struct Known(Arc<Mutex<HashMap<u64, String>>>);

impl Known {
    /// Remembers that `thread` is `ticket`'s.
    pub fn insert(&self, thread: u64, ticket: &str) {
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= KNOWN_MAX {
            known.clear(); // the ticket store has the older ones
        }
        known.insert(thread, ticket.to_owned());
    }

    /// The ticket whose thread `thread` is, if this process opened it.
    pub fn ticket(&self, thread: u64) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&thread).cloned()
    }
}

/// How many threads [`Known`] remembers.
const KNOWN_MAX: usize = 10_000;

/// Discord's limit on a thread's name.
const NAME_MAX: usize = 100;
/// How long a thread stays in the channel's list without messages: a week, Discord's longest. A message to an
/// archived thread brings it back.
const AUTO_ARCHIVE_MINUTES: u64 = 10_080;
/// The most of the ticket's text the thread's first message quotes.
const QUOTED_MAX: usize = 1_500;

/// Whether the application may use the Message Content intent: its flags grant it (`GATEWAY_MESSAGE_CONTENT`
/// for a verified app, `GATEWAY_MESSAGE_CONTENT_LIMITED` for one in fewer than 100 servers).
pub fn message_content(application: &serenity::CurrentApplicationInfo) -> bool {
    let granted = serenity::ApplicationFlags::GATEWAY_MESSAGE_CONTENT
        | serenity::ApplicationFlags::GATEWAY_MESSAGE_CONTENT_LIMITED;
    application.flags.is_some_and(|flags| flags.intersects(granted))
}

/// What start-up says when thread mode is asked for but the intent is not granted.
pub const NO_INTENT: &str = "ticket threads off: DISCORD_TICKET_THREADS needs the Message Content intent, which this \
    bot does not have (Discord Developer Portal → your application → Bot → Privileged Gateway Intents → Message \
    Content Intent, then restart franz); until then submitters are answered by direct message";

/// The thread's name: the ticket's id and first line.
pub fn name(ticket: &TicketState) -> String {
    let first_line = ticket.body.lines().find(|line| !line.trim().is_empty()).unwrap_or("(no text)");
    clip(&format!("{} · {}", ticket.id, plain(first_line.trim())), NAME_MAX)
}

/// The thread's first message: the ticket's text, quoted and defused, and what the thread is for. It pings the
/// submitter (and nobody else), so that they find the thread; its nonce comes from the `created` event.
pub fn opening(ticket: &TicketState, submitter: u64, event_id: &str) -> Value {
    let quoted: Vec<String> =
        clip(ticket.body.trim(), QUOTED_MAX).lines().map(|line| format!("> {}", plain(line))).collect();
    let content = format!(
        "<@{submitter}>, this is your ticket `{}`:\n{}\nWrite here to add to it; the team answers here too.",
        ticket.id,
        quoted.join("\n")
    );
    json!({
        "content": clip(&content, 2000),
        "allowed_mentions": {"parse": [], "users": [submitter.to_string()]},
        "nonce": crate::discord::nonce(&format!("thread:{event_id}")),
        "enforce_nonce": true,
    })
}

/// How opening a thread ended.
#[derive(Debug)]
pub enum Opened {
    /// The thread, and its first message.
    Thread { thread: u64, message: u64 },
    /// Discord refused it for good (no permission to create private threads there, an unknown channel): why.
    Refused(String),
}

/// Opens `ticket`'s private thread in `threads`' channel, adds `submitter` and posts [`opening`]. An error is worth
/// retrying (the network, a rate limit, a server error); `created` keeps the thread made before it, so that a retry
/// goes on with that thread instead of making another (adding a member again changes nothing, and the opening's
/// nonce makes Discord answer with the message it has). A refusal for good after the thread was made takes the
/// submitter out of it again (the bot made it, so it may), so that nobody writes where nothing is read. Only an
/// answer lost on the way back from creating the thread can leave a second, empty thread: Discord has no nonce for
/// threads.
pub async fn open(
    http: &serenity::Http,
    threads: Threads,
    ticket: &TicketState,
    submitter: u64,
    event_id: &str,
    created: &mut Option<u64>,
    known: &Known,
) -> Result<Opened, serenity::Error> {
    let Some(channel) = std::num::NonZeroU64::new(threads.channel_id) else {
        return Ok(Opened::Refused("the thread channel id is 0, which is no Discord channel".into()));
    };
    let body = json!({
        "name": name(ticket),
        "type": 12,
        "invitable": false,
        "auto_archive_duration": AUTO_ARCHIVE_MINUTES,
    });
    let user = std::num::NonZeroU64::new(submitter).map(serenity::UserId::from);
    let outcome = async {
        let thread = match created.and_then(std::num::NonZeroU64::new) {
            Some(thread) => serenity::ChannelId::from(thread),
            None => {
                let thread = http.create_thread(channel.into(), &body, Some("a franz ticket")).await?.id;
                *created = Some(thread.get());
                known.insert(thread.get(), &ticket.id);
                thread
            }
        };
        // The submitter can see a private thread only as a member.
        if let Some(user) = user {
            http.add_thread_channel_member(thread, user).await?;
        }
        let first = http.send_message(thread, Vec::new(), &opening(ticket, submitter, event_id)).await?;
        Ok::<_, serenity::Error>(Opened::Thread { thread: thread.get(), message: first.id.get() })
    }
    .await;
    match outcome {
        Err(error) if connect::status(&error).is_some_and(connect::refused_for_good) => {
            if let (Some(thread), Some(user)) = (created.and_then(std::num::NonZeroU64::new), user) {
                if let Err(left) = http.remove_thread_channel_member(thread.into(), user).await {
                    tracing::warn!(%thread, "could not take the submitter out of a thread franz cannot use: {}", connect::describe(&left));
                }
            }
            Ok(Opened::Refused(format!(
                "{}; give the bot Create Private Threads, Send Messages in Threads and View Channel in that channel",
                connect::describe(&error)
            )))
        }
        other => other,
    }
}

/// Posts `bodies` in `thread`, each after the first as a reply to it: the id of the first, or `Err` with why
/// Discord refused for good, or a retryable error.
pub async fn post(
    http: &serenity::Http,
    thread: u64,
    bodies: &[Value],
) -> Result<Result<u64, String>, serenity::Error> {
    let Some(thread) = std::num::NonZeroU64::new(thread) else { return Ok(Err("no thread".into())) };
    let mut first: Option<u64> = None;
    for body in bodies {
        let mut body = body.clone();
        if let Some(first) = first {
            body["message_reference"] = json!({"message_id": first.to_string(), "fail_if_not_exists": false});
        }
        match http.send_message(thread.into(), Vec::new(), &body).await {
            Ok(sent) => {
                first.get_or_insert(sent.id.get());
            }
            Err(error) if connect::status(&error).is_some_and(connect::refused_for_good) => {
                return Ok(Err(connect::describe(&error)));
            }
            Err(error) => return Err(error),
        }
    }
    Ok(first.ok_or_else(|| "no message to send".to_owned()))
}

/// Who wrote a message in a ticket's thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// The ticket's submitter.
    Submitter,
    /// A member of the staff role; with their staff name once accounts are linked and theirs is.
    Staff(Option<String>),
    /// Someone else (a moderator who is not staff), or staff whose account is not linked: not recorded, with why.
    Other(&'static str),
}

/// Who `author` (with `roles`) is to `ticket`, given the staff role and what the staff list says of the account.
pub fn writer(
    ticket: &TicketState,
    author: u64,
    roles: &[u64],
    staff_role: Option<u64>,
    account: DiscordAccount,
) -> Writer {
    if crate::discord::submitter(ticket) == Some(author) {
        return Writer::Submitter;
    }
    if !staff_role.is_some_and(|role| roles.contains(&role)) {
        return Writer::Other("only the ticket's submitter and the staff role write to the ticket here");
    }
    match account {
        DiscordAccount::Linked(name) => Writer::Staff(Some(name)),
        DiscordAccount::RoleDecides => Writer::Staff(None),
        DiscordAccount::Unlinked => {
            Writer::Other("your Discord account is not linked to anyone on the staff list (`franz staff link-discord`)")
        }
    }
}

/// The public reply a staff member's `message` in the thread makes: its text, and its files as links as far as they
/// fit in a reply (a reply keeps no attachments of its own); the names of those that did not.
pub fn reply(message: &Message, name: &str, staff: Option<String>, ticket: &str) -> (Command, Vec<String>) {
    let (body, left_out) = message.text_with_links(crate::lifecycle::COMMENT_MAX);
    let command = Command {
        command_id: format!("discord-message:{}", message.id),
        ticket_id: ticket.to_owned(),
        actor: Actor {
            source: ActorSource::Discord,
            name: name.to_owned(),
            id: Some(message.author.to_string()),
            staff,
        },
        action: Action::Comment { body, internal: false, via: Some(Via::DiscordThread) },
    };
    (command, left_out)
}

/// Handles a message in a server channel: one in a ticket's thread is recorded on the ticket (the submitter's as
/// their message, staff's as a public reply); every other message is none of the bot's business and is left alone.
pub async fn received(http: &serenity::Http, data: &Data, message: &serenity::Message) {
    let (Some(threads), Some(store)) = (data.threads, data.store.clone()) else { return };
    if !conversation::takes(message) {
        return;
    }
    let channel = message.channel_id.to_string();
    let opened_here = data.threads_known.ticket(message.channel_id.get());
    let reader = store.clone();
    let found = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<TicketState>> {
        let conn = reader.reader()?;
        match query::thread_ticket(&conn, &channel)? {
            Some(ticket) => Ok(Some(ticket)),
            // Opened a moment ago by this process: its record may not be in the store yet, its ticket is.
            None => Ok(opened_here.map(|id| query::ticket(&conn, &id)).transpose()?.flatten()),
        }
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|found| found);
    let ticket = match found {
        Ok(Some(ticket)) => ticket,
        Ok(None) => return,
        Err(error) => {
            let problem = format!("a message in a ticket's thread could not be matched to its ticket: {error:#}");
            conversation::problem(data, problem);
            return;
        }
    };
    let roles: Vec<u64> =
        message.member.as_ref().map(|m| m.roles.iter().map(|r| r.get()).collect()).unwrap_or_default();
    let author = message.author.id.get();
    let staff_dir = data.staff.as_ref().map(|staff| staff.staff_dir.clone());
    let account = match staff_dir {
        Some(dir) if crate::discord::submitter(&ticket) != Some(author) => {
            let read = tokio::task::spawn_blocking(move || crate::people::discord_account_in(&dir, author)).await;
            match read.map_err(anyhow::Error::from).and_then(|read| read) {
                Ok(account) => account,
                Err(error) => {
                    conversation::problem(data, format!("cannot read the staff list for a thread message: {error:#}"));
                    DiscordAccount::Unlinked
                }
            }
        }
        _ => DiscordAccount::RoleDecides,
    };
    let taken = Message::from_discord(message);
    // Everyone's messages here have the limit and bounds of the submitter's, the answers to them too.
    if !conversation::admitted(http, data, &taken).await {
        return;
    }
    match writer(&ticket, author, &roles, threads.staff_role, account) {
        Writer::Submitter => take(http, data, &store, taken, ticket).await,
        Writer::Staff(staff) => {
            let (command, left_out) = reply(&taken, &message.author.name, staff, &ticket.id);
            conversation::send(http, data, &taken, command).await;
            if !left_out.is_empty() {
                let text = format!(
                    "The ticket keeps this reply's text, but it is as long as a reply gets, so the links to {} did \
                     not fit: send them in a message of their own to have them on the ticket.",
                    clip(&plain(&left_out.join(", ")), 300)
                );
                conversation::say(http, data, &taken, &text).await;
            }
        }
        Writer::Other(why) => {
            let text = format!("This message is not added to the ticket: {why}.");
            conversation::say(http, data, &taken, &text).await;
        }
    }
}

/// After the bot (re)connects: takes the submitters' messages written in the threads of recently changed tickets
/// while the bot was not listening, as [`conversation::catch_up`] does for direct messages. Discord's history has
/// no member roles, so a staff member's message written meanwhile is not taken (they see it has no ✅, and can
/// reply from the desk). Returns how many it took.
pub async fn catch_up(http: &serenity::Http, data: &Data) {
    let (Some(_), Some(store)) = (data.threads, data.store.clone()) else { return };
    let Some(since) = conversation::catch_up_since(&store, data.reopen_within).await else { return };
    let caught = catch_up_threads(http, data, &store, &since).await;
    if caught > 0 {
        tracing::info!("took {caught} thread message(s) sent while the bot was away");
    }
}

/// [`catch_up`] in the threads of the tickets changed since `since`: how many messages it took.
async fn catch_up_threads(http: &serenity::Http, data: &Data, store: &crate::store::Store, since: &str) -> usize {
    let (reader, since) = (store.clone(), since.to_owned());
    let threads = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        Ok(query::recent_threads(&*reader.reader()?, &since, conversation::CATCH_UP_MAX)?)
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|found| found);
    let threads = match threads {
        Ok(threads) => threads,
        Err(error) => {
            conversation::problem(data, format!("cannot look for thread messages sent while away: {error:#}"));
            return 0;
        }
    };
    let mut caught = 0;
    for thread in threads.iter().filter_map(|id| id.parse::<u64>().ok().and_then(std::num::NonZeroU64::new)) {
        if data.shutdown.is_cancelled() {
            break;
        }
        let messages = match http.get_messages(thread.into(), None, Some(conversation::CATCH_UP_MESSAGES)).await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::debug!(%thread, "cannot read a ticket's thread: {}", connect::describe(&error));
                continue;
            }
        };
        let (reader, channel) = (store.clone(), thread.to_string());
        let ticket = tokio::task::spawn_blocking(move || {
            query::thread_ticket(&*reader.reader()?, &channel).map_err(anyhow::Error::from)
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|found| found);
        let Ok(Some(ticket)) = ticket else { continue };
        let submitter = crate::discord::submitter(&ticket);
        for message in conversation::unhandled(&messages, chrono::Utc::now()) {
            if submitter != Some(message.author.id.get()) {
                continue;
            }
            let mut taken = Message::from_discord(message);
            taken.via = Via::DiscordThread; // the history has no guild id
            if conversation::recorded(store, taken.id).await {
                conversation::receipt(http, data, &taken).await;
                continue;
            }
            caught += 1;
            if conversation::admitted(http, data, &taken).await {
                take(http, data, store, taken, ticket.clone()).await;
            }
        }
    }
    caught
}

/// Records the submitter's admitted `message` in the thread of `ticket`: on that ticket, or, once a newer ticket
/// follows it (opened by an earlier answer after the ticket was closed past the reopen window), on the newest of
/// those, as a direct message answering the ticket would be.
async fn take(http: &serenity::Http, data: &Data, store: &crate::store::Store, message: Message, ticket: TicketState) {
    let (reader, id) = (store.clone(), ticket.id.clone());
    let newest = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<TicketState>> {
        Ok(query::newest_follower(&*reader.reader()?, &id)?)
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|found| found);
    match newest {
        Ok(newest) => conversation::take(http, data, store, message, Some(newest.unwrap_or(ticket))).await,
        Err(error) => {
            conversation::problem(data, format!("a thread message could not be matched to its ticket: {error:#}"));
            let text = "Your message could **not** be recorded right now. Please send it again in a minute.";
            conversation::say(http, data, &message, text).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(body: &str) -> TicketState {
        TicketState { id: "t-1".into(), body: body.into(), contact_id: Some("42".into()), ..TicketState::default() }
    }

    #[test]
    fn the_submitter_writes_staff_reply_and_anyone_else_is_told_why_not() {
        let t = ticket("printer");
        let role = Some(9);
        assert_eq!(writer(&t, 42, &[], role, DiscordAccount::RoleDecides), Writer::Submitter);
        assert_eq!(writer(&t, 7, &[9], role, DiscordAccount::RoleDecides), Writer::Staff(None));
        assert_eq!(writer(&t, 7, &[9], role, DiscordAccount::Linked("ana".into())), Writer::Staff(Some("ana".into())));
        assert!(
            matches!(writer(&t, 7, &[9], role, DiscordAccount::Unlinked), Writer::Other(why) if why.contains("link-discord"))
        );
        assert!(matches!(writer(&t, 7, &[8], role, DiscordAccount::RoleDecides), Writer::Other(_)), "another role");
        assert!(matches!(writer(&t, 7, &[9], None, DiscordAccount::RoleDecides), Writer::Other(_)), "no staff role");
    }

    #[test]
    fn the_thread_is_named_by_the_ticket_and_its_opening_pings_the_submitter_alone_and_defuses_the_text() {
        let t = ticket(&format!("\n  <@&1> @everyone **{}**\nsecond", "x".repeat(300)));
        let name = name(&t);
        assert!(name.starts_with("t-1 · ") && crate::discord::chars(&name) <= NAME_MAX, "{name}");
        let body = opening(&t, 42, "e-1");
        let content = body["content"].as_str().unwrap();
        assert!(content.starts_with("<@42>") && content.contains("`t-1`"), "{content}");
        assert!(!content.contains("<@&1>") && !content.contains("**x"), "{content}");
        assert_eq!(body["allowed_mentions"], json!({"parse": [], "users": ["42"]}));
        assert_eq!(body["nonce"], opening(&t, 42, "e-1")["nonce"], "one nonce per created event");
        assert!(crate::discord::chars(content) <= 2000);
    }

    #[test]
    fn a_staff_message_in_the_thread_is_a_public_reply_marked_as_written_there_with_its_files_as_links() {
        let message = Message {
            id: 5,
            channel_id: 6,
            author: 7,
            username: "ana".into(),
            body: "see the manual".into(),
            attachments: vec![crate::schema::lifecycle::Attachment {
                name: "manual.pdf".into(),
                size: 10,
                content_type: None,
                url: "https://cdn/manual.pdf".into(),
                sha256: None,
            }],
            reply_to: None,
            reply_to_first: None,
            reply_to_notice: false,
            via: Via::DiscordThread,
        };
        let (command, left_out) = reply(&message, "ana", Some("ana".into()), "t-1");
        assert!(left_out.is_empty());
        assert_eq!(command.command_id, "discord-message:5");
        let Action::Comment { body, internal, via } = command.action else { panic!("a comment") };
        assert_eq!((internal, via), (false, Some(Via::DiscordThread)));
        assert!(body.starts_with("see the manual") && body.contains("https://cdn/manual.pdf"), "{body}");
        // Found by an attack (#25): the links were added whatever the length, and akte refused the whole reply.
        let long = Message { body: "x".repeat(crate::lifecycle::COMMENT_MAX - 10), ..message };
        let (command, left_out) = reply(&long, "ana", None, "t-1");
        let Action::Comment { body, .. } = command.action else { panic!("a comment") };
        assert_eq!(
            (body.chars().count(), left_out),
            (crate::lifecycle::COMMENT_MAX - 10, vec!["manual.pdf".to_owned()])
        );
    }
}
