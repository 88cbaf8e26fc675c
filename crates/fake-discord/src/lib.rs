//! A fake Discord on loopback: the REST API under `/api/v10/` and a gateway WebSocket, close enough to the real
//! protocol that serenity and poise run against it unchanged, for franz's integration tests and `cargo xtask e2e`.
//!
//! [`FakeDiscord::start`] binds two loopback ports, one for REST (hand its [`api_base`](FakeDiscord::api_base) to a
//! bot as its REST proxy, or its [`webhook_url`](FakeDiscord::webhook_url) to absturz) and one for the gateway (the
//! URL `GET /gateway` returns). Tests script it: dispatch slash commands and modal submits
//! ([`command`](FakeDiscord::command), [`modal_submit`](FakeDiscord::modal_submit), button presses with
//! [`press`](FakeDiscord::press), by members with the roles [`grant_role`](FakeDiscord::grant_role) gave; the
//! `…_from` variants send them from another server or from a direct message, see [`Origin`]), remember the
//! global command registration ([`register_globally`](FakeDiscord::register_globally) leaves one from before), keep the
//! messages a bot posts to channels, edits and deletes ([`channel_messages`](FakeDiscord::channel_messages); a post's
//! `enforce_nonce`, remembered per author as Discord does, not per channel, holds until [`forget_nonces`](FakeDiscord::forget_nonces) stands for Discord's few minutes) and its direct
//! messages ([`direct_messages`](FakeDiscord::direct_messages), refused for users who [`refuse_dms`](FakeDiscord::refuse_dms);
//! [`dm_channel_of`](FakeDiscord::dm_channel_of) names the channel), let users write to the bot in their direct messages
//! ([`direct_message`](FakeDiscord::direct_message), with replies and attachments through
//! [`direct_message_with`](FakeDiscord::direct_message_with)), dispatch MESSAGE_CREATE for every message in a direct
//! message, the bot's own included, and MESSAGE_REACTION_ADD for the bot's reactions there, as Discord does for a
//! session with the direct-message intents (the bot's posts to guild channels are not dispatched, except in its
//! threads), start private threads (`POST /channels/{id}/threads`) and add their members, let members and
//! moderators write there ([`thread_message`](FakeDiscord::thread_message), dispatched to a session with
//! `GUILD_MESSAGES`, without the text unless it also has the privileged `MESSAGE_CONTENT`, which IDENTIFY may ask for
//! only when [`Options::message_content`] grants it: 4014 otherwise), serve any message
//! it knows (`GET /channels/{id}/messages/{id}`), keep the bot's reactions ([`reactions`](FakeDiscord::reactions)),
//! dispatch string select menu picks ([`select`](FakeDiscord::select); a pick or a press on a message in a direct
//! message comes from that direct message), refuse a message over
//! Discord's limits as Discord does ([`limits`]), answer the next calls to an
//! [`Endpoint`] with an [`Answer`] (an error, a 429, or a hold), and break the gateway with a [`Fault`]. Users write to the bot in direct messages
//! ([`direct_message_with`](FakeDiscord::direct_message_with), or [`direct_message_while_away`](FakeDiscord::direct_message_while_away)
//! for a message no session hears of), and `GET /channels/{id}/messages` lists a channel's history. Every REST
//! call is recorded ([`Received`]). This crate is test support: the franz binary never links it, and it trusts
//! what it is sent (it is not hardened against hostile clients).

mod gateway;
pub mod limits;
pub mod multipart;
pub mod payloads;
mod rest;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

pub use gateway::{Fault, GatewayStats};

/// What the fake Discord believes: the bot's token and application, the guild the bot is in, and how often the
/// gateway asks for heartbeats.
#[derive(Debug, Clone)]
pub struct Options {
    /// The bot token REST calls and IDENTIFY must carry (`Bot ` prefix optional on the gateway).
    pub token: String,
    pub application_id: u64,
    /// The one guild the bot is in; registering commands in another guild is refused (403, Missing Access).
    pub guild_id: u64,
    /// The channel interactions come from.
    pub channel_id: u64,
    /// What HELLO asks for. Discord says about 41 s; tests want heartbeats to actually happen.
    pub heartbeat_interval: Duration,
    /// Whether the application has the Message Content intent enabled (its flags say so, as the fixture's do);
    /// without it an IDENTIFY that asks for the intent is closed with 4014, as Discord does.
    pub message_content: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token: "fake-bot-token.MTE3NzAwMDAwMDAwMDAwMDAwMQ".into(),
            application_id: payloads::APPLICATION_ID,
            guild_id: payloads::GUILD_ID,
            channel_id: payloads::CHANNEL_ID,
            heartbeat_interval: Duration::from_millis(1000),
            message_content: true,
        }
    }
}

