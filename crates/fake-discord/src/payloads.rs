//! The JSON the fake sends: Discord's documented objects, kept as fixtures in `fixtures/discord/` and filled in
//! with this fake's ids, tokens and users.
//!
//! Each fixture is one example of the object as Discord's documentation (and a real gateway) shows it, with every
//! field serenity 0.12 requires (`entitlements` and `attachment_size_limit` on interactions, for instance); franz's
//! tests deserialize them with serenity's own types. This module only fills in values; it decides no behaviour.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::{Attachment, Interaction, Options, User};

pub const APPLICATION_ID: u64 = 1177000000000000001;
pub const GUILD_ID: u64 = 1177000000000000002;
pub const CHANNEL_ID: u64 = 1177000000000000003;

const APPLICATION: &str = include_str!("../../../fixtures/discord/application.json");
const READY: &str = include_str!("../../../fixtures/discord/ready.json");
const COMMAND: &str = include_str!("../../../fixtures/discord/interaction-command.json");
const MODAL_SUBMIT: &str = include_str!("../../../fixtures/discord/interaction-modal-submit.json");
const COMPONENT: &str = include_str!("../../../fixtures/discord/interaction-component.json");
const MESSAGE: &str = include_str!("../../../fixtures/discord/message.json");
const DM_CHANNEL: &str = include_str!("../../../fixtures/discord/dm-channel.json");
const THREAD_CHANNEL: &str = include_str!("../../../fixtures/discord/thread-channel.json");

/// A fixture as it is stored.
pub fn fixture(name: &str) -> Value {
    let text = match name {
        "application" => APPLICATION,
        "ready" => READY,
        "interaction-command" => COMMAND,
        "interaction-modal-submit" => MODAL_SUBMIT,
        "interaction-component" => COMPONENT,
        "message" => MESSAGE,
        "dm-channel" => DM_CHANNEL,
        "thread-channel" => THREAD_CHANNEL,
        other => panic!("no Discord fixture named {other:?}"),
    };
    serde_json::from_str(text).unwrap_or_else(|error| panic!("fixtures/discord/{name}.json is not JSON: {error}"))
}

/// The names of every fixture, for tests that check them all.
pub const FIXTURES: [&str; 8] = [
    "application",
    "ready",
    "interaction-command",
    "interaction-modal-submit",
    "interaction-component",
    "message",
    "dm-channel",
    "thread-channel",
];

/// A new snowflake: milliseconds since Discord's epoch (2015) in the top bits, a counter in the low 22, so ids are
/// unique and increase, and their timestamp is now.
pub fn snowflake() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    (now.saturating_sub(DISCORD_EPOCH_MS) << 22) | (COUNTER.fetch_add(1, Ordering::Relaxed) & 0x3F_FFFF)
}

/// `GET /oauth2/applications/@me`.
pub fn application(options: &Options) -> Value {
    let mut application = fixture("application");
    application["id"] = options.application_id.to_string().into();
    application["bot"]["id"] = options.application_id.to_string().into();
    if !options.message_content {
        // GATEWAY_MESSAGE_CONTENT and GATEWAY_MESSAGE_CONTENT_LIMITED: the intent is not enabled for the app.
        let flags = application["flags"].as_u64().unwrap_or(0) & !(MESSAGE_CONTENT_FLAGS);
        application["flags"] = flags.into();
    }
    application
}

/// The application flags that say the Message Content intent is enabled: `GATEWAY_MESSAGE_CONTENT` (`1 << 18`,
/// a verified app) and `GATEWAY_MESSAGE_CONTENT_LIMITED` (`1 << 19`, an app in fewer than 100 servers).
pub const MESSAGE_CONTENT_FLAGS: u64 = (1 << 18) | (1 << 19);

