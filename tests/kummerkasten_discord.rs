//! The Discord bot end to end through the fake Discord (`crates/fake-discord`): the gateway session, `/ticket` with
//! text and with the form, the cooldown, publishing failures, the registration, gateway faults, rate limits,
//! shutdown with work in flight, hostile interaction payloads, and interactions from outside the bot's server. REST goes through the bot's `api_proxy` setting,
//! the gateway URL comes from the fake's `GET /gateway`, exactly as with a real deployment behind a proxy.

use std::time::{Duration, Instant};

use fake_discord::{Answer, Endpoint, FakeDiscord, Fault, Interaction, Origin, Received, User};
use franz::schema::{IntakeRecord, ticket_id_for_interaction};
use franz::services::{aufbereitung, kummerkasten};
use franz::troubles::Troubles;
use poise::serenity_prelude as serenity;
use rdkafka::message::Message as _;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::util::{Harness, TOPIC_AUTHORIZATION_FAILED, franz, scratch, wait_until};

/// How long the bot may take to stop once asked; far below its 40-second drain limit, so a command task that holds
/// up shutdown fails the test.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// The bot running against a fake Discord and the harness's broker.
struct Bot {
    discord: FakeDiscord,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    /// What the bot reported as its last problem, as `/readyz` shows it.
    troubles: Troubles,
}

impl Bot {
    /// Starts the bot and waits until its gateway session is live.
    async fn start(harness: &Harness, cooldown: Duration) -> Bot {
        let bot = Bot::launch(harness, FakeDiscord::start().await, cooldown);
        wait_until("the bot's gateway session", || async { bot.discord.gateway().live }).await;
        bot
    }

    /// Starts the bot without waiting for anything.
    fn launch(harness: &Harness, discord: FakeDiscord, cooldown: Duration) -> Bot {
        let settings = kummerkasten::Settings {
            bootstrap: harness.bootstrap.clone(),
            topics: harness.topics.clone(),
            token: discord.token().to_owned().into(),
            guild_id: Some(discord.options().guild_id),
            cooldown,
            api_proxy: Some(discord.api_base()),
            staff: None,
            store: None,
            troubles: Troubles::default(),
            partitions: 1,
            reopen_within: Duration::from_secs(7 * 86_400),
            threads: None,
            // No staff list there: `/ticket` offers no categories.
            staff_dir: std::path::PathBuf::from("/nonexistent/franz-desk"),
            open_tickets_max: 3,
            rate_within: Duration::from_secs(7 * 86_400),
            clock: franz::clock::Clock::system(),
        };
        let troubles = settings.troubles.clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(kummerkasten::run(settings, shutdown.clone()));
        Bot { discord, shutdown, task, troubles }
    }

    /// Asks the bot to stop and returns how it ended; fails the test if that takes longer than [`STOP_WITHIN`].
    async fn stop(self) -> (FakeDiscord, anyhow::Result<()>) {
        self.shutdown.cancel();
        let ended = tokio::time::timeout(STOP_WITHIN, self.task).await.expect("the bot stops in time");
        (self.discord, ended.expect("the bot's task does not panic"))
    }

    /// Waits for the bot to end by itself (a start-up failure); fails the test after `within`.
    async fn ended(self, within: Duration) -> anyhow::Result<()> {
        tokio::time::timeout(within, self.task).await.expect("the bot ends by itself").expect("no panic")
    }

    /// `/ticket`, with `message:<text>` when given.
    fn ticket(&self, user: &User, text: Option<&str>) -> Interaction {
        let options: Vec<(&str, &str)> = text.map(|t| ("message", t)).into_iter().collect();
        self.discord.command(user, "ticket", &options)
    }

    /// Waits for the bot's accepted follow-up to `interaction`.
    async fn follow_up(&self, interaction: &Interaction) -> Received {
        self.answer(interaction, Endpoint::FollowUp).await
    }