/// The REST endpoints the fake tells apart. Scripted answers and records are per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /gateway`: where to connect (no token needed).
    Gateway,
    /// `GET /gateway/bot`.
    GatewayBot,
    /// `GET /oauth2/applications/@me`: the bot's application.
    CurrentApplication,
    /// `GET /users/@me`.
    CurrentUser,
    /// `GET /applications/{id}/commands` (the global commands) and `PUT` (replace them).
    GlobalCommands,
    /// `PUT /applications/{id}/guilds/{guild}/commands`: replace a guild's commands.
    GuildCommands,
    /// `POST /interactions/{id}/{token}/callback`: the first answer to an interaction.
    Callback,
    /// `POST /webhooks/{application}/{interaction token}`: a follow-up message.
    FollowUp,
    /// `GET|PATCH|DELETE /webhooks/{application}/{interaction token}/messages/@original`.
    Original,
    /// `POST /webhooks/{id}/{token}` of any other webhook (absturz's alerts).
    Webhook,
    /// `POST /channels/{id}/messages`: the bot posts a message (a staff card).
    ChannelMessages,
    /// `PATCH /channels/{id}/messages/{message}`: the bot edits its message; `DELETE` deletes it.
    ChannelMessage,
    /// `GET /channels/{id}/messages/{message}`: the bot fetches a message (its own or a user's); 404 (10008) for a
    /// message the fake does not know.
    FetchMessage,
    /// `GET /channels/{id}/messages`: a channel's newest messages, newest first.
    ChannelHistory,
    /// `PUT /channels/{id}/messages/{message}/reactions/{emoji}/@me`: the bot reacts to a message (204).
    Reaction,
    /// `POST /users/@me/channels`: the bot opens (or finds) its direct-message channel with a user.
    DmChannel,
    /// `POST /channels/{id}/threads`: the bot starts a thread without a message (a private one, type 12).
    Threads,
    /// `PUT /channels/{thread}/thread-members/{user}`: the bot adds a member to a thread (204); `DELETE` removes one.
    ThreadMember,
    /// Anything else: answered 404 and recorded.
    Unknown,
}

/// An answer the fake gives to the next call of an endpoint instead of its normal one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    /// This HTTP status with a Discord error body (`{"message", "code"}`).
    Status(u16),
    /// 429 with this `retry_after` in seconds (body, and the `Retry-After` header).
    RateLimited(f64),
    /// Do not answer until [`FakeDiscord::release`] is called; then answer normally.
    Hold,
}

/// A REST call the fake received, and what it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub method: String,
    pub endpoint: Endpoint,
    pub path: String,
    pub query: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    pub status: u16,
    /// The request body as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

/// An interaction the fake dispatched: its id and its token, which the bot's answers to it carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub id: u64,
    pub token: String,
}

/// Where an interaction comes from. Discord sends an interaction from a server with `guild_id` and `member` (the
/// user inside it, with their roles), and one from a direct message with the bot with `user` instead, and neither
/// `guild_id` nor `member`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The fake's own guild and channel ([`Options`]).
    Home,
    /// Another server the bot is in, from one of its channels: how a global registration reaches the bot there.
    Guild { guild_id: u64, channel_id: u64 },
    /// The user's direct-message channel with the bot.
    Dm,
}

/// A Discord user who invokes commands.
#[derive(Debug, Clone)]
pub struct User {
    pub id: u64,
    pub username: String,
    pub global_name: Option<String>,
}

impl User {
    pub fn new(id: u64, username: &str) -> User {
        User { id, username: username.into(), global_name: None }
    }
}

/// A file attached to a user's message, as Discord describes it once stored; the fake gives it an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The file's name (`report.pdf`).
    pub filename: String,
    /// Its size in bytes.
    pub size: u32,
    /// Its media type (`application/pdf`), if Discord recognised one.
    pub content_type: Option<String>,
    /// Where the file can be downloaded (`https://cdn.discordapp.com/attachments/…`, or a test server's URL).
    pub url: String,
}

/// A message a user writes to the bot in their direct messages ([`FakeDiscord::direct_message_with`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectMessage {
    /// The text (Discord sends it in direct messages even to a bot without the message content intent).
    pub content: String,
    /// The message (in the same direct-message channel) this one replies to.
    pub reply_to: Option<u64>,
    /// The files attached to it.
    pub attachments: Vec<Attachment>,
}

impl DirectMessage {
    /// A plain message saying `content`: no reply, no attachments.
    pub fn new(content: &str) -> DirectMessage {
        DirectMessage { content: content.into(), ..DirectMessage::default() }
    }
}

/// A thread the bot started ([`FakeDiscord::threads_in`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    pub id: u64,
    /// The channel it was started in.
    pub parent_id: u64,
    pub name: String,
    /// 12 for a private thread, 11 for a public one.
    pub kind: u64,
    /// Whether members other than moderators may add people (private threads only).
    pub invitable: bool,
    /// The users the bot added, in order (the bot itself is a member from the start and not listed).
    pub members: Vec<u64>,
}