/// A private (type 12) or public (11) thread `thread_id` the bot made in `parent_id`, as
/// `POST /channels/{id}/threads` returns it: the bot is its owner and first member.
pub fn thread_channel(
    options: &Options,
    thread_id: u64,
    parent_id: u64,
    name: &str,
    kind: u64,
    invitable: bool,
) -> Value {
    let mut channel = fixture("thread-channel");
    channel["id"] = thread_id.to_string().into();
    channel["guild_id"] = options.guild_id.to_string().into();
    channel["parent_id"] = parent_id.to_string().into();
    channel["owner_id"] = options.application_id.to_string().into();
    channel["name"] = name.into();
    channel["type"] = kind.into();
    channel["thread_metadata"]["invitable"] = invitable.into();
    let stamp: Value = timestamp(thread_id).into();
    channel["thread_metadata"]["archive_timestamp"] = stamp.clone();
    channel["thread_metadata"]["create_timestamp"] = stamp.clone();
    channel["member"]["id"] = thread_id.to_string().into();
    channel["member"]["user_id"] = options.application_id.to_string().into();
    channel["member"]["join_timestamp"] = stamp;
    channel
}

/// A guild member as a guild message's MESSAGE_CREATE carries it (`member`, without its `user`), with `roles`.
pub fn member(roles: &[u64]) -> Value {
    let mut member = fixture("interaction-component")["member"].clone();
    if let Some(object) = member.as_object_mut() {
        object.remove("user");
        object.remove("permissions");
    }
    member["roles"] = roles.iter().map(|role| Value::from(role.to_string())).collect::<Vec<_>>().into();
    member
}

/// The bot user (`GET /users/@me`, READY's `user`).
pub fn bot_user(options: &Options) -> Value {
    let mut user = fixture("ready")["user"].clone();
    user["id"] = options.application_id.to_string().into();
    user
}

/// The READY dispatch of a new session.
pub fn ready(options: &Options, session_id: &str, resume_gateway_url: &str) -> Value {
    let mut ready = fixture("ready");
    ready["user"] = bot_user(options);
    ready["guilds"] = json!([{"id": options.guild_id.to_string(), "unavailable": true}]);
    ready["session_id"] = session_id.into();
    ready["resume_gateway_url"] = resume_gateway_url.into();
    ready["application"]["id"] = options.application_id.to_string().into();
    ready
}

/// What an interaction from `user` in the fake's guild and channel has in common, whatever its type.
fn interaction(mut payload: Value, options: &Options, interaction: &Interaction, user: &User, roles: &[u64]) -> Value {
    let (guild, channel) = (options.guild_id.to_string(), options.channel_id.to_string());
    payload["id"] = interaction.id.to_string().into();
    payload["token"] = interaction.token.clone().into();
    payload["application_id"] = options.application_id.to_string().into();
    payload["guild_id"] = guild.clone().into();
    payload["guild"]["id"] = guild.clone().into();
    payload["channel_id"] = channel.clone().into();
    payload["channel"]["id"] = channel.into();
    payload["channel"]["guild_id"] = guild.clone().into();
    payload["authorizing_integration_owners"] = json!({"0": guild});
    payload["member"]["roles"] = roles.iter().map(|r| Value::from(r.to_string())).collect();
    let member_user = &mut payload["member"]["user"];
    member_user["id"] = user.id.to_string().into();
    member_user["username"] = user.username.clone().into();
    member_user["global_name"] = user.global_name.clone().map_or(Value::Null, Value::from);
    payload
}

/// An interaction built for the fake's own guild, as it arrives from another server the bot is in: that server's
/// ids throughout. The command reaches the bot there through a global registration, so its data names no guild.
pub fn in_guild(mut payload: Value, guild_id: u64, channel_id: u64) -> Value {
    let (guild, channel) = (guild_id.to_string(), channel_id.to_string());
    payload["guild_id"] = guild.clone().into();
    payload["guild"]["id"] = guild.clone().into();
    payload["channel_id"] = channel.clone().into();
    payload["channel"]["id"] = channel.clone().into();
    payload["channel"]["guild_id"] = guild.clone().into();
    payload["authorizing_integration_owners"] = json!({"0": guild});
    if let Some(message) = payload.get_mut("message") {
        message["channel_id"] = channel.into();
    }
    if let Some(data) = payload["data"].as_object_mut() {
        data.remove("guild_id");
    }
    payload
}

