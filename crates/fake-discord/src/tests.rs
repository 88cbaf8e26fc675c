//! The fake as a bot sees it: REST calls over plain HTTP/1.1 and a gateway session, for direct messages from users,
//! the bot's own messages, fetching messages, reactions, select menus and private threads.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{Answer, Attachment, DirectMessage, Endpoint, FakeDiscord, Options, Origin, User, gateway, payloads};

fn ponta() -> User {
    User { global_name: Some("Ponta".into()), ..User::new(80351110224678912, "pontatot") }
}

/// A REST call with the bot's token; the status and the JSON body (`Null` when there is none).
async fn call(discord: &FakeDiscord, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let address = discord.api_base().trim_start_matches("http://").to_owned();
    let request = {
        let body = body.map(|body| body.to_string()).unwrap_or_default();
        format!(
            "{method} /api/v10{path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bot {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{body}",
            token = discord.token(),
            length = body.len(),
        )
    };
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&address).expect("the fake listens");
        stream.write_all(request.as_bytes()).expect("the request is sent");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("the fake answers");
        let status = response.get(9..12).and_then(|status| status.parse().ok()).expect("a status line");
        let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    })
    .await
    .expect("the request thread ends")
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A bot's gateway session, identified with `intents`.
struct Session {
    socket: Socket,
}

impl Session {
    async fn start(discord: &FakeDiscord, intents: u64) -> Session {
        let (socket, _) = tokio_tungstenite::connect_async(discord.gateway_url()).await.expect("the gateway accepts");
        let mut session = Session { socket };
        assert_eq!(session.frame().await["op"], 10, "HELLO first");
        let identify = json!({"op": 2, "d": {"token": discord.token(), "intents": intents,
                              "properties": {"os": "linux", "browser": "test", "device": "test"}}});
        session.socket.send(Message::Text(identify.to_string())).await.expect("IDENTIFY is sent");
        assert_eq!(session.dispatch().await.0, "READY");
        session
    }

    async fn frame(&mut self) -> Value {
        let next = tokio::time::timeout(Duration::from_secs(5), self.socket.next()).await;
        match next {
            Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str(&text).expect("the gateway sends JSON"),
            other => panic!("no frame from the gateway: {other:?}"),
        }
    }

    /// The next dispatch's event name and data.
    async fn dispatch(&mut self) -> (String, Value) {
        loop {
            let frame = self.frame().await;
            if frame["op"] == 0 {
                return (frame["t"].as_str().unwrap_or_default().to_owned(), frame["d"].clone());
            }
        }
    }
}

/// What serenity 0.12.5 needs to read a message (`serenity::model::channel::Message`): the fields without a default.
fn assert_deserializable_message(message: &Value) {
    for field in [
        "id",
        "channel_id",
        "author",
        "content",
        "timestamp",
        "edited_timestamp",
        "tts",
        "mention_everyone",
        "mentions",
        "mention_roles",
        "attachments",
        "embeds",
        "pinned",
        "type",
    ] {
        assert!(message.get(field).is_some(), "{field} missing from {message}");
    }
    assert!(message["id"].as_str().is_some_and(|id| id.parse::<u64>().is_ok()), "{message}");
    assert!(message["author"]["id"].is_string() && message["author"]["username"].is_string(), "{message}");
    assert!(message["timestamp"].is_string(), "{message}");
    for attachment in message["attachments"].as_array().expect("attachments are a list") {
        for field in ["id", "filename", "size", "url", "proxy_url"] {
            assert!(attachment.get(field).is_some(), "{field} missing from {attachment}");
        }
    }
    if let Some(reference) = message.get("message_reference") {
        assert!(reference["channel_id"].is_string(), "{reference}");
    }
    if let Some(referenced) = message.get("referenced_message").filter(|m| !m.is_null()) {
        assert_deserializable_message(referenced);
    }
}