/// A message a user sent the bot, as the fake remembers it.
#[derive(Debug, Clone)]
struct UserMessage {
    id: u64,
    channel_id: u64,
    author: User,
    content: String,
    reply_to: Option<u64>,
    /// Attachment objects, with their ids.
    attachments: Vec<Value>,
}

#[derive(Debug)]
struct InteractionState {
    token: String,
    acknowledged: bool,
}

#[derive(Debug, Default)]
struct State {
    scripts: HashMap<Endpoint, VecDeque<Answer>>,
    received: Vec<Received>,
    /// Requests currently held by [`Answer::Hold`].
    holding: usize,
    /// At most this many accepted webhook posts per window, like Discord's webhook limit.
    limit: Option<(u32, Duration)>,
    window: Option<(Instant, u32)>,
    interactions: HashMap<u64, InteractionState>,
    gateway: gateway::State,
    /// The roles of each member (by user id), as interactions from them carry.
    roles: HashMap<u64, Vec<u64>>,
    /// Every message bots posted to channels, in order, as it reads now (edits applied).
    messages: Vec<ChannelMessage>,
    /// How many of `messages` are older than Discord remembers nonces: their nonces no longer stop a second post.
    nonces_forgotten: usize,
    /// The direct-message channel of each user (by user id) a bot opened one with.
    dm_channels: HashMap<u64, u64>,
    /// Users who accept no direct messages from the bot: a message to them is refused (403, code 50007).
    closed_dms: HashSet<u64>,
    /// The application's global commands, as the last `PUT /applications/{id}/commands` registered them.
    global_commands: Vec<Value>,
    /// Every message users sent the bot in their direct messages and in its threads, in order.
    user_messages: Vec<UserMessage>,
    /// The role whose members have Manage Threads ([`FakeDiscord::moderate_threads`]).
    moderators: Option<u64>,
    /// The emoji the bot reacted with on each message (by channel and message id), in order, each once.
    reactions: HashMap<(u64, u64), Vec<String>>,
    /// The threads the bot started, by id.
    threads: HashMap<u64, Thread>,
}

impl State {
    /// Whether `channel_id` is a user's direct-message channel with the bot.
    fn is_dm(&self, channel_id: u64) -> bool {
        self.dm_channels.values().any(|channel| *channel == channel_id)
    }

    /// Whether `channel_id` is a thread the bot started.
    fn is_thread(&self, channel_id: u64) -> bool {
        self.threads.contains_key(&channel_id)
    }

    /// Who wrote the message `message_id` in `channel_id` (the bot's application id for the bot's messages), if the
    /// fake knows it.
    fn author_of(&self, options: &Options, channel_id: u64, message_id: u64) -> Option<u64> {
        if self.messages.iter().any(|m| m.id == message_id && m.channel_id == channel_id) {
            return Some(options.application_id);
        }
        self.user_messages.iter().find(|m| m.id == message_id && m.channel_id == channel_id).map(|m| m.author.id)
    }

    /// The message `message_id` in `channel_id` as Discord shows it now (in `GET /channels/{id}/messages/{id}` and
    /// MESSAGE_CREATE), whoever wrote it: a reply carries the message it replies to as `referenced_message` (null
    /// when the fake does not know that message, as for one deleted since). `None` for a message the fake does not
    /// know.
    fn message(&self, options: &Options, channel_id: u64, message_id: u64) -> Option<Value> {
        let mut message = self.message_alone(options, channel_id, message_id)?;
        let replied = message["message_reference"]["message_id"].as_str().and_then(|id| id.parse::<u64>().ok());
        if let Some(replied) = replied {
            message["referenced_message"] = self.message_alone(options, channel_id, replied).unwrap_or(Value::Null);
        }
        Some(message)
    }

    /// [`State::message`] without `referenced_message`, as Discord shows the message a reply refers to.
    fn message_alone(&self, options: &Options, channel_id: u64, message_id: u64) -> Option<Value> {
        let mut message =
            if let Some(posted) = self.messages.iter().find(|m| m.id == message_id && m.channel_id == channel_id) {
                let mut message = payloads::channel_message(options, channel_id, message_id, &posted.body);
                if let Some(replied) = replied_to(&posted.body) {
                    let guild = (!self.is_dm(channel_id)).then_some(options.guild_id);
                    message["type"] = 19.into();
                    message["message_reference"] = payloads::reference(channel_id, replied, guild);
                }
                message
            } else {
                let sent = self.user_messages.iter().find(|m| m.id == message_id && m.channel_id == channel_id)?;
                payloads::user_message(
                    channel_id,
                    message_id,
                    &sent.author,
                    &sent.content,
                    sent.reply_to,
                    &sent.attachments,
                )
            };
        if let Some(emojis) = self.reactions.get(&(channel_id, message_id)).filter(|emojis| !emojis.is_empty()) {
            message["reactions"] = payloads::reactions(emojis);
        }
        if let Some(reference) =
            message.get_mut("message_reference").filter(|r| r.is_object() && self.is_thread(channel_id))
        {
            reference["guild_id"] = options.guild_id.to_string().into();
        }
        Some(message)
    }
}