/// An interaction built for the fake's own guild, as it arrives from the user's direct messages with the bot
/// (`channel_id`): Discord sends the invoking `user` instead of `member`, no `guild_id`, `guild` or
/// `guild_locale`, the bot-DM context (1), and "0" as the guild installation's owner.
pub fn in_dm(mut payload: Value, channel_id: u64) -> Value {
    let user = payload["member"]["user"].clone();
    let channel = channel_id.to_string();
    if let Some(object) = payload.as_object_mut() {
        for gone in ["member", "guild_id", "guild", "guild_locale"] {
            object.remove(gone);
        }
        object.insert("user".into(), user.clone());
        object.insert("channel_id".into(), channel.clone().into());
        object.insert(
            "channel".into(),
            json!({"id": channel, "type": 1, "flags": 0, "last_message_id": null, "recipients": [user]}),
        );
        object.insert("context".into(), 1.into());
        object.insert("authorizing_integration_owners".into(), json!({"0": "0"}));
    }
    if let Some(message) = payload.get_mut("message") {
        message["channel_id"] = channel.into();
    }
    if let Some(data) = payload["data"].as_object_mut() {
        data.remove("guild_id");
    }
    payload
}

/// INTERACTION_CREATE of type 2 (application command): `/name` with string options.
pub fn command(options: &Options, call: &Interaction, user: &User, name: &str, values: &[(&str, &str)]) -> Value {
    let mut payload = interaction(fixture("interaction-command"), options, call, user, &[]);
    payload["data"]["name"] = name.into();
    payload["data"]["guild_id"] = options.guild_id.to_string().into();
    payload["data"]["options"] =
        values.iter().map(|(name, value)| json!({"name": name, "type": 3, "value": value})).collect();
    payload
}

/// INTERACTION_CREATE of type 5 (modal submit): one action row per text input.
pub fn modal_submit(
    options: &Options,
    call: &Interaction,
    user: &User,
    roles: &[u64],
    custom_id: &str,
    fields: &[(&str, &str)],
) -> Value {
    let mut payload = interaction(fixture("interaction-modal-submit"), options, call, user, roles);
    payload["data"]["custom_id"] = custom_id.into();
    payload["data"]["components"] = fields
        .iter()
        .map(|(id, value)| json!({"type": 1, "components": [{"type": 4, "custom_id": id, "value": value}]}))
        .collect();
    payload
}

/// INTERACTION_CREATE of type 3 (message component): a press of the button `custom_id` on the message `message_id`
/// in `channel_id`, by a member with `roles`.
pub fn button(
    options: &Options,
    call: &Interaction,
    user: &User,
    roles: &[u64],
    (channel_id, message_id): (u64, u64),
    custom_id: &str,
) -> Value {
    let mut payload = interaction(fixture("interaction-component"), options, call, user, roles);
    payload["channel_id"] = channel_id.to_string().into();
    payload["channel"]["id"] = channel_id.to_string().into();
    payload["data"]["custom_id"] = custom_id.into();
    let message = &mut payload["message"];
    message["id"] = message_id.to_string().into();
    message["channel_id"] = channel_id.to_string().into();
    message["author"]["id"] = options.application_id.to_string().into();
    message["flags"] = 0.into();
    payload
}