#[test]
fn a_users_direct_message_has_every_field_serenity_needs_and_none_of_a_guild() {
    let message = payloads::user_message(7, payloads::snowflake(), &ponta(), "hi", None, &[]);
    assert_deserializable_message(&message);
    assert_eq!(
        (message["type"].clone(), message["tts"].clone(), message["pinned"].clone()),
        (json!(0), json!(false), json!(false))
    );
    assert_eq!((message["mentions"].clone(), message["mention_roles"].clone()), (json!([]), json!([])));
    assert_eq!(message["author"]["id"], "80351110224678912");
    assert_eq!(message["author"]["global_name"], "Ponta");
    assert!(message["author"].get("bot").is_none(), "a user is no bot: {message}");
    for absent in ["guild_id", "member", "webhook_id", "interaction_metadata", "message_reference"] {
        assert!(message.get(absent).is_none(), "{absent} in {message}");
    }
    let file = Attachment {
        filename: "log.txt".into(),
        size: 12,
        content_type: Some("text/plain; charset=utf-8".into()),
        url: "https://cdn.discordapp.com/attachments/7/9/log.txt".into(),
    };
    let reply =
        payloads::user_message(7, payloads::snowflake(), &ponta(), "", Some(5), &[payloads::attachment(9, &file)]);
    assert_deserializable_message(&reply);
    assert_eq!(reply["type"], 19);
    assert_eq!(reply["message_reference"], json!({"type": 0, "message_id": "5", "channel_id": "7"}));
    assert_eq!(reply["attachments"][0]["proxy_url"], "https://media.discordapp.net/attachments/7/9/log.txt");
}

#[test]
fn a_snowflakes_timestamp_is_the_time_in_it() {
    // Discord's documentation takes this snowflake apart: 2016-04-30 11:18:25.796 UTC.
    assert_eq!(payloads::timestamp(175928847299117063), "2016-04-30T11:18:25.796000+00:00");
    assert_eq!(payloads::timestamp(0), "2015-01-01T00:00:00.000000+00:00");
}

#[tokio::test]
async fn a_users_direct_message_is_dispatched_kept_and_fetched() {
    let discord = FakeDiscord::start().await;
    let mut bot = Session::start(&discord, gateway::DIRECT_MESSAGES).await;
    assert_eq!(discord.dm_channel_of(&ponta()), None, "no channel before either side opens one");

    let first = discord.direct_message(&ponta(), "my printer is on fire");
    let channel = discord.dm_channel_of(&ponta()).expect("writing opens the channel");
    let (event, message) = bot.dispatch().await;
    assert_eq!(event, "MESSAGE_CREATE");
    assert_deserializable_message(&message);
    assert_eq!(message["id"], first.to_string());
    assert_eq!(message["channel_id"], channel.to_string());
    assert_eq!((message["content"].as_str(), message["type"].as_u64()), (Some("my printer is on fire"), Some(0)));
    assert_eq!(message["author"]["id"], ponta().id.to_string());
    assert!(message.get("guild_id").is_none() && message.get("member").is_none(), "{message}");

    let (status, fetched) = call(&discord, "GET", &format!("/channels/{channel}/messages/{first}"), None).await;
    assert_eq!((status, &fetched), (200, &message), "GET returns the message as dispatched");

    // The bot's channel with the user is the same one.
    let (status, opened) =
        call(&discord, "POST", "/users/@me/channels", Some(json!({"recipient_id": "80351110224678912"}))).await;
    assert_eq!((status, opened["id"].as_str()), (200, Some(channel.to_string().as_str())));

    let file = Attachment {
        filename: "fire.png".into(),
        size: 2048,
        content_type: Some("image/png".into()),
        url: "https://cdn.discordapp.com/attachments/1/2/fire.png".into(),
    };
    let reply = DirectMessage { content: "see".into(), reply_to: Some(first), attachments: vec![file] };
    let second = discord.direct_message_with(&ponta(), reply);
    let (_, message) = bot.dispatch().await;
    assert_deserializable_message(&message);
    assert_eq!(message["id"], second.to_string());
    assert_eq!(message["type"], 19);
    assert_eq!(
        message["message_reference"],
        json!({"type": 0, "message_id": first.to_string(), "channel_id": channel.to_string()})
    );
    assert_eq!(message["referenced_message"]["content"], "my printer is on fire");
    assert!(message["referenced_message"].get("referenced_message").is_none(), "not nested: {message}");
    assert_eq!(message["attachments"][0]["filename"], "fire.png");
    assert_eq!(message["attachments"][0]["size"], 2048);
    assert!(message["attachments"][0]["id"].is_string());

    let unknown = DirectMessage { reply_to: Some(42), ..DirectMessage::new("to a deleted message") };
    discord.direct_message_with(&ponta(), unknown);
    let (_, message) = bot.dispatch().await;
    assert_eq!((message["type"].as_u64(), message["referenced_message"].is_null()), (Some(19), true), "{message}");
    assert!(message.get("referenced_message").is_some(), "null, not absent, as for a deleted message");
}