/// The id of the message `body` replies to: its `message_reference`'s `message_id` when the reference is a reply
/// (type 0, the default), not a forward.
pub(crate) fn replied_to(body: &Value) -> Option<u64> {
    let reference = body.get("message_reference")?;
    if reference.get("type").and_then(Value::as_u64).is_some_and(|kind| kind != 0) {
        return None;
    }
    let id = &reference["message_id"];
    id.as_str().and_then(|id| id.parse().ok()).or(id.as_u64())
}

/// A message a bot posted to a channel, with its edits applied.
#[derive(Debug, Clone)]
pub struct ChannelMessage {
    pub id: u64,
    pub channel_id: u64,
    /// The fields the bot sent (`content`, `embeds`, `components`, …), later edits overwriting earlier values.
    pub body: Value,
    /// How many times it was edited.
    pub edits: u32,
    /// The files it was posted with (`multipart/form-data`), in order.
    pub files: Vec<multipart::File>,
}

/// What the REST and gateway tasks share with the handle.
struct Shared {
    options: Options,
    rest_url: String,
    gateway_url: String,
    state: Mutex<State>,
    /// One permit per [`FakeDiscord::release`]; each held request takes one.
    released: tokio::sync::Semaphore,
    /// Every task the fake spawned, aborted when the handle is dropped.
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide what the fake recorded.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task).abort_handle();
        let mut tasks = self.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tasks.retain(|task| !task.is_finished());
        tasks.push(handle);
    }
}

/// A running fake Discord. Dropping it stops it.
pub struct FakeDiscord {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FakeDiscord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDiscord")
            .field("rest", &self.shared.rest_url)
            .field("gateway", &self.shared.gateway_url)
            .finish()
    }
}

impl FakeDiscord {
    /// Starts a fake Discord with the default [`Options`].
    pub async fn start() -> FakeDiscord {
        FakeDiscord::start_with(Options::default()).await.expect("the fake Discord binds two loopback ports")
    }

    pub async fn start_with(options: Options) -> std::io::Result<FakeDiscord> {
        let rest = TcpListener::bind("127.0.0.1:0").await?;
        let gateway = TcpListener::bind("127.0.0.1:0").await?;
        let (rest_address, gateway_address): (SocketAddr, SocketAddr) = (rest.local_addr()?, gateway.local_addr()?);
        let shared = Arc::new(Shared {
            options,
            rest_url: format!("http://{rest_address}"),
            gateway_url: format!("ws://{gateway_address}"),
            state: Mutex::new(State::default()),
            released: tokio::sync::Semaphore::new(0),
            tasks: Mutex::new(Vec::new()),
        });
        shared.spawn(rest::serve(rest, shared.clone()));
        shared.spawn(gateway::serve(gateway, shared.clone()));
        Ok(FakeDiscord { shared })
    }

