//! The fake's REST API: routes `/api/v10/…` (and unversioned `/api/…`) to the endpoints a bot and a webhook
//! client use, checks the bot token where Discord does, answers as Discord documents, and records every call.
//!
//! Scripted answers ([`Answer`]) and the webhook rate limit are applied here, before the normal answer. Interaction
//! endpoints keep Discord's rules: an unknown interaction is 404 (10062), a second callback is 400 (40060), and a
//! follow-up needs an acknowledged interaction. A message to a user who refuses direct messages is 403 (50007). A
//! reply to a message the fake does not know is 400 (50035, `REPLIES_UNKNOWN_MESSAGE`) unless its
//! `message_reference` says `fail_if_not_exists: false` (then it is a plain message); fetching, editing or reacting
//! to an unknown message is 404 (10008). The bot's messages and reactions in a direct message are dispatched to it
//! (MESSAGE_CREATE, MESSAGE_REACTION_ADD), as Discord does for a session with the direct-message intents, and its
//! messages in its threads to a session with `GUILD_MESSAGES`. A thread's name has 1 to 100 characters, and a
//! direct message or a thread cannot hold one (50024).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::{Answer, Endpoint, Received, Shared, gateway, payloads};

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        let connection = shared.clone();
        shared.spawn(async move {
            let service = hyper::service::service_fn(move |request| handle(connection.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// An answer before it is sent: status, JSON body (none for 204) and extra headers.
struct Reply {
    status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply { status, body: Some(body), headers: Vec::new() }
    }

    fn error(status: u16, code: u32, message: &str) -> Reply {
        Reply::json(status, json!({"message": message, "code": code}))
    }

    fn rate_limited(retry_after: f64) -> Reply {
        let mut reply = Reply::json(
            429,
            json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": false}),
        );
        reply.headers.push(("retry-after", format!("{}", retry_after.ceil() as u64)));
        reply.headers.push(("x-ratelimit-scope", "user".into()));
        reply
    }
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let authorization =
        request.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let content_type =
        request.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let bytes = request.into_body().collect().await.map(|body| body.to_bytes()).unwrap_or_default();
    // A request with files: its JSON is the `payload_json` part.
    let (body, files) = match crate::multipart::parse(&content_type, &bytes) {
        Some((payload, files)) => (payload, files),
        None => (serde_json::from_slice(&bytes).unwrap_or(Value::Null), Vec::new()),
    };
    let (endpoint, ids) = classify(&method, &path, shared.options.application_id);

    let scripted = shared.state().scripts.get_mut(&endpoint).and_then(|script| script.pop_front());
    let reply = match scripted {
        Some(Answer::Status(status)) => Some(Reply::error(status, 0, &format!("{status}: scripted by the fake"))),
        Some(Answer::RateLimited(retry_after)) => Some(Reply::rate_limited(retry_after)),
        Some(Answer::Hold) => {
            shared.state().holding += 1;
            if let Ok(permit) = shared.released.acquire().await {
                permit.forget();
            }
            shared.state().holding -= 1;
            None
        }
        None => None,
    };
    let too_large = files.iter().map(|file| file.bytes.len()).sum::<usize>() > crate::multipart::FILES_MAX;
    let reply = reply.unwrap_or_else(|| match endpoint {
        _ if too_large => Reply::error(413, 40005, "Request entity too large"),
        Endpoint::ChannelHistory => history(&shared, &ids, &query, authorization.as_deref()),
        Endpoint::ChannelMessages if !files.is_empty() => posted_with(&shared, &method, &ids, &body, files),
        _ => answer(&shared, &method, endpoint, &ids, authorization.as_deref(), &body),
    });

    let received = Received {
        at: Instant::now(),
        method: method.to_string(),
        endpoint,
        path,
        query,
        authorization,
        status: reply.status,
        body,
    };
    shared.state().received.push(received);

    let mut response = Response::builder().status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK));
    for (name, value) in &reply.headers {
        response = response.header(*name, value);
    }
    let body = match reply.body {
        Some(body) => {
            response = response.header(hyper::header::CONTENT_TYPE, "application/json");
            Bytes::from(body.to_string())
        }
        None => Bytes::new(),
    };
    Ok(response.body(Full::new(body)).unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

/// A message posted with files: posted as any other, then the files kept with it and named in its `attachments`.
fn posted_with(
    shared: &Shared,
    method: &Method,
    ids: &[String],
    body: &Value,
    files: Vec<crate::multipart::File>,
) -> Reply {
    let channel_id = ids.first().and_then(|id| id.parse::<u64>().ok()).unwrap_or(0);
    let mut body = body.clone();
    body["attachments"] = crate::multipart::attachments(channel_id, &files);
    let mut reply = channel_message(shared, method, Endpoint::ChannelMessages, ids, &body);
    if reply.status == 200
        && let Some(id) =
            reply.body.as_ref().and_then(|message| message["id"].as_str()).and_then(|id| id.parse::<u64>().ok())
    {
        let mut state = shared.state();
        if let Some(message) = state.messages.iter_mut().find(|m| m.id == id && m.files.is_empty()) {
            message.files = files;
        }
        if let Some(message) = reply.body.as_mut() {
            message["attachments"] = body["attachments"].clone();
        }
    }
    reply
}

/// Which endpoint a request is for, and the ids and tokens in its path (after `/api[/vN]`).
fn classify(method: &Method, path: &str, application_id: u64) -> (Endpoint, Vec<String>) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["api", version, rest @ ..] if version.starts_with('v') && version[1..].parse::<u8>().is_ok() => rest,
        ["api", rest @ ..] => rest,
        _ => return (Endpoint::Unknown, Vec::new()),
    };
    let owned = |parts: &[&str]| parts.iter().map(|p| (*p).to_owned()).collect();
    let endpoint = match (method, rest) {
        (&Method::GET, ["gateway"]) => Endpoint::Gateway,
        (&Method::GET, ["gateway", "bot"]) => Endpoint::GatewayBot,
        (&Method::GET, ["oauth2", "applications", "@me"]) => Endpoint::CurrentApplication,
        (&Method::GET, ["users", "@me"]) => Endpoint::CurrentUser,
        (&Method::POST, ["users", "@me", "channels"]) => Endpoint::DmChannel,
        (&Method::GET | &Method::PUT, ["applications", application, "commands"]) => {
            return (Endpoint::GlobalCommands, owned(&[application]));
        }
        (&Method::PUT, ["applications", application, "guilds", guild, "commands"]) => {
            return (Endpoint::GuildCommands, owned(&[application, guild]));
        }
        (&Method::POST, ["channels", channel, "messages"]) => return (Endpoint::ChannelMessages, owned(&[channel])),
        (&Method::POST, ["channels", channel, "threads"]) => return (Endpoint::Threads, owned(&[channel])),
        (&Method::PUT | &Method::DELETE, ["channels", channel, "thread-members", user]) => {
            return (Endpoint::ThreadMember, owned(&[channel, user]));
        }
        (&Method::PATCH | &Method::DELETE, ["channels", channel, "messages", message]) => {
            return (Endpoint::ChannelMessage, owned(&[channel, message]));
        }
        (&Method::GET, ["channels", channel, "messages"]) => return (Endpoint::ChannelHistory, owned(&[channel])),
        (&Method::GET, ["channels", channel, "messages", message]) => {
            return (Endpoint::FetchMessage, owned(&[channel, message]));
        }
        (&Method::PUT, ["channels", channel, "messages", message, "reactions", emoji, "@me"]) => {
            return (Endpoint::Reaction, owned(&[channel, message, emoji]));
        }
        (&Method::POST, ["interactions", id, token, "callback"]) => return (Endpoint::Callback, owned(&[id, token])),
        (_, ["webhooks", id, token, "messages", "@original"]) => return (Endpoint::Original, owned(&[id, token])),
        (&Method::POST, ["webhooks", id, token]) if id.parse() == Ok(application_id) => {
            return (Endpoint::FollowUp, owned(&[id, token]));
        }
        (&Method::POST, ["webhooks", id, token]) => return (Endpoint::Webhook, owned(&[id, token])),
        _ => Endpoint::Unknown,
    };
    (endpoint, Vec::new())
}

/// The normal answer of an endpoint.
fn answer(
    shared: &Shared,
    method: &Method,
    endpoint: Endpoint,
    ids: &[String],
    authorization: Option<&str>,
    body: &Value,
) -> Reply {
    let options = &shared.options;
    let needs_token = matches!(
        endpoint,
        Endpoint::GatewayBot
            | Endpoint::CurrentApplication
            | Endpoint::CurrentUser
            | Endpoint::GlobalCommands
            | Endpoint::GuildCommands
            | Endpoint::ChannelMessages
            | Endpoint::ChannelMessage
            | Endpoint::FetchMessage
            | Endpoint::ChannelHistory
            | Endpoint::Reaction
            | Endpoint::DmChannel
            | Endpoint::Threads
            | Endpoint::ThreadMember
            | Endpoint::Unknown
    );
    if needs_token && authorization != Some(format!("Bot {}", options.token).as_str()) {
        return Reply::error(401, 0, "401: Unauthorized");
    }
    let message = match endpoint {
        Endpoint::ChannelMessages | Endpoint::ChannelMessage | Endpoint::Webhook | Endpoint::FollowUp => Some(body),
        Endpoint::Original if method == Method::PATCH => Some(body),
        Endpoint::Callback => body.get("data"),
        _ => None,
    };
    if let Some(errors) = message.and_then(crate::limits::refusal) {
        return Reply::json(400, json!({"message": "Invalid Form Body", "code": 50035, "errors": errors}));
    }
    let application = options.application_id.to_string();
    match endpoint {
        Endpoint::Gateway => Reply::json(200, json!({"url": shared.gateway_url})),
        Endpoint::GatewayBot => Reply::json(
            200,
            json!({"url": shared.gateway_url, "shards": 1,
                   "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}}),
        ),
        Endpoint::CurrentApplication => Reply::json(200, payloads::application(options)),
        Endpoint::CurrentUser => Reply::json(200, payloads::bot_user(options)),
        Endpoint::GlobalCommands | Endpoint::GuildCommands => {
            let guild = ids.get(1).map(|g| g.parse::<u64>().unwrap_or(0));
            if ids.first() != Some(&application) || guild.is_some_and(|g| g != options.guild_id) {
                return Reply::error(403, 50001, "Missing Access");
            }
            if method == Method::GET {
                // `classify` routes only the global list here: no guild is in the path.
                return Reply::json(200, Value::Array(shared.state().global_commands.clone()));
            }
            match body.as_array() {
                Some(commands) => {
                    let registered = payloads::registered(options, guild, commands);
                    if guild.is_none() {
                        shared.state().global_commands = registered.as_array().cloned().unwrap_or_default();
                    }
                    Reply::json(200, registered)
                }
                None => Reply::error(400, 50035, "Invalid Form Body"),
            }
        }
        Endpoint::Callback => {
            let id = ids.first().and_then(|id| id.parse::<u64>().ok()).unwrap_or(0);
            let mut state = shared.state();
            match state.interactions.get_mut(&id) {
                Some(interaction) if Some(&interaction.token) == ids.get(1) => {
                    if interaction.acknowledged {
                        return Reply::error(400, 40060, "Interaction has already been acknowledged.");
                    }
                    if body.get("type").and_then(Value::as_u64).is_none() {
                        return Reply::error(400, 50035, "Invalid Form Body");
                    }
                    interaction.acknowledged = true;
                    Reply { status: 204, body: None, headers: Vec::new() }
                }
                _ => Reply::error(404, 10062, "Unknown interaction"),
            }
        }
        Endpoint::FollowUp | Endpoint::Original => {
            let token = ids.get(1).cloned().unwrap_or_default();
            let state = shared.state();
            let known = state.interactions.values().any(|i| i.token == token && i.acknowledged);
            if !known {
                return Reply::error(404, 10015, "Unknown Webhook");
            }
            match (endpoint, method) {
                (Endpoint::Original, &Method::DELETE) => Reply { status: 204, body: None, headers: Vec::new() },
                _ => Reply::json(200, payloads::message(options, body)),
            }
        }
        Endpoint::Webhook => webhook(shared, body),
        Endpoint::ChannelMessages | Endpoint::ChannelMessage => channel_message(shared, method, endpoint, ids, body),
        Endpoint::FetchMessage => fetch_message(shared, ids),
        Endpoint::ChannelHistory => history(shared, ids, "", authorization),
        Endpoint::Reaction => reaction(shared, ids),
        Endpoint::DmChannel => dm_channel(shared, body),
        Endpoint::Threads => start_thread(shared, ids, body),
        Endpoint::ThreadMember if method == Method::DELETE => remove_thread_member(shared, ids),
        Endpoint::ThreadMember => add_thread_member(shared, ids),
        Endpoint::Unknown => Reply::error(404, 0, "404: Not Found"),
    }
}

/// A bot's message in a channel: posted (with Discord's `enforce_nonce`: a second post with the same nonce returns
/// the first message instead of a new one, unless [`crate::FakeDiscord::forget_nonces`] stood for the few minutes
/// after which Discord forgets a nonce; a reply to a message of the same channel the fake does not know is refused
/// unless `fail_if_not_exists` is false; a new message in a direct-message channel is dispatched as MESSAGE_CREATE),
/// edited, or deleted (404, 10008 for a message the fake never saw or deleted already).
fn channel_message(shared: &Shared, method: &Method, endpoint: Endpoint, ids: &[String], body: &Value) -> Reply {
    let number = |i: usize| ids.get(i).and_then(|id| id.parse::<u64>().ok()).unwrap_or(0);
    let channel_id = number(0);
    let options = &shared.options;
    let mut state = shared.state();
    let refused =
        state.dm_channels.iter().any(|(user, channel)| *channel == channel_id && state.closed_dms.contains(user));
    if endpoint == Endpoint::ChannelMessages && refused {
        return Reply::error(403, 50007, "Cannot send messages to this user");
    }
    if endpoint == Endpoint::ChannelMessages {
        let mut body = body.clone();
        if let Some(replied) = crate::replied_to(&body) {
            let reference = &body["message_reference"];
            let elsewhere = reference["channel_id"]
                .as_str()
                .and_then(|id| id.parse::<u64>().ok())
                .or(reference["channel_id"].as_u64())
                .is_some_and(|channel| channel != channel_id);
            if elsewhere || state.author_of(options, channel_id, replied).is_none() {
                if reference["fail_if_not_exists"] != Value::Bool(false) {
                    let errors = json!({"message_reference": {"_errors": [
                        {"code": "REPLIES_UNKNOWN_MESSAGE", "message": "Unknown message"}]}});
                    return Reply::json(400, json!({"message": "Invalid Form Body", "code": 50035, "errors": errors}));
                }
                // Discord sends it as a plain message.
                if let Some(object) = body.as_object_mut() {
                    object.remove("message_reference");
                }
            }
        }
        let nonce = body.get("nonce").filter(|_| body["enforce_nonce"] == Value::Bool(true));
        let earlier = nonce.and_then(|nonce| {
            let remembered = &state.messages[state.nonces_forgotten..];
            // Discord remembers a nonce per author (the bot), in whatever channel it posted it.
            remembered.iter().find(|m| m.body.get("nonce") == Some(nonce))
        });
        if let Some(earlier) = earlier {
            let message = state.message(options, earlier.channel_id, earlier.id).unwrap_or(Value::Null);
            return Reply::json(200, message);
        }
        let id = payloads::snowflake();
        state.messages.push(crate::ChannelMessage { id, channel_id, body: body.clone(), edits: 0, files: Vec::new() });
        let message = state.message(options, channel_id, id).unwrap_or(Value::Null);
        let intent = if state.is_dm(channel_id) {
            Some(gateway::DIRECT_MESSAGES)
        } else {
            state.is_thread(channel_id).then_some(gateway::GUILD_MESSAGES)
        };
        drop(state);
        if let Some(intent) = intent {
            // Discord sends the bot its own messages too (with the nonce it posted them with): a bot must ignore
            // messages whose author is itself. One in a server carries the server's id.
            let mut created = message.clone();
            if intent == gateway::GUILD_MESSAGES {
                created["guild_id"] = shared.options.guild_id.to_string().into();
            }
            if let Some(nonce) = body.get("nonce") {
                created["nonce"] = nonce.clone();
            }
            gateway::dispatch_for(shared, Some(intent), "MESSAGE_CREATE", created);
        }
        return Reply::json(200, message);
    }
    let message_id = number(1);
    if method == Method::DELETE {
        // A bot deletes its own messages without any permission: 204, and the message is gone.
        let Some(at) = state.messages.iter().position(|m| m.id == message_id && m.channel_id == channel_id) else {
            return Reply::error(404, 10008, "Unknown Message");
        };
        state.messages.remove(at);
        if at < state.nonces_forgotten {
            state.nonces_forgotten -= 1;
        }
        return Reply { status: 204, body: None, headers: Vec::new() };
    }
    let Some(message) = state.messages.iter_mut().find(|m| m.id == message_id && m.channel_id == channel_id) else {
        return Reply::error(404, 10008, "Unknown Message");
    };
    if let (Some(current), Some(changes)) = (message.body.as_object_mut(), body.as_object()) {
        for (key, value) in changes {
            current.insert(key.clone(), value.clone());
        }
    }
    message.edits += 1;
    Reply::json(200, state.message(options, channel_id, message_id).unwrap_or(Value::Null))
}

/// Any message the fake knows, the bot's or a user's, as it reads now; 404 (10008) for another.
/// `GET /channels/{id}/messages?limit=&before=&after=`: the channel's messages (the bot's and its users'), newest
/// first as Discord returns them, at most `limit` (1 to 100, default 50), only those before or after a message id
/// when asked.
fn history(shared: &Shared, ids: &[String], query: &str, authorization: Option<&str>) -> Reply {
    if authorization != Some(format!("Bot {}", shared.options.token).as_str()) {
        return Reply::error(401, 0, "401: Unauthorized");
    }
    let channel = ids.first().and_then(|id| id.parse::<u64>().ok()).unwrap_or(0);
    let param =
        |name: &str| query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')?.parse::<u64>().ok());
    let limit = param("limit").unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Reply::error(400, 50035, "Invalid Form Body");
    }
    let state = shared.state();
    let posted = state.messages.iter().filter(|m| m.channel_id == channel).map(|m| m.id);
    let written = state.user_messages.iter().filter(|m| m.channel_id == channel).map(|m| m.id);
    let mut found: Vec<u64> = posted.chain(written).collect();
    found.sort_unstable_by(|a, b| b.cmp(a));
    found.dedup();
    let found = found
        .into_iter()
        .filter(|id| {
            param("after").is_none_or(|after| *id > after) && param("before").is_none_or(|before| *id < before)
        })
        .take(limit as usize)
        .filter_map(|id| state.message(&shared.options, channel, id));
    Reply::json(200, Value::Array(found.collect()))
}

fn fetch_message(shared: &Shared, ids: &[String]) -> Reply {
    let number = |i: usize| ids.get(i).and_then(|id| id.parse::<u64>().ok()).unwrap_or(0);
    match shared.state().message(&shared.options, number(0), number(1)) {
        Some(message) => Reply::json(200, message),
        None => Reply::error(404, 10008, "Unknown Message"),
    }
}

/// The bot reacts to a message the fake knows with an emoji (its URL-encoded path segment): 204, and remembered
/// once however often it is repeated; 404 (10008) for an unknown message, 400 (10014) for an emoji that cannot be
/// one. A new reaction in a direct-message channel is dispatched as MESSAGE_REACTION_ADD.
fn reaction(shared: &Shared, ids: &[String]) -> Reply {
    let number = |i: usize| ids.get(i).and_then(|id| id.parse::<u64>().ok()).unwrap_or(0);
    let (channel_id, message_id) = (number(0), number(1));
    let mut state = shared.state();
    let Some(author) = state.author_of(&shared.options, channel_id, message_id) else {
        return Reply::error(404, 10008, "Unknown Message");
    };
    let emoji = ids.get(2).and_then(|segment| percent_decoded(segment));
    let Some(emoji) = emoji.filter(|emoji| !emoji.is_empty() && !emoji.chars().any(char::is_whitespace)) else {
        return Reply::error(400, 10014, "Unknown Emoji");
    };
    let emojis = state.reactions.entry((channel_id, message_id)).or_default();
    let new = !emojis.contains(&emoji);
    if new {
        emojis.push(emoji.clone());
    }
    let dm = state.is_dm(channel_id);
    drop(state);
    if new && dm {
        let added = payloads::reaction_add(&shared.options, channel_id, message_id, author, &emoji);
        gateway::dispatch_for(shared, Some(gateway::DIRECT_MESSAGE_REACTIONS), "MESSAGE_REACTION_ADD", added);
    }
    Reply { status: 204, body: None, headers: Vec::new() }
}

/// A path segment with its `%XX` escapes decoded, if they are well formed and make UTF-8.
fn percent_decoded(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))?;
            decoded.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// The direct-message channel with `recipient_id`: the same channel every time for the same user, as Discord does.
fn dm_channel(shared: &Shared, body: &Value) -> Reply {
    let recipient =
        body["recipient_id"].as_str().and_then(|id| id.parse::<u64>().ok()).or(body["recipient_id"].as_u64());
    let Some(recipient) = recipient else {
        return Reply::error(400, 50035, "Invalid Form Body");
    };
    let channel = *shared.state().dm_channels.entry(recipient).or_insert_with(payloads::snowflake);
    Reply::json(200, payloads::dm_channel(channel, recipient))
}

/// A post to a plain webhook: accepted, or 429 when the configured rate limit is used up.
fn webhook(shared: &Shared, body: &Value) -> Reply {
    let mut state = shared.state();
    let now = Instant::now();
    let Some((per_window, length)) = state.limit else {
        return Reply::json(200, payloads::message(&shared.options, body));
    };
    let (start, used) = match state.window {
        Some((start, used)) if now.duration_since(start) < length => (start, used),
        _ => (now, 0),
    };
    let reset_after = length.saturating_sub(now.duration_since(start)).as_secs_f64();
    if used >= per_window {
        state.window = Some((start, used));
        return Reply::rate_limited(reset_after);
    }
    state.window = Some((start, used + 1));
    let mut reply = Reply::json(200, payloads::message(&shared.options, body));
    reply.headers.push(("x-ratelimit-remaining", (per_window - used - 1).to_string()));
    reply.headers.push(("x-ratelimit-reset-after", format!("{reset_after:.3}")));
    reply
}

/// `POST /channels/{id}/threads`: a thread without a message, private (type 12) unless the body asks for a public
/// one (11), as Discord defaults since API v9. Its `name` has 1 to 100 characters; a direct message or a thread
/// cannot hold one (400, 50024). The bot is its owner and only member.
fn start_thread(shared: &Shared, ids: &[String], body: &Value) -> Reply {
    let parent = ids.first().and_then(|id| id.parse::<u64>().ok()).unwrap_or(0);
    let name = body["name"].as_str().unwrap_or_default();
    let kind = body.get("type").and_then(Value::as_u64).unwrap_or(12);
    if name.trim().is_empty() || name.chars().count() > 100 || !matches!(kind, 11 | 12) {
        let errors = json!({"name": {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH", "message": "Must be between 1 and 100 in length."}]}});
        return Reply::json(400, json!({"message": "Invalid Form Body", "code": 50035, "errors": errors}));
    }
    let mut state = shared.state();
    if state.is_dm(parent) || state.is_thread(parent) {
        return Reply::error(400, 50024, "Cannot execute action on this channel type");
    }
    let id = payloads::snowflake();
    let invitable = body.get("invitable").and_then(Value::as_bool).unwrap_or(true);
    let thread = crate::Thread { id, parent_id: parent, name: name.to_owned(), kind, invitable, members: Vec::new() };
    state.threads.insert(id, thread);
    Reply::json(200, payloads::thread_channel(&shared.options, id, parent, name, kind, invitable))
}

/// `PUT /channels/{thread}/thread-members/{user}`: 204, the user a member once however often; 404 (10003) for a
/// channel that is no thread of the fake's.
fn add_thread_member(shared: &Shared, ids: &[String]) -> Reply {
    let number = |i: usize| ids.get(i).and_then(|id| id.parse::<u64>().ok()).unwrap_or(0);
    let mut state = shared.state();
    let Some(thread) = state.threads.get_mut(&number(0)) else {
        return Reply::error(404, 10003, "Unknown Channel");
    };
    if !thread.members.contains(&number(1)) {
        thread.members.push(number(1));
    }
    Reply { status: 204, body: None, headers: Vec::new() }
}

/// `DELETE /channels/{thread}/thread-members/{user}`: 204, the user no member any more (the bot made the thread, so
/// it may, as Discord lets a private thread's creator); 404 (10003) for a channel that is no thread of the fake's.
fn remove_thread_member(shared: &Shared, ids: &[String]) -> Reply {
    let number = |i: usize| ids.get(i).and_then(|id| id.parse::<u64>().ok()).unwrap_or(0);
    let mut state = shared.state();
    let Some(thread) = state.threads.get_mut(&number(0)) else {
        return Reply::error(404, 10003, "Unknown Channel");
    };
    thread.members.retain(|member| *member != number(1));
    Reply { status: 204, body: None, headers: Vec::new() }
}