#[tokio::test]
async fn fetching_an_unknown_message_is_unknown_message() {
    let discord = FakeDiscord::start().await;
    let (status, body) = call(&discord, "GET", "/channels/1/messages/2", None).await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(10008)));
    assert_eq!(body["message"], "Unknown Message");
    let (status, posted) = call(
        &discord,
        "POST",
        &format!("/channels/{}/messages", discord.options().channel_id),
        Some(json!({"content": "card"})),
    )
    .await;
    assert_eq!(status, 200);
    let id = posted["id"].as_str().unwrap().to_owned();
    let (status, fetched) =
        call(&discord, "GET", &format!("/channels/{}/messages/{id}", discord.options().channel_id), None).await;
    assert_eq!((status, fetched["content"].as_str()), (200, Some("card")));
    assert_eq!(fetched["author"]["bot"], true);
    let (status, _) = call(&discord, "GET", &format!("/channels/1/messages/{id}"), None).await;
    assert_eq!(status, 404, "a message is known in its own channel only");
    let fetches = discord.received_at(Endpoint::FetchMessage);
    assert_eq!(fetches.iter().map(|r| r.status).collect::<Vec<_>>(), [404, 200, 404]);
    assert!(discord.received_at(Endpoint::ChannelMessage).is_empty(), "a fetch is no edit");
}

#[tokio::test]
async fn the_bot_receives_its_own_direct_messages_but_not_its_guild_posts() {
    let discord = FakeDiscord::start().await;
    let mut bot = Session::start(&discord, gateway::DIRECT_MESSAGES).await;
    let (_, channel) =
        call(&discord, "POST", "/users/@me/channels", Some(json!({"recipient_id": "80351110224678912"}))).await;
    let channel = channel["id"].as_str().unwrap().to_owned();
    let (status, posted) = call(
        &discord,
        "POST",
        &format!("/channels/{channel}/messages"),
        Some(json!({"content": "ticket received", "nonce": "n-1", "enforce_nonce": true})),
    )
    .await;
    assert_eq!(status, 200);
    let (event, message) = bot.dispatch().await;
    assert_eq!(event, "MESSAGE_CREATE");
    assert_deserializable_message(&message);
    assert_eq!(message["id"], posted["id"]);
    assert_eq!(message["author"]["id"], discord.options().application_id.to_string());
    assert_eq!(message["author"]["bot"], true, "the bot must ignore its own messages");
    assert_eq!(message["nonce"], "n-1");

    // The same nonce again is the same message: nothing new is dispatched. Nor is a post in a guild channel.
    let again = json!({"content": "ticket received", "nonce": "n-1", "enforce_nonce": true});
    call(&discord, "POST", &format!("/channels/{channel}/messages"), Some(again)).await;
    call(
        &discord,
        "POST",
        &format!("/channels/{}/messages", discord.options().channel_id),
        Some(json!({"content": "card"})),
    )
    .await;
    let marker = discord.command(&ponta(), "ticket", &[]);
    let (event, data) = bot.dispatch().await;
    assert_eq!((event.as_str(), data["id"].as_str()), ("INTERACTION_CREATE", Some(marker.id.to_string().as_str())));
}