    /// Starts a fake Discord on a runtime of its own, for callers without one (xtask).
    pub fn start_in_background(options: Options) -> std::io::Result<Background> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let discord = runtime.block_on(FakeDiscord::start_with(options))?;
        Ok(Background { discord: Some(discord), runtime })
    }

    pub fn options(&self) -> &Options {
        &self.shared.options
    }

    pub fn token(&self) -> &str {
        &self.shared.options.token
    }

    /// What a bot takes as its REST proxy (`http://127.0.0.1:PORT`): serenity puts `/api/v10/…` after it.
    pub fn api_base(&self) -> String {
        self.shared.rest_url.clone()
    }

    /// The gateway's `ws://` URL, as `GET /gateway` returns it.
    pub fn gateway_url(&self) -> String {
        self.shared.gateway_url.clone()
    }

    /// A webhook URL as a user copies it from Discord (without the API version), for absturz.
    pub fn webhook_url(&self) -> String {
        format!("{}/api/webhooks/123/secret-token", self.shared.rest_url)
    }

    /// The next calls to `endpoint` get these answers, in order; after them, calls are answered normally.
    pub fn script(&self, endpoint: Endpoint, answers: &[Answer]) {
        self.shared.state().scripts.entry(endpoint).or_default().extend(answers.iter().copied());
    }

    /// Lets one request held by [`Answer::Hold`] go on (or the next one, if none is held yet).
    pub fn release(&self) {
        self.shared.released.add_permits(1);
    }

    /// How many requests are held by [`Answer::Hold`] right now.
    pub fn holding(&self) -> usize {
        self.shared.state().holding
    }

    /// Enforces a Discord-style rate limit on webhook posts: at most `per_window` accepted per `window`, 429 beyond.
    pub fn limit(&self, per_window: u32, window: Duration) {
        self.shared.state().limit = Some((per_window, window));
    }

    /// Every REST call so far, in arrival order of their answers.
    pub fn received(&self) -> Vec<Received> {
        self.shared.state().received.clone()
    }

    /// The REST calls to one endpoint.
    pub fn received_at(&self, endpoint: Endpoint) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.endpoint == endpoint).collect()
    }

    /// The answers the bot gave to `interaction`: its callbacks and follow-ups, in order.
    pub fn answers_to(&self, interaction: &Interaction) -> Vec<Received> {
        let marker = format!("/{}/", interaction.token);
        let tail = format!("/{}", interaction.token);
        self.received()
            .into_iter()
            .filter(|r| matches!(r.endpoint, Endpoint::Callback | Endpoint::FollowUp | Endpoint::Original))
            .filter(|r| r.path.contains(&marker) || r.path.ends_with(&tail))
            .collect()
    }

    /// The message the bot's answer to `interaction` made, when it answered with one (a callback of type 4,
    /// CHANNEL_MESSAGE_WITH_SOURCE, accepted), in the channel the fake's interactions come from: what a user sees
    /// and can [`select`](FakeDiscord::select) or [`press`](FakeDiscord::press) on. Its id is the interaction's own
    /// plus one (Discord gives it a new snowflake); a later type 7 answer to a component on it (UPDATE_MESSAGE)
    /// is not applied here.
    pub fn response_message(&self, interaction: &Interaction) -> Option<ChannelMessage> {
        let answered = self
            .answers_to(interaction)
            .into_iter()
            .find(|r| r.endpoint == Endpoint::Callback && r.status < 300 && r.body["type"] == 4)?;
        Some(ChannelMessage {
            id: interaction.id + 1,
            channel_id: self.shared.options.channel_id,
            body: answered.body["data"].clone(),
            edits: 0,
            files: Vec::new(),
        })
    }

    /// Every embed of every accepted webhook post, in order.
    pub fn embeds(&self) -> Vec<Value> {
        self.received_at(Endpoint::Webhook)
            .into_iter()
            .filter(|r| r.status == 200)
            .flat_map(|r| r.body["embeds"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// How many alerts the accepted embeds stand for: a grouped embed's title ends with " ×N".
    pub fn alerts(&self) -> u64 {
        self.alerts_titled("")
    }

    /// How many alerts arrived in embeds whose title starts with `prefix`.
    pub fn alerts_titled(&self, prefix: &str) -> u64 {
        self.embeds()
            .iter()
            .filter_map(|embed| embed["title"].as_str().map(str::to_owned))
            .filter(|title| title.starts_with(prefix))
            .map(|title| title.rsplit_once(" ×").and_then(|(_, n)| n.parse().ok()).unwrap_or(1))
            .sum()
    }

    /// What the gateway has seen so far.
    pub fn gateway(&self) -> GatewayStats {
        self.shared.state().gateway.stats()
    }

    /// Breaks the live gateway connection (or the next one, if none is live).
    pub fn fault(&self, fault: Fault) {
        gateway::fault(&self.shared, fault);
    }

    /// The next IDENTIFY is refused with this close code, whatever its token (4004: a token revoked meanwhile).
    pub fn refuse_next_identify(&self, close_code: u16) {
        self.shared.state().gateway.refuse_next_identify = Some(close_code);
    }

    /// `user` invokes the slash command `name` with these string options: an INTERACTION_CREATE of type 2.
    pub fn command(&self, user: &User, name: &str, options: &[(&str, &str)]) -> Interaction {
        self.command_from(Origin::Home, user, name, options)
    }

    /// [`command`](FakeDiscord::command) from `origin`.
    pub fn command_from(&self, origin: Origin, user: &User, name: &str, options: &[(&str, &str)]) -> Interaction {
        let interaction = self.new_interaction();
        let payload = payloads::command(&self.shared.options, &interaction, user, name, options);
        self.send_from(origin, user, payload);
        interaction
    }

    /// `user` submits the modal `custom_id` with these text inputs: an INTERACTION_CREATE of type 5.
    pub fn modal_submit(&self, user: &User, custom_id: &str, fields: &[(&str, &str)]) -> Interaction {
        self.modal_submit_from(Origin::Home, user, custom_id, fields)
    }

    /// [`modal_submit`](FakeDiscord::modal_submit) from `origin`.
    pub fn modal_submit_from(
        &self,
        origin: Origin,
        user: &User,
        custom_id: &str,
        fields: &[(&str, &str)],
    ) -> Interaction {
        let interaction = self.new_interaction();
        let roles = self.roles_of(user);
        let payload = payloads::modal_submit(&self.shared.options, &interaction, user, &roles, custom_id, fields);
        self.send_from(origin, user, payload);
        interaction
    }

    /// `user` presses the button `custom_id` on `message`: an INTERACTION_CREATE of type 3. It comes from where the
    /// message is, as on Discord: from the direct message ([`Origin::Dm`]) when `message` is in a direct-message
    /// channel, else from the fake's guild ([`Origin::Home`]).
    pub fn press(&self, user: &User, message: &ChannelMessage, custom_id: &str) -> Interaction {
        self.press_from(self.origin_of(message), user, message, custom_id)
    }

    /// [`press`](FakeDiscord::press) from `origin`. From [`Origin::Dm`], the channel is `message`'s when it is a
    /// direct-message channel, else `user`'s direct-message channel.
    pub fn press_from(&self, origin: Origin, user: &User, message: &ChannelMessage, custom_id: &str) -> Interaction {
        let interaction = self.new_interaction();
        let roles = self.roles_of(user);
        let at = (message.channel_id, message.id);
        let payload = payloads::button(&self.shared.options, &interaction, user, &roles, at, custom_id);
        let payload = self.with_message(payload, message);
        self.send_at(origin, user, Some(message.channel_id), payload);
        interaction
    }

    /// `user` picks `values` (the options' `value`s) in the string select menu `custom_id` on `message`: an
    /// INTERACTION_CREATE of type 3 with `data.component_type` 3 and `data.values`. Like
    /// [`press`](FakeDiscord::press), it comes from the direct message when `message` is in one, else from the
    /// fake's guild.
    pub fn select(&self, user: &User, message: &ChannelMessage, custom_id: &str, values: &[&str]) -> Interaction {
        self.select_from(self.origin_of(message), user, message, custom_id, values)
    }

    /// [`select`](FakeDiscord::select) from `origin` (the channel chosen as by [`press_from`](FakeDiscord::press_from)).
    pub fn select_from(
        &self,
        origin: Origin,
        user: &User,
        message: &ChannelMessage,
        custom_id: &str,
        values: &[&str],
    ) -> Interaction {
        let interaction = self.new_interaction();
        let roles = self.roles_of(user);
        let at = (message.channel_id, message.id);
        let payload = payloads::select(&self.shared.options, &interaction, user, &roles, at, custom_id, values);
        let payload = self.with_message(payload, message);
        self.send_at(origin, user, Some(message.channel_id), payload);
        interaction
    }

    /// The interaction `payload` with the message its component is on as Discord sends it: the bot's message as it
    /// reads now (its text, embeds and components, edits included), a plain message (type 0, or 19 for a reply) of
    /// the bot's, so that a bot can check that the component pressed is one it put there.
    fn with_message(&self, mut payload: Value, message: &ChannelMessage) -> Value {
        let now = self.shared.state().messages.iter().find(|m| m.id == message.id).map(|m| m.body.clone());
        let body = now.unwrap_or_else(|| message.body.clone());
        let target = &mut payload["message"];
        for field in ["content", "embeds", "components"] {
            target[field] = body
                .get(field)
                .cloned()
                .unwrap_or_else(|| if field == "content" { "".into() } else { Value::Array(Vec::new()) });
        }
        if let Some(object) = target.as_object_mut() {
            object.remove("interaction_metadata");
            object.remove("webhook_id");
        }
        target["type"] = if body.get("message_reference").is_some() { 19 } else { 0 }.into();
        payload
    }

    /// Where a component on `message` is used from: its direct message, or the fake's guild.
    fn origin_of(&self, message: &ChannelMessage) -> Origin {
        if self.shared.state().is_dm(message.channel_id) { Origin::Dm } else { Origin::Home }
    }

    /// Dispatches an interaction built for the fake's own guild as coming from `origin`.
    fn send_from(&self, origin: Origin, user: &User, payload: Value) {
        self.send_at(origin, user, None, payload);
    }

    /// [`send_from`](FakeDiscord::send_from) for an interaction on a message in `channel`: from [`Origin::Dm`] it
    /// comes from that channel when it is a direct-message channel.
    fn send_at(&self, origin: Origin, user: &User, channel: Option<u64>, payload: Value) {
        let payload = match origin {
            Origin::Home => payload,
            Origin::Guild { guild_id, channel_id } => payloads::in_guild(payload, guild_id, channel_id),
            Origin::Dm => {
                let mut state = self.shared.state();
                let channel = match channel.filter(|channel| state.is_dm(*channel)) {
                    Some(channel) => channel,
                    // The same channel every time for the same user, as Discord does; the bot's messages to the
                    // user land there too.
                    None => *state.dm_channels.entry(user.id).or_insert_with(payloads::snowflake),
                };
                payloads::in_dm(payload, channel)
            }
        };
        gateway::dispatch(&self.shared, "INTERACTION_CREATE", payload);
    }

    /// `user` writes `content` to the bot in their direct messages; see
    /// [`direct_message_with`](FakeDiscord::direct_message_with). Returns the message's id.
    pub fn direct_message(&self, user: &User, content: &str) -> u64 {
        self.direct_message_with(user, DirectMessage::new(content))
    }

    /// `user` writes `message` to the bot in their direct messages: a MESSAGE_CREATE as Discord sends it to a session
    /// with the `DIRECT_MESSAGES` intent (none without), in the user's direct-message channel (the one
    /// [`dm_channel_of`](FakeDiscord::dm_channel_of) names, opened now if need be), with no `guild_id` or
    /// `member`. A reply (`reply_to`) is of type 19 with a `message_reference` and the `referenced_message` (null for
    /// a message the fake does not know). The fake keeps the message: `GET /channels/{id}/messages/{id}` returns it,
    /// and the bot can reply to it or react to it. Returns the message's id.
    pub fn direct_message_with(&self, user: &User, message: DirectMessage) -> u64 {
        let (id, payload) = self.keep_direct_message(user, message);
        gateway::dispatch_for(&self.shared, Some(gateway::DIRECT_MESSAGES), "MESSAGE_CREATE", payload);
        id
    }

    /// `user` writes `message` in the thread `thread_id` (one the bot started): a MESSAGE_CREATE as Discord sends
    /// it to a session with the `GUILD_MESSAGES` intent (none without), with `guild_id` and the author's `member`
    /// (their roles, as [`grant_role`](FakeDiscord::grant_role) gave them). A session without the privileged
    /// `MESSAGE_CONTENT` intent gets it with empty `content`, `embeds`, `attachments` and `components`, as Discord
    /// sends every guild message that neither mentions the bot nor is its own. Returns the message's id, or `None`
    /// (and nothing is sent) when `user` may not write there: a private thread takes messages from its members and
    /// from those with the role [`moderate_threads`](FakeDiscord::moderate_threads) named (Manage Threads).
    pub fn thread_message(&self, user: &User, thread_id: u64, message: DirectMessage) -> Option<u64> {
        let (id, payload) = self.keep_thread_message(user, thread_id, message)?;
        gateway::dispatch_for(&self.shared, Some(gateway::GUILD_MESSAGES), "MESSAGE_CREATE", payload);
        Some(id)
    }

    /// [`thread_message`](FakeDiscord::thread_message) while the bot has no gateway session: kept, listed in the
    /// thread's history, never dispatched.
    pub fn thread_message_while_away(&self, user: &User, thread_id: u64, content: &str) -> Option<u64> {
        self.keep_thread_message(user, thread_id, DirectMessage::new(content)).map(|(id, _)| id)
    }

    /// Members of `role_id` have Manage Threads in the fake's guild: they see and may write in every private
    /// thread, as Discord lets them.
    pub fn moderate_threads(&self, role_id: u64) {
        self.shared.state().moderators = Some(role_id);
    }

    /// The threads the bot started in `parent_id`, oldest first.
    pub fn threads_in(&self, parent_id: u64) -> Vec<Thread> {
        let mut threads: Vec<Thread> =
            self.shared.state().threads.values().filter(|t| t.parent_id == parent_id).cloned().collect();
        threads.sort_by_key(|thread| thread.id);
        threads
    }

    /// Keeps `user`'s message in a thread: its id and its MESSAGE_CREATE payload, if `user` may write there.
    fn keep_thread_message(&self, user: &User, thread_id: u64, message: DirectMessage) -> Option<(u64, Value)> {
        let id = payloads::snowflake();
        let roles = self.roles_of(user);
        let mut state = self.shared.state();
        let thread = state.threads.get(&thread_id)?;
        let moderator = state.moderators.is_some_and(|role| roles.contains(&role));
        if thread.kind == 12 && !thread.members.contains(&user.id) && !moderator {
            return None;
        }
        let attachments =
            message.attachments.iter().map(|file| payloads::attachment(payloads::snowflake(), file)).collect();
        state.user_messages.push(UserMessage {
            id,
            channel_id: thread_id,
            author: user.clone(),
            content: message.content,
            reply_to: message.reply_to,
            attachments,
        });
        let mut payload = state.message(&self.shared.options, thread_id, id)?;
        // MESSAGE_CREATE's extra fields for a message in a server; `GET` returns the message without them.
        payload["guild_id"] = self.shared.options.guild_id.to_string().into();
        payload["member"] = payloads::member(&roles);
        Some((id, payload))
    }

    /// `user` writes `content` to the bot while the bot has no gateway session (franz stopped, or killed): Discord
    /// keeps the message in the channel (`GET /channels/{id}/messages` lists it) but never dispatches it, not even to
    /// the bot's next session, which starts with IDENTIFY rather than RESUME. (The fake's other dispatches wait for
    /// the next session, a convenience for tests.) Returns the message's id.
    pub fn direct_message_while_away(&self, user: &User, content: &str) -> u64 {
        self.keep_direct_message(user, DirectMessage::new(content)).0
    }

    /// Keeps `user`'s direct message: its id, and the MESSAGE_CREATE payload Discord would dispatch for it.
    fn keep_direct_message(&self, user: &User, message: DirectMessage) -> (u64, Value) {
        let id = payloads::snowflake();
        let payload = {
            let mut state = self.shared.state();
            let channel_id = *state.dm_channels.entry(user.id).or_insert_with(payloads::snowflake);
            let attachments =
                message.attachments.iter().map(|file| payloads::attachment(payloads::snowflake(), file)).collect();
            state.user_messages.push(UserMessage {
                id,
                channel_id,
                author: user.clone(),
                content: message.content,
                reply_to: message.reply_to,
                attachments,
            });
            state.message(&self.shared.options, channel_id, id).unwrap_or(Value::Null)
        };
        (id, payload)
    }

    /// The direct-message channel between `user` and the bot, once one of them opened it (the bot with
    /// `POST /users/@me/channels`, the user by writing or by using the bot there).
    pub fn dm_channel_of(&self, user: &User) -> Option<u64> {
        self.shared.state().dm_channels.get(&user.id).copied()
    }

    /// The emoji the bot reacted with on the message `message_id` in `channel_id`, in order, each once: a Unicode
    /// emoji as itself (`👍`), a custom one as `name:id`.
    pub fn reactions(&self, channel_id: u64, message_id: u64) -> Vec<String> {
        self.shared.state().reactions.get(&(channel_id, message_id)).cloned().unwrap_or_default()
    }

    /// The application's global commands are `commands` (command definitions, as a bot registers them), as if an
    /// earlier configuration of the bot had registered them.
    pub fn register_globally(&self, commands: &[Value]) {
        let registered = payloads::registered(&self.shared.options, None, commands);
        self.shared.state().global_commands = registered.as_array().cloned().unwrap_or_default();
    }

    /// The application's global commands as Discord has them now.
    pub fn global_commands(&self) -> Vec<Value> {
        self.shared.state().global_commands.clone()
    }

    /// From now on, `user`'s interactions say they are a member with the role `role_id`.
    pub fn grant_role(&self, user: &User, role_id: u64) {
        self.shared.state().roles.entry(user.id).or_default().push(role_id);
    }

    /// The messages bots posted to `channel_id`, in order, as they read now.
    pub fn channel_messages(&self, channel_id: u64) -> Vec<ChannelMessage> {
        self.shared.state().messages.iter().filter(|m| m.channel_id == channel_id).cloned().collect()
    }

    /// Forgets the nonces of every message posted so far, as Discord does after a few minutes: a later post with
    /// one of them is a new message. Tests call it to stand for those minutes passing.
    pub fn forget_nonces(&self) {
        let mut state = self.shared.state();
        state.nonces_forgotten = state.messages.len();
    }

    /// From now on, `user` accepts no direct messages from the bot, as with "Allow direct messages from server
    /// members" turned off: the bot can open the channel, but a message there is refused (403, code 50007).
    pub fn refuse_dms(&self, user: &User) {
        self.shared.state().closed_dms.insert(user.id);
    }

    /// The direct messages the bot sent `user` and Discord accepted, in order (not the ones `user` wrote).
    pub fn direct_messages(&self, user: &User) -> Vec<ChannelMessage> {
        let state = self.shared.state();
        let Some(channel) = state.dm_channels.get(&user.id).copied() else { return Vec::new() };
        state.messages.iter().filter(|m| m.channel_id == channel).cloned().collect()
    }

    fn roles_of(&self, user: &User) -> Vec<u64> {
        self.shared.state().roles.get(&user.id).cloned().unwrap_or_default()
    }

    /// Dispatches any event as it is (for payloads the helpers above do not build).
    pub fn dispatch(&self, event: &str, data: Value) {
        gateway::dispatch(&self.shared, event, data);
    }

    fn new_interaction(&self) -> Interaction {
        let id = payloads::snowflake();
        let token = format!("aW50ZXJhY3Rpb246{id}");
        let state = InteractionState { token: token.clone(), acknowledged: false };
        self.shared.state().interactions.insert(id, state);
        Interaction { id, token }
    }
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        for task in self.shared.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).drain(..) {
            task.abort();
        }
    }
}

/// A fake Discord with the runtime it runs on; dereferences to the [`FakeDiscord`].
pub struct Background {
    discord: Option<FakeDiscord>,
    runtime: tokio::runtime::Runtime,
}

impl std::ops::Deref for Background {
    type Target = FakeDiscord;
    fn deref(&self) -> &FakeDiscord {
        self.discord.as_ref().expect("the fake lives as long as its runtime")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Aborting the fake's tasks needs its runtime's context.
        let _entered = self.runtime.enter();
        self.discord.take();
    }
}