    /// Waits for the bot's accepted answer of this kind (callback or follow-up) to `interaction`.
    async fn answer(&self, interaction: &Interaction, endpoint: Endpoint) -> Received {
        let accepted = || {
            let answers = self.discord.answers_to(interaction);
            answers.into_iter().find(|r| r.endpoint == endpoint && r.status < 300)
        };
        wait_until(&format!("the bot's {endpoint:?} to interaction {}", interaction.id), || async {
            accepted().is_some()
        })
        .await;
        accepted().expect("it arrived")
    }
}

fn ponta() -> User {
    User { id: 80351110224678912, username: "pontatot".into(), global_name: Some("Ponta".into()) }
}

/// The text of a reply, with a check that it is private and pings nobody.
fn private_text(reply: &Received) -> String {
    let body = if reply.endpoint == Endpoint::Callback { &reply.body["data"] } else { &reply.body };
    assert_eq!(body["flags"].as_u64().unwrap_or(0) & 64, 64, "ephemeral: {body}");
    assert_eq!(body["allowed_mentions"]["parse"], json!([]), "mentions off: {body}");
    body["content"].as_str().expect("a reply has content").to_owned()
}

/// The intake records on the harness's topic, once there are `n`.
async fn intake(harness: &Harness, n: i64) -> Vec<(Option<Vec<u8>>, IntakeRecord)> {
    let messages = harness.read(&harness.topics.intake, n).await;
    messages
        .iter()
        .map(|m| (m.key().map(<[u8]>::to_vec), serde_json::from_slice(m.payload().unwrap()).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_with_text_is_deferred_published_and_answered_with_the_id_aufbereitung_gives_it() {
    let harness = Harness::new(1).await;
    let stop_aufbereitung = CancellationToken::new();
    let settings = aufbereitung::Settings::new(harness.bootstrap.clone(), harness.topics.clone());
    let pipeline = tokio::spawn(aufbereitung::run(settings, stop_aufbereitung.clone()));
    let bot = Bot::start(&harness, Duration::ZERO).await;

    let call = bot.ticket(&ponta(), Some("The VPN drops every hour"));
    let reply = bot.follow_up(&call).await;
    let id = ticket_id_for_interaction(&call.id.to_string());
    let text = private_text(&reply);
    assert!(text.starts_with("Ticket received") && text.contains(&id), "{text}");
    assert_eq!(reply.query, "wait=true");

    let answers = bot.discord.answers_to(&call);
    assert_eq!(answers[0].endpoint, Endpoint::Callback, "the bot defers first: {answers:?}");
    assert_eq!(
        (&answers[0].body["type"], &answers[0].body["data"]["flags"]),
        (&json!(5), &json!(64)),
        "deferred, ephemeral"
    );

    let (key, record) = intake(&harness, 1).await.remove(0);
    assert_eq!(key.as_deref(), Some("80351110224678912".as_bytes()));
    assert_eq!((record.message.as_str(), record.username.as_str()), ("The VPN drops every hour", "pontatot"));
    assert_eq!(record.display_name.as_deref(), Some("Ponta"));
    let options = bot.discord.options();
    let ids = (record.guild_id.clone(), record.channel_id.clone(), record.interaction_id.clone());
    assert_eq!(
        ids,
        (Some(options.guild_id.to_string()), Some(options.channel_id.to_string()), Some(call.id.to_string()))
    );

    let ticket = harness.read_json(&harness.topics.tickets, 1).await.remove(0);
    assert_eq!(ticket["id"], id.as_str(), "the reply's id is the normalized ticket's id");
    wait_until("a heartbeat answered", || async { bot.discord.gateway().heartbeats >= 1 }).await;

    let (_, stopped) = bot.stop().await;
    stopped.unwrap();
    stop_aufbereitung.cancel();
    pipeline.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_without_text_opens_the_snapshot_form_and_publishes_what_is_submitted() {
    let harness = Harness::new(1).await;
    let bot = Bot::start(&harness, Duration::ZERO).await;

    let call = bot.ticket(&ponta(), None);
    let opened = bot.answer(&call, Endpoint::Callback).await;
    let snapshot =
        include_str!("../fixtures/kummerkasten/ticket-form.json").replace("INTERACTION_ID", &call.id.to_string());
    let snapshot: Value = serde_json::from_str(&snapshot).unwrap();
    assert_eq!(opened.body, snapshot, "\nexpected {snapshot:#}\n     got {:#}", opened.body);

    let submit = bot.discord.modal_submit(&ponta(), &call.id.to_string(), &[("message", "The printer\nis on fire")]);
    let acknowledged = bot.answer(&submit, Endpoint::Callback).await;
    assert_eq!(acknowledged.body["type"], 6, "the submit is acknowledged, which closes the form");
    let text = private_text(&bot.follow_up(&call).await);
    assert!(text.contains(&ticket_id_for_interaction(&call.id.to_string())), "{text}");

    let (_, record) = intake(&harness, 1).await.remove(0);
    assert_eq!(record.message, "The printer\nis on fire");
    assert_eq!(record.interaction_id, Some(call.id.to_string()), "the command's interaction decides the id");
    bot.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_never_submitted_does_not_hold_up_shutdown() {
    let harness = Harness::new(1).await;
    let bot = Bot::start(&harness, Duration::ZERO).await;
    let call = bot.ticket(&ponta(), None);
    bot.answer(&call, Endpoint::Callback).await;

    let asked = Instant::now();
    let (discord, stopped) = bot.stop().await;
    stopped.unwrap();
    assert!(asked.elapsed() < STOP_WITHIN, "stopped after {:?}", asked.elapsed());
    assert!(discord.received_at(Endpoint::FollowUp).is_empty(), "nothing was submitted, nothing is answered");
    assert_eq!(harness.count(&harness.topics.intake).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_ticket_within_the_cooldown_gets_the_wait_message_and_publishes_nothing() {
    let harness = Harness::new(1).await;
    let bot = Bot::start(&harness, Duration::from_secs(600)).await;
    let first = bot.ticket(&ponta(), Some("first"));
    bot.follow_up(&first).await;

    let second = bot.ticket(&ponta(), Some("second"));
    let wait = bot.answer(&second, Endpoint::Callback).await;
    assert_eq!(wait.body["type"], 4, "answered at once, not deferred");
    let text = private_text(&wait);
    assert!(text.starts_with("You just submitted a ticket") && text.contains("seconds"), "{text}");
    // Someone else is not held back by ponta's cooldown.
    let other = bot.ticket(&User::new(42, "ana"), Some("from ana"));
    bot.follow_up(&other).await;
    let records = intake(&harness, 2).await;
    let messages: Vec<&str> = records.iter().map(|(_, r)| r.message.as_str()).collect();
    assert_eq!(messages, ["first", "from ana"]);
    bot.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_the_broker_refuses_is_answered_not_received_and_reported_to_errors() {
    let harness = Harness::new(1).await;
    let bot = Bot::start(&harness, Duration::ZERO).await;
    // The ticket's produce is refused (librdkafka may spend two requests on it); the error event gets through.
    harness.broker.refuse_next_produces(TOPIC_AUTHORIZATION_FAILED, 2);
    let call = bot.ticket(&ponta(), Some("printer on fire"));
    let text = private_text(&bot.follow_up(&call).await);
    assert!(text.contains("**not** received") && !text.contains("Ticket received"), "{text}");

    let events = harness.read_json(&harness.topics.errors, 1).await;
    assert_eq!(events[0]["service"], "kummerkasten");
    assert_eq!(events[0]["context"]["interaction_id"], call.id.to_string());
    assert_eq!(harness.count(&harness.topics.intake).await, 0);
    bot.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_discord_refuses_is_the_bots_last_problem_without_the_interaction_token() {
    let harness = Harness::new(1).await;
    let bot = Bot::start(&harness, Duration::ZERO).await;
    bot.discord.script(Endpoint::FollowUp, &[Answer::Status(400)]);
    let call = bot.ticket(&ponta(), Some("nobody hears this answer"));
    let problem = || bot.troubles.all().remove("kummerkasten").map(|trouble| trouble.text);
    wait_until("the refused reply as the bot's problem", || async { problem().is_some() }).await;
    let problem = problem().expect("it was reported");
    assert!(problem.starts_with("/ticket failed: Discord refused the reply: HTTP 400 Bad Request"), "{problem}");
    assert!(problem.contains("400: scripted by the fake"), "Discord's own message is kept: {problem}");
    assert!(!problem.contains(&call.token), "{problem}");

    // The bot goes on: the next ticket is answered.
    let next = bot.ticket(&User::new(2, "next"), Some("and this one?"));
    assert!(private_text(&bot.follow_up(&next).await).starts_with("Ticket received"));
    bot.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_broker_down_the_user_is_told_at_once_and_the_failure_reaches_errors_once_it_is_back() {
    let harness = Harness::new(1).await;
    let bot = Bot::start(&harness, Duration::ZERO).await;
    let (harness, call) = harness
        .with_broker_down(async {
            let call = bot.ticket(&ponta(), Some("while the broker is down"));
            // The producer gives up after its delivery timeout; the reply does not wait for the error report.
            let text = private_text(&bot.follow_up(&call).await);
            assert!(text.contains("**not** received") && text.contains("try again"), "{text}");
            call
        })
        .await;

    let events = harness.read_json(&harness.topics.errors, 1).await;
    assert_eq!(events[0]["service"], "kummerkasten");
    assert_eq!(events[0]["context"]["interaction_id"], call.id.to_string());
    assert_eq!(harness.count(&harness.topics.intake).await, 0, "a ticket the user was told failed is not published");
    bot.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_puts_the_snapshot_command_into_the_guild_before_the_gateway_connects() {
    let harness = Harness::new(1).await;
    let bot = Bot::start(&harness, Duration::ZERO).await;
    let received = bot.discord.received();
    let registration = received.iter().position(|r| r.endpoint == Endpoint::GuildCommands).expect("registered");
    let gateway = received.iter().position(|r| r.endpoint == Endpoint::Gateway).expect("asked for the gateway");
    assert!(registration < gateway, "{received:#?}");
    let snapshot: Value = serde_json::from_str(include_str!("../fixtures/kummerkasten/ticket-command.json")).unwrap();
    assert_eq!(received[registration].body, json!([snapshot]));
    assert_eq!(received[registration].status, 200);
    // With no global registration left, the bot only asks for it and changes nothing there.
    let global: Vec<&str> =
        received.iter().filter(|r| r.endpoint == Endpoint::GlobalCommands).map(|r| r.method.as_str()).collect();
    assert_eq!(global, ["GET"], "{received:#?}");
    bot.stop().await.1.unwrap();
}

/// Regression (#33): with DISCORD_GUILD_ID set, a global registration from an earlier configuration stayed, so
/// every other server with the bot (and its direct messages) still offered `/ticket`. Now it is removed at start.
#[tokio::test(flavor = "multi_thread")]
async fn a_global_registration_left_from_before_is_removed_at_start() {
    let harness = Harness::new(1).await;
    let discord = FakeDiscord::start().await;
    discord.register_globally(&[json!({"name": "ticket", "description": "Submit a ticket", "type": 1})]);
    assert_eq!(discord.global_commands().len(), 1);
    let bot = Bot::launch(&harness, discord, Duration::ZERO);
    wait_until("the bot's gateway session", || async { bot.discord.gateway().live }).await;

    assert!(bot.discord.global_commands().is_empty(), "{:?}", bot.discord.global_commands());
    let received = bot.discord.received();
    let position = |endpoint: Endpoint, method: &str| {
        received.iter().position(|r| r.endpoint == endpoint && r.method == method).expect("called")
    };
    let (guild, asked, removed) = (
        position(Endpoint::GuildCommands, "PUT"),
        position(Endpoint::GlobalCommands, "GET"),
        position(Endpoint::GlobalCommands, "PUT"),
    );
    assert!(guild < asked && asked < removed, "first the guild's commands, then the global ones: {received:#?}");
    assert_eq!((received[removed].body.clone(), received[removed].status), (json!([]), 200));
    assert!(private_text(&bot.follow_up(&bot.ticket(&ponta(), Some("still served"))).await).starts_with("Ticket"));
    bot.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_global_registration_that_cannot_be_removed_leaves_the_bot_running() {
    let harness = Harness::new(1).await;
    let discord = FakeDiscord::start().await;
    discord.register_globally(&[json!({"name": "ticket", "description": "Submit a ticket", "type": 1})]);
    discord.script(Endpoint::GlobalCommands, &[Answer::Status(403)]);
    let bot = Bot::launch(&harness, discord, Duration::ZERO);
    wait_until("the bot's gateway session", || async { bot.discord.gateway().live }).await;
    assert_eq!(bot.discord.global_commands().len(), 1, "it is still there");
    assert!(private_text(&bot.follow_up(&bot.ticket(&ponta(), Some("still served"))).await).starts_with("Ticket"));
    bot.stop().await.1.unwrap();
}

/// Regression (#33): DISCORD_GUILD_ID restricted nothing; a `/ticket` delivered from another server id was
/// published like any other. Now `/ticket` from another server or a direct message gets a private refusal and
/// nothing else (`/tickets` in `kummerkasten_staff`, where the store runs).
#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_from_another_server_or_a_direct_message_is_refused_privately_and_publishes_nothing() {
    let harness = Harness::new(1).await;
    let bot = Bot::start(&harness, Duration::ZERO).await;
    let elsewhere = Origin::Guild { guild_id: 1177000000000000999, channel_id: 1177000000000000998 };
    let calls = [
        bot.discord.command_from(elsewhere, &ponta(), "ticket", &[("message", "from another server")]),
        bot.discord.command_from(elsewhere, &ponta(), "ticket", &[]),
        bot.discord.command_from(Origin::Dm, &ponta(), "ticket", &[("message", "from a direct message")]),
        bot.discord.command_from(Origin::Dm, &ponta(), "ticket", &[]),
    ];
    for call in &calls {
        let refusal = bot.answer(call, Endpoint::Callback).await;
        assert_eq!(refusal.body["type"], 4, "a message, no deferral and no form: {:?}", refusal.body);
        let text = private_text(&refusal);
        assert!(text.contains("only works in the Discord server it was set up for"), "{text}");
    }

    // A ticket from the bot's own server right after is published, and it is the only record.
    let home = bot.ticket(&ponta(), Some("from home"));
    assert!(private_text(&bot.follow_up(&home).await).starts_with("Ticket received"));
    let records = intake(&harness, 1).await;
    assert_eq!(records[0].1.message, "from home");
    assert_eq!(harness.count(&harness.topics.intake).await, 1, "nothing from elsewhere was published");
    for call in &calls {
        let answers = bot.discord.answers_to(call);
        assert_eq!(answers.len(), 1, "the refusal and nothing else: {answers:#?}");
    }
    bot.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_registration_stops_the_bot_with_its_cause() {
    let harness = Harness::new(1).await;
    let discord = FakeDiscord::start().await;
    discord.script(Endpoint::GuildCommands, &[Answer::Status(403)]);
    let error = Bot::launch(&harness, discord, Duration::ZERO).ended(STOP_WITHIN).await.unwrap_err().to_string();
    assert!(error.contains("cannot register /ticket in guild") && error.contains("HTTP 403"), "{error}");
    assert!(error.contains("DISCORD_GUILD_ID") && error.contains("applications.commands"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_the_gateway_refuses_stops_the_bot_fast_with_the_token_hint() {
    let harness = Harness::new(1).await;
    let discord = FakeDiscord::start().await;
    // The token passed the REST check and is then revoked: the gateway closes with 4004.
    discord.refuse_next_identify(4004);
    let error = Bot::launch(&harness, discord, Duration::ZERO).ended(STOP_WITHIN).await.unwrap_err().to_string();
    assert!(error.contains("the Discord bot stopped") && error.contains("check DISCORD_TOKEN"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_each_gateway_fault_the_bot_reconnects_and_serves_the_next_ticket() {
    let harness = Harness::new(1).await;
    let bot = Bot::start(&harness, Duration::ZERO).await;
    let faults = [
        (Fault::Close(4000), "resume"),
        (Fault::Drop, "resume"),
        (Fault::Reconnect, "resume"),
        (Fault::InvalidSession { resumable: true }, "resume"),
        (Fault::InvalidSession { resumable: false }, "identify"),
    ];
    for (round, (fault, how)) in faults.into_iter().enumerate() {
        let before = bot.discord.gateway();
        bot.discord.fault(fault);
        wait_until(&format!("the bot to {how} after {fault:?}"), || async {
            let now = bot.discord.gateway();
            now.live && if how == "resume" { now.resumes > before.resumes } else { now.identifies > before.identifies }
        })
        .await;
        let call = bot.ticket(&ponta(), Some(&format!("after {fault:?}")));
        let text = private_text(&bot.follow_up(&call).await);
        assert!(text.starts_with("Ticket received"), "round {round}, {fault:?}: {text}");
    }
    assert_eq!(intake(&harness, 5).await.len(), 5);
    bot.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_follow_up_is_waited_out_and_still_arrives() {
    let harness = Harness::new(1).await;
    let bot = Bot::start(&harness, Duration::ZERO).await;
    bot.discord.script(Endpoint::FollowUp, &[Answer::RateLimited(1.5)]);
    let call = bot.ticket(&ponta(), Some("slow down"));
    let reply = bot.follow_up(&call).await;
    assert!(private_text(&reply).starts_with("Ticket received"));

    let follow_ups: Vec<Received> =
        bot.discord.answers_to(&call).into_iter().filter(|r| r.endpoint == Endpoint::FollowUp).collect();
    let statuses: Vec<u16> = follow_ups.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200]);
    let waited = follow_ups[1].at.duration_since(follow_ups[0].at);
    assert!(waited >= Duration::from_millis(1500), "retried after {waited:?}");
    bot.stop().await.1.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_in_flight_at_shutdown_is_published_and_answered_before_the_bot_stops() {
    let harness = Harness::new(1).await;
    let bot = Bot::start(&harness, Duration::ZERO).await;
    bot.discord.script(Endpoint::Callback, &[Answer::Hold]);
    let call = bot.ticket(&ponta(), Some("just before the restart"));
    wait_until("the bot's deferral to be held", || async { bot.discord.holding() == 1 }).await;

    bot.shutdown.cancel();
    wait_until("the gateway connection to close", || async { !bot.discord.gateway().live }).await;
    bot.discord.release();
    let (discord, stopped) = bot.stop().await;
    stopped.unwrap();

    let follow_up = discord.answers_to(&call).into_iter().find(|r| r.endpoint == Endpoint::FollowUp);
    let text = private_text(&follow_up.expect("the reply was sent before the bot stopped"));
    assert!(text.contains(&ticket_id_for_interaction(&call.id.to_string())), "{text}");
    assert_eq!(intake(&harness, 1).await[0].1.message, "just before the restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_interaction_payloads_get_safe_answers_and_the_bot_keeps_serving() {
    let harness = Harness::new(1).await;
    let bot = Bot::start(&harness, Duration::ZERO).await;
    let huge = "x".repeat(100_000);
    let texts = [
        huge.as_str(),
        "@everyone <@123> <@&456> @here ```\n**bold** `x`",
        "<script>alert(1)</script>\u{202e}\u{0}\u{7}",
        "   \n\t ",
    ];
    for text in texts {
        let call = bot.ticket(&User::new(fastrand_id(), "mallory"), Some(text));
        let reply = private_text(&bot.follow_up(&call).await);
        assert!(reply.chars().count() <= 2000, "a reply fits a Discord message: {} characters", reply.chars().count());
        assert!(!reply.contains("@everyone") && !reply.contains("<@123>") && !reply.contains("@here"), "{reply}");
    }
    // Forms whose fields are missing, or not text, or a submit for a form nobody opened.
    let call = bot.ticket(&ponta(), None);
    bot.answer(&call, Endpoint::Callback).await;
    bot.discord.modal_submit(&ponta(), &call.id.to_string(), &[("not-the-message", "?")]);
    bot.discord.modal_submit(&ponta(), "no-such-form", &[("message", "stray")]);
    let mut odd = fake_discord::payloads::command(bot.discord.options(), &call, &ponta(), "ticket", &[]);
    odd["data"]["options"] = json!([{"name": "message", "type": 4, "value": 7}]);
    bot.discord.dispatch("INTERACTION_CREATE", odd);
    bot.discord.dispatch("INTERACTION_CREATE", json!({"type": 2, "id": "not a snowflake"}));

    let after = bot.ticket(&ponta(), Some("still here"));
    assert!(private_text(&bot.follow_up(&after).await).starts_with("Ticket received"));
    let records = intake(&harness, 3).await;
    let messages: Vec<&str> = records.iter().map(|(_, r)| r.message.as_str()).collect();
    assert_eq!(messages.len(), 3, "the oversized and the empty ticket are refused: {messages:?}");
    bot.stop().await.1.unwrap();
}

/// A user id that no other test uses, so no cooldown applies.
fn fastrand_id() -> u64 {
    fake_discord::payloads::snowflake()
}

#[test]
fn every_payload_of_the_fake_deserializes_as_serenity_models() {
    use fake_discord::payloads;
    for name in payloads::FIXTURES {
        let value = payloads::fixture(name);
        let parsed = match name {
            "application" => serde_json::from_value::<serenity::CurrentApplicationInfo>(value).map(drop),
            "ready" => serde_json::from_value::<serenity::Ready>(value).map(drop),
            "message" => serde_json::from_value::<serenity::Message>(value).map(drop),
            "dm-channel" => serde_json::from_value::<serenity::PrivateChannel>(value).map(drop),
            "thread-channel" => serde_json::from_value::<serenity::GuildChannel>(value).map(drop),
            _ => serde_json::from_value::<serenity::Interaction>(value).map(drop),
        };
        parsed.unwrap_or_else(|error| panic!("fixtures/discord/{name}.json: {error}"));
    }
    let options = fake_discord::Options::default();
    let call = Interaction { id: payloads::snowflake(), token: "token".into() };
    let command = payloads::command(&options, &call, &ponta(), "ticket", &[("message", "hi")]);
    match serde_json::from_value::<serenity::Interaction>(command).unwrap() {
        serenity::Interaction::Command(command) => {
            assert_eq!((command.data.name.as_str(), command.user.id.get()), ("ticket", 80351110224678912));
            assert_eq!(command.guild_id.map(|g| g.get()), Some(options.guild_id));
        }
        other => panic!("not a command: {other:?}"),
    }
    let submit = payloads::modal_submit(&options, &call, &ponta(), &[7], "form", &[("message", "hi")]);
    match serde_json::from_value::<serenity::Interaction>(submit).unwrap() {
        serenity::Interaction::Modal(submit) => {
            assert_eq!(submit.member.unwrap().roles, [serenity::RoleId::new(7)], "the member's roles arrive")
        }
        other => panic!("not a modal submit: {other:?}"),
    }
    let press = payloads::button(&options, &call, &ponta(), &[], (9, 10), "franz:claim:t-1");
    match serde_json::from_value::<serenity::Interaction>(press).unwrap() {
        serenity::Interaction::Component(press) => {
            assert_eq!((press.data.custom_id.as_str(), press.message.id.get()), ("franz:claim:t-1", 10));
        }
        other => panic!("not a button press: {other:?}"),
    }
    // From another server and from a direct message, as Discord sends them: serenity reads the user from
    // `member.user` in a server and from `user` in a direct message.
    let elsewhere = payloads::in_guild(payloads::command(&options, &call, &ponta(), "ticket", &[]), 9, 8);
    match serde_json::from_value::<serenity::Interaction>(elsewhere).unwrap() {
        serenity::Interaction::Command(command) => {
            assert_eq!((command.guild_id.map(|g| g.get()), command.channel_id.get()), (Some(9), 8));
            assert_eq!(command.user.id.get(), 80351110224678912);
        }
        other => panic!("not a command: {other:?}"),
    }
    let dm = payloads::in_dm(payloads::command(&options, &call, &ponta(), "ticket", &[]), 7);
    assert!(dm.get("member").is_none() && dm.get("guild_id").is_none() && dm["user"]["id"] == "80351110224678912");
    match serde_json::from_value::<serenity::Interaction>(dm).unwrap() {
        serenity::Interaction::Command(command) => {
            assert_eq!((command.guild_id, command.channel_id.get()), (None, 7));
            assert_eq!((command.user.id.get(), command.member.is_none()), (80351110224678912, true));
        }
        other => panic!("not a command: {other:?}"),
    }
    let dm_press = payloads::in_dm(payloads::button(&options, &call, &ponta(), &[], (9, 10), "franz:claim:t-1"), 7);
    match serde_json::from_value::<serenity::Interaction>(dm_press).unwrap() {
        serenity::Interaction::Component(press) => {
            assert_eq!((press.guild_id, press.user.id.get()), (None, 80351110224678912))
        }
        other => panic!("not a button press: {other:?}"),
    }
    let ready = payloads::ready(&options, "session", "ws://127.0.0.1:1");
    assert_eq!(serde_json::from_value::<serenity::Ready>(ready).unwrap().application.id.get(), options.application_id);
}

/// `franz up` with the bot against the fake, until it exits; its standard error.
async fn franz_up_against(
    discord: &FakeDiscord,
    token: &str,
    guild: u64,
) -> (std::process::ExitStatus, String, Duration) {
    let dir = scratch();
    let mut command = franz(dir.path(), None);
    command
        .args(["up", "--ephemeral", "--listen", "127.0.0.1:0", "--only", "kummerkasten"])
        .env("DISCORD_TOKEN", token)
        .env("DISCORD_GUILD_ID", guild.to_string())
        .env("DISCORD_API_PROXY", discord.api_base());
    let started = Instant::now();
    // The fake runs on this runtime; the process is waited for on the blocking pool.
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    (output.status, String::from_utf8_lossy(&output.stderr).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn franz_up_fails_fast_with_the_token_hint_when_discord_refuses_the_token() {
    let discord = FakeDiscord::start().await;
    let (status, stderr, took) = franz_up_against(&discord, "not-the-token", discord.options().guild_id).await;
    assert!(!status.success(), "{stderr}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(stderr.contains("Discord refused the bot token") && stderr.contains("check DISCORD_TOKEN"), "{stderr}");
    assert!(!stderr.contains("not-the-token"), "the token is never shown: {stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn franz_up_fails_with_the_cause_when_discord_refuses_the_registration() {
    let discord = FakeDiscord::start().await;
    // A guild the bot is not in: Discord answers 403 Missing Access.
    let (status, stderr, _) = franz_up_against(&discord, discord.token(), 42).await;
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("kummerkasten failed") && stderr.contains("cannot register /ticket in guild 42"),
        "{stderr}"
    );
    assert!(stderr.contains("HTTP 403") && stderr.contains("Missing Access"), "{stderr}");
    assert!(!stderr.contains(discord.token()), "{stderr}");
}