#[tokio::test]
async fn without_the_direct_messages_intent_no_direct_message_arrives() {
    let discord = FakeDiscord::start().await;
    // GUILDS | GUILD_MESSAGES, but not DIRECT_MESSAGES nor DIRECT_MESSAGE_REACTIONS.
    let mut bot = Session::start(&discord, 1 | 1 << 9).await;
    let id = discord.direct_message(&ponta(), "hello?");
    let channel = discord.dm_channel_of(&ponta()).unwrap();
    let (status, _) =
        call(&discord, "PUT", &format!("/channels/{channel}/messages/{id}/reactions/%F0%9F%91%8B/@me"), None).await;
    assert_eq!(status, 204);
    let marker = discord.command(&ponta(), "ticket", &[]);
    let (event, data) = bot.dispatch().await;
    assert_eq!((event.as_str(), data["id"].as_str()), ("INTERACTION_CREATE", Some(marker.id.to_string().as_str())));
    // The message is there all the same.
    let (status, _) = call(&discord, "GET", &format!("/channels/{channel}/messages/{id}"), None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_bot_replies_to_a_users_direct_message() {
    let discord = FakeDiscord::start().await;
    let question = discord.direct_message(&ponta(), "is anyone there?");
    let channel = discord.dm_channel_of(&ponta()).unwrap();
    let path = format!("/channels/{channel}/messages");
    let reply = json!({"content": "yes", "message_reference": {"message_id": question.to_string(), "channel_id": channel.to_string()}});
    let (status, message) = call(&discord, "POST", &path, Some(reply)).await;
    assert_eq!(status, 200, "{message}");
    assert_deserializable_message(&message);
    assert_eq!(message["type"], 19);
    assert_eq!(message["message_reference"]["message_id"], question.to_string());
    assert!(message["message_reference"].get("guild_id").is_none(), "a direct message has no guild: {message}");
    assert_eq!(message["referenced_message"]["author"]["id"], ponta().id.to_string());

    let unknown = json!({"content": "yes", "message_reference": {"message_id": "42"}});
    let (status, refusal) = call(&discord, "POST", &path, Some(unknown)).await;
    assert_eq!((status, refusal["code"].as_u64()), (400, Some(50035)));
    assert_eq!(refusal["errors"]["message_reference"]["_errors"][0]["code"], "REPLIES_UNKNOWN_MESSAGE");
    let lenient = json!({"content": "yes", "message_reference": {"message_id": "42", "fail_if_not_exists": false}});
    let (status, plain) = call(&discord, "POST", &path, Some(lenient)).await;
    assert_eq!((status, plain["type"].as_u64()), (200, Some(0)));
    assert!(plain.get("message_reference").is_none(), "{plain}");
    assert_eq!(discord.direct_messages(&ponta()).len(), 2, "the refused reply is not kept");
}

#[tokio::test]
async fn the_bots_reactions_are_kept_once_and_shown_on_the_message() {
    let discord = FakeDiscord::start().await;
    let mut bot = Session::start(&discord, gateway::DIRECT_MESSAGES | gateway::DIRECT_MESSAGE_REACTIONS).await;
    let id = discord.direct_message(&ponta(), "thanks!");
    bot.dispatch().await;
    let channel = discord.dm_channel_of(&ponta()).unwrap();
    let react = |emoji: &str| format!("/channels/{channel}/messages/{id}/reactions/{emoji}/@me");
    assert_eq!(call(&discord, "PUT", &react("%F0%9F%91%8D"), None).await, (204, Value::Null));
    let (event, added) = bot.dispatch().await;
    assert_eq!(event, "MESSAGE_REACTION_ADD");
    assert_eq!(added["user_id"], discord.options().application_id.to_string(), "the bot sees its own reaction");
    assert_eq!(added["message_author_id"], ponta().id.to_string());
    assert_eq!(added["emoji"], json!({"id": null, "name": "👍"}));
    assert_eq!(call(&discord, "PUT", &react("%F0%9F%91%8D"), None).await.0, 204, "again: no change");
    assert_eq!(call(&discord, "PUT", &react("franz:1177000000000000099"), None).await.0, 204);
    assert_eq!(discord.reactions(channel, id), ["👍", "franz:1177000000000000099"]);
    let (_, added) = bot.dispatch().await;
    assert_eq!(added["emoji"], json!({"id": "1177000000000000099", "name": "franz"}), "one event per new reaction");

    let (_, message) = call(&discord, "GET", &format!("/channels/{channel}/messages/{id}"), None).await;
    let reactions = message["reactions"].as_array().expect("the message shows its reactions");
    assert_eq!(reactions.len(), 2);
    assert_eq!((reactions[0]["count"].as_u64(), reactions[0]["me"].as_bool()), (Some(1), Some(true)));
    assert_eq!(reactions[0]["emoji"]["name"], "👍");

    let (status, body) =
        call(&discord, "PUT", &format!("/channels/{channel}/messages/42/reactions/%F0%9F%91%8D/@me"), None).await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(10008)));
    assert!(discord.reactions(channel, 42).is_empty());
    discord.script(Endpoint::Reaction, &[Answer::Status(503)]);
    assert_eq!(call(&discord, "PUT", &react("%E2%9C%85"), None).await.0, 503);
    assert_eq!(call(&discord, "PUT", &react("%E2%9C%85"), None).await.0, 204);
    let statuses: Vec<u16> = discord.received_at(Endpoint::Reaction).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [204, 204, 204, 404, 503, 204]);
    assert_eq!(discord.reactions(channel, id).len(), 3);
}