/// INTERACTION_CREATE of type 3 (message component) from a string select menu (component type 3): `user` picks
/// `values` in the menu `custom_id` on the message `message_id` in `channel_id`. Discord sends the picked options'
/// `value`s in `data.values`, in the order the user picked them.
pub fn select(
    options: &Options,
    call: &Interaction,
    user: &User,
    roles: &[u64],
    at: (u64, u64),
    custom_id: &str,
    values: &[&str],
) -> Value {
    let mut payload = button(options, call, user, roles, at, custom_id);
    payload["data"]["component_type"] = 3.into();
    payload["data"]["values"] = values.iter().map(|value| Value::from(*value)).collect();
    payload
}

/// A user object as Discord shows another user (a message's author, an interaction's user): the fixture's user
/// with `user`'s id and names.
pub fn user(user: &User) -> Value {
    let mut object = fixture("interaction-component")["member"]["user"].clone();
    object["id"] = user.id.to_string().into();
    object["username"] = user.username.clone().into();
    object["global_name"] = user.global_name.clone().map_or(Value::Null, Value::from);
    object
}

/// The ISO 8601 timestamp Discord gives a message: the time in its snowflake `id`, to the millisecond.
pub fn timestamp(id: u64) -> String {
    const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
    let ms = (id >> 22) + DISCORD_EPOCH_MS;
    let (days, of_day) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Howard Hinnant's civil_from_days: days since 1970-01-01 to a proleptic Gregorian date.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (hours, minutes, seconds, millis) =
        (of_day / 3_600_000, of_day / 60_000 % 60, of_day / 1000 % 60, of_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{seconds:02}.{millis:03}000+00:00")
}

/// An attachment object for the file `attachment`, stored by Discord under the id `id`: `proxy_url` is its
/// `url` on Discord's media proxy (`media.discordapp.net` for a `cdn.discordapp.com` URL, else the same URL).
pub fn attachment(id: u64, attachment: &Attachment) -> Value {
    let proxy_url = attachment.url.replacen("https://cdn.discordapp.com/", "https://media.discordapp.net/", 1);
    json!({
        "id": id.to_string(),
        "filename": attachment.filename,
        "size": attachment.size,
        "url": attachment.url,
        "proxy_url": proxy_url,
        "content_type": attachment.content_type,
    })
}

/// A `message_reference` as Discord sets it on a reply (type 0, DEFAULT) to `message_id` in `channel_id`; a
/// direct-message channel has no guild, so there is no `guild_id`.
pub fn reference(channel_id: u64, message_id: u64, guild_id: Option<u64>) -> Value {
    let mut reference = json!({"type": 0, "message_id": message_id.to_string(), "channel_id": channel_id.to_string()});
    if let Some(guild) = guild_id {
        reference["guild_id"] = guild.to_string().into();
    }
    reference
}

/// The message `message_id` a user (`author`) sent in the direct-message channel `channel_id`, as Discord sends
/// it in MESSAGE_CREATE and returns it from `GET /channels/{id}/messages/{id}`: type 0, or 19 (REPLY) with a
/// `message_reference` when it replies to `reply_to`; no `guild_id` and no `member`, as in every direct message.
/// `referenced_message` is for the caller to add (Discord includes it with every reply).
pub fn user_message(
    channel_id: u64,
    message_id: u64,
    author: &User,
    content: &str,
    reply_to: Option<u64>,
    attachments: &[Value],
) -> Value {
    let mut message = fixture("message");
    message["id"] = message_id.to_string().into();
    message["channel_id"] = channel_id.to_string().into();
    message["author"] = user(author);
    message["content"] = content.into();
    message["timestamp"] = timestamp(message_id).into();
    message["attachments"] = attachments.to_vec().into();
    message["flags"] = 0.into();
    message["type"] = 0.into();
    if let Some(object) = message.as_object_mut() {
        for gone in ["webhook_id", "interaction_metadata", "position"] {
            object.remove(gone);
        }
    }
    if let Some(replied) = reply_to {
        message["type"] = 19.into();
        message["message_reference"] = reference(channel_id, replied, None);
    }
    message
}

/// The emoji object of an emoji as a reaction's URL names it: a Unicode emoji (`👍`), or a custom one as
/// `name:id`.
pub fn emoji(emoji: &str) -> Value {
    match emoji.rsplit_once(':') {
        Some((name, id)) if id.parse::<u64>().is_ok() => json!({"id": id, "name": name}),
        _ => json!({"id": null, "name": emoji}),
    }
}

/// A message's `reactions`, each emoji put there by the bot alone (`count` 1, `me` true).
pub fn reactions(emojis: &[String]) -> Value {
    emojis
        .iter()
        .map(|name| {
            json!({"emoji": emoji(name), "count": 1, "count_details": {"burst": 0, "normal": 1},
                   "me": true, "me_burst": false, "burst_me": false, "burst_count": 0, "burst_colors": []})
        })
        .collect()
}

/// MESSAGE_REACTION_ADD for the bot's own reaction `emoji` to the message `message_id` (written by
/// `author_id`) in the direct-message channel `channel_id`.
pub fn reaction_add(options: &Options, channel_id: u64, message_id: u64, author_id: u64, emoji_name: &str) -> Value {
    json!({
        "user_id": options.application_id.to_string(),
        "channel_id": channel_id.to_string(),
        "message_id": message_id.to_string(),
        "message_author_id": author_id.to_string(),
        "emoji": emoji(emoji_name),
        "burst": false,
        "burst_colors": [],
        "type": 0,
    })
}

/// The message a bot posts to a channel (`POST /channels/{id}/messages`), from the request's body.
pub fn channel_message(options: &Options, channel_id: u64, message_id: u64, body: &Value) -> Value {
    let mut message = fixture("message");
    message["id"] = message_id.to_string().into();
    message["channel_id"] = channel_id.to_string().into();
    message["author"]["id"] = options.application_id.to_string().into();
    message["type"] = 0.into();
    message["flags"] = 0.into();
    message["content"] = body.get("content").cloned().unwrap_or_else(|| "".into());
    if let Some(object) = message.as_object_mut() {
        object.remove("webhook_id");
        object.remove("interaction_metadata");
    }
    message
}

/// The direct-message channel with `recipient_id` (`POST /users/@me/channels`); the fake knows users by id only.
pub fn dm_channel(channel_id: u64, recipient_id: u64) -> Value {
    let mut channel = fixture("dm-channel");
    channel["id"] = channel_id.to_string().into();
    let recipient = &mut channel["recipients"][0];
    recipient["id"] = recipient_id.to_string().into();
    recipient["username"] = format!("user-{recipient_id}").into();
    recipient["global_name"] = Value::Null;
    channel
}

/// The message a follow-up or an edit creates, from the request's body.
pub fn message(options: &Options, body: &Value) -> Value {
    let mut message = fixture("message");
    message["id"] = snowflake().to_string().into();
    message["channel_id"] = options.channel_id.to_string().into();
    message["author"]["id"] = options.application_id.to_string().into();
    message["webhook_id"] = options.application_id.to_string().into();
    message["content"] = body.get("content").cloned().unwrap_or_else(|| "".into());
    message["flags"] = body.get("flags").cloned().unwrap_or_else(|| 0.into());
    message
}

/// The commands a `PUT …/commands` registered, as Discord answers: the request's commands with ids and versions.
pub fn registered(options: &Options, guild: Option<u64>, commands: &[Value]) -> Value {
    commands
        .iter()
        .map(|command| {
            let mut command = command.clone();
            command["id"] = snowflake().to_string().into();
            command["application_id"] = options.application_id.to_string().into();
            command["version"] = snowflake().to_string().into();
            command["default_member_permissions"] =
                command.get("default_member_permissions").cloned().unwrap_or(Value::Null);
            if command.get("type").is_none() {
                command["type"] = 1.into();
            }
            if let Some(guild) = guild {
                command["guild_id"] = guild.to_string().into();
            }
            command
        })
        .collect()
}