#[tokio::test]
async fn a_select_menu_pick_comes_from_where_its_message_is() {
    let discord = FakeDiscord::start().await;
    let mut bot = Session::start(&discord, 0).await;
    let staff = discord.options().channel_id;
    let (_, card) =
        call(&discord, "POST", &format!("/channels/{staff}/messages"), Some(json!({"content": "card"}))).await;
    let card = discord
        .channel_messages(staff)
        .pop()
        .filter(|m| card["id"].as_str().and_then(|id| id.parse().ok()) == Some(m.id))
        .expect("the card is kept");

    let pick = discord.select(&ponta(), &card, "franz:priority", &["urgent"]);
    let (event, data) = bot.dispatch().await;
    assert_eq!(event, "INTERACTION_CREATE");
    assert_eq!((data["id"].as_str(), data["type"].as_u64()), (Some(pick.id.to_string().as_str()), Some(3)));
    assert_eq!(data["data"], json!({"custom_id": "franz:priority", "component_type": 3, "values": ["urgent"]}));
    assert_eq!(data["guild_id"], discord.options().guild_id.to_string());
    assert_eq!(data["member"]["user"]["id"], ponta().id.to_string());
    assert_eq!(data["message"]["id"], card.id.to_string());

    let (_, opened) =
        call(&discord, "POST", "/users/@me/channels", Some(json!({"recipient_id": ponta().id.to_string()}))).await;
    let dm = opened["id"].as_str().unwrap().parse::<u64>().unwrap();
    call(&discord, "POST", &format!("/channels/{dm}/messages"), Some(json!({"content": "how urgent?"}))).await;
    let question = discord.direct_messages(&ponta()).pop().expect("the question is kept");
    discord.select(&ponta(), &question, "franz:urgency", &["low", "medium"]);
    let (_, data) = bot.dispatch().await;
    assert_eq!(data["data"]["values"], json!(["low", "medium"]));
    assert_eq!(data["channel_id"], dm.to_string());
    assert_eq!(data["message"]["channel_id"], dm.to_string());
    assert_eq!(data["user"]["id"], ponta().id.to_string(), "in a direct message, `user` instead of `member`");
    for absent in ["guild_id", "member", "guild"] {
        assert!(data.get(absent).is_none(), "{absent} in {data}");
    }
    discord.press(&ponta(), &question, "franz:cancel");
    let (_, data) = bot.dispatch().await;
    assert_eq!((data["data"]["component_type"].as_u64(), data.get("guild_id")), (Some(2), None), "a press too");

    // An explicit origin still wins.
    discord.select_from(Origin::Home, &ponta(), &question, "franz:urgency", &["low"]);
    let (_, data) = bot.dispatch().await;
    assert_eq!(data["guild_id"], discord.options().guild_id.to_string());
}

#[tokio::test]
async fn a_private_thread_takes_its_members_and_moderators_and_hides_content_from_a_bot_without_the_intent() {
    let discord = FakeDiscord::start().await;
    let parent = discord.options().channel_id;
    let long = "x".repeat(101);
    let (status, _) = call(&discord, "POST", &format!("/channels/{parent}/threads"), Some(json!({"name": long}))).await;
    assert_eq!(status, 400, "a name over 100 characters");
    let body = json!({"name": "ticket 1", "type": 12, "invitable": false, "auto_archive_duration": 10080});
    let (status, thread) = call(&discord, "POST", &format!("/channels/{parent}/threads"), Some(body.clone())).await;
    assert_eq!((status, &thread["type"], &thread["thread_metadata"]["invitable"]), (200, &json!(12), &json!(false)));
    let thread_id: u64 = thread["id"].as_str().unwrap().parse().unwrap();
    let (status, _) = call(&discord, "POST", &format!("/channels/{thread_id}/threads"), Some(body)).await;
    assert_eq!(status, 400, "no thread in a thread");
    let (status, _) =
        call(&discord, "PUT", &format!("/channels/{thread_id}/thread-members/80351110224678912"), None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&discord, "PUT", "/channels/1/thread-members/80351110224678912", None).await;
    assert_eq!(status, 404, "no such thread");
    assert_eq!(discord.threads_in(parent)[0].members, vec![80351110224678912]);

    // GUILDS | GUILD_MESSAGES without MESSAGE_CONTENT: the member's message arrives without its text.
    let mut bot = Session::start(&discord, 1 | 1 << 9).await;
    let bob = User::new(7, "bob");
    assert_eq!(discord.thread_message(&bob, thread_id, DirectMessage::new("hi")), None, "not a member");
    discord.grant_role(&bob, 5);
    discord.moderate_threads(5);
    let id = discord.thread_message(&bob, thread_id, DirectMessage::new("secret")).expect("a moderator writes");
    let (event, message) = bot.dispatch().await;
    assert_eq!((event.as_str(), message["id"].as_str()), ("MESSAGE_CREATE", Some(id.to_string().as_str())));
    assert_deserializable_message(&message);
    assert_eq!(
        (&message["content"], &message["guild_id"]),
        (&json!(""), &json!(discord.options().guild_id.to_string()))
    );
    assert_eq!(message["member"]["roles"], json!(["5"]));
    // `GET` has the text (no intent governs REST), but no guild id or member.
    let (_, fetched) = call(&discord, "GET", &format!("/channels/{thread_id}/messages/{id}"), None).await;
    assert_eq!((&fetched["content"], fetched.get("member")), (&json!("secret"), None));
}

#[tokio::test]
async fn asking_for_the_message_content_intent_without_it_granted_is_closed_with_4014() {
    let discord = FakeDiscord::start_with(Options { message_content: false, ..Options::default() }).await.unwrap();
    let (_, application) = call(&discord, "GET", "/oauth2/applications/@me", None).await;
    assert_eq!(application["flags"].as_u64().unwrap() & payloads::MESSAGE_CONTENT_FLAGS, 0);
    let (socket, _) = tokio_tungstenite::connect_async(discord.gateway_url()).await.unwrap();
    let mut session = Session { socket };
    assert_eq!(session.frame().await["op"], 10);
    let identify = json!({"op": 2, "d": {"token": discord.token(), "intents": 1 << 15,
                          "properties": {"os": "linux", "browser": "test", "device": "test"}}});
    session.socket.send(Message::Text(identify.to_string())).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), session.socket.next()).await.expect("an answer");
    match closed {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4014),
        other => panic!("not closed with 4014: {other:?}"),
    }
}

#[tokio::test]
async fn a_nonce_is_remembered_per_author_in_any_channel_and_a_deleted_message_is_gone() {
    let discord = FakeDiscord::start().await;
    let post = |channel: u64| {
        let discord = &discord;
        async move {
            let body = json!({"content": "card", "nonce": "n-7", "enforce_nonce": true});
            call(discord, "POST", &format!("/channels/{channel}/messages"), Some(body)).await
        }
    };
    let (_, first) = post(11).await;
    let (status, again) = post(12).await;
    assert_eq!(status, 200);
    assert_eq!((again["id"].clone(), again["channel_id"].clone()), (first["id"].clone(), first["channel_id"].clone()));
    assert!(discord.channel_messages(12).is_empty(), "the same author's nonce in another channel posts nothing");

    let id = first["id"].as_str().unwrap();
    let (status, _) = call(&discord, "DELETE", &format!("/channels/12/messages/{id}"), None).await;
    assert_eq!(status, 404, "a message is deleted in its own channel only");
    let (status, _) = call(&discord, "DELETE", &format!("/channels/11/messages/{id}"), None).await;
    assert_eq!(status, 204);
    assert!(discord.channel_messages(11).is_empty());
    let (status, _) = call(&discord, "DELETE", &format!("/channels/11/messages/{id}"), None).await;
    assert_eq!(status, 404, "deleted already");
    let (status, _) =
        call(&discord, "PATCH", &format!("/channels/11/messages/{id}"), Some(json!({"content": "x"}))).await;
    assert_eq!(status, 404, "a deleted message cannot be edited");
}
