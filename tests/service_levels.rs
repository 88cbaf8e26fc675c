//! Service levels end to end: franz with a first-response target, a clock the test moves instead of waiting, and a
//! fake Discord webhook for the alerts.

use chrono::Duration as Span;
use fake_discord::FakeDiscord;
use franz::clock::Clock;
use franz::config::Service;
use franz::schema::lifecycle::{Action, Actor, ActorSource, Command};
use secrecy::SecretString;
use serde_json::Value;

use crate::util::{Harness, Started, scratch, wait_until};

fn ticket(id: &str) -> franz::schema::Ticket {
    franz::schema::Ticket {
        id: id.into(),
        contact: "pontatot".into(),
        origin: "Discord".into(),
        body: format!("{id} is broken"),
        date: "2026-12-07T10:00:00Z".into(),
        contact_id: Some("42".into()),
        ..franz::schema::Ticket::default()
    }
}

/// A staff member's API token.
fn token(config: &franz::config::Config) -> String {
    franz::people::Staff::open(&config.data_dir.join("desk")).unwrap().add("ana").unwrap().0
}

/// The ticket events so far, as JSON.
async fn events(harness: &Harness) -> Vec<Value> {
    let count = harness.count(&harness.topics.events).await;
    if count == 0 { Vec::new() } else { harness.read_json(&harness.topics.events, count).await }
}

async fn has(harness: &Harness, ticket: &str, kind: &str) -> usize {
    events(harness).await.iter().filter(|e| e["ticket_id"] == ticket && e["type"] == kind).count()
}

/// aufbereitung and akte on a clock the test moves, with one ticket `id` created.
async fn one_ticket(id: &str) -> (Harness, tempfile::TempDir, Clock, Started) {
    let harness = Harness::new(1).await;
    let data = scratch();
    let clock = Clock::manual(chrono::Utc::now());
    let mut config = harness.config(data.path(), &[Service::Aufbereitung, Service::Akte]);
    config.clock = clock.clone();
    let franz = Started::start(&config).await;
    harness.produce(&harness.topics.tickets, &[(0, serde_json::to_vec(&ticket(id)).unwrap())]).await;
    wait_until("the ticket created", || async { has(&harness, id, "created").await == 1 }).await;
    (harness, data, clock, franz)
}

/// A public reply by staff member ana, through the commands topic as the desk sends it, once akte decided it.
async fn reply(harness: &Harness, ticket: &str, body: &str) {
    let producer = franz::kafka::producer(&harness.bootstrap).unwrap();
    let reply = Command {
        command_id: format!("reply-{ticket}"),
        ticket_id: ticket.into(),
        actor: Actor::staff(ActorSource::Api, "ana"),
        action: Action::Comment { body: body.into(), internal: false, via: None },
    };
    franz::kafka::tickets::send_command(&producer, &harness.topics.commands, harness.partitions, &reply).await.unwrap();
    wait_until("the reply decided", || async { has(harness, ticket, "commented").await == 1 }).await;
}

/// The "done when": a team sets a 1-hour first response target. A ticket left unanswered turns due soon
/// (amber) once 48 minutes pass and missed (red) at the hour, each decided once and each an alert in Discord, and
/// counted in `/metrics`; a ticket answered in time says neither. The clock is the test's: it moves an hour in no
/// time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_left_unanswered_turns_amber_then_red_with_one_alert_each_and_one_answered_in_time_neither() {
    let harness = Harness::new(1).await;
    let data = scratch();
    let discord = FakeDiscord::start().await;
    let clock = Clock::manual(chrono::Utc::now());
    let mut config =
        harness.config(data.path(), &[Service::Aufbereitung, Service::Akte, Service::Absturz, Service::Desk]);
    config.desk = franz::config::Desk { listen: "127.0.0.1:0".parse().unwrap(), public_url: None };
    config.service_levels.first_response = Some("normal 1h".into());
    config.discord.webhook_url = Some(SecretString::from(discord.webhook_url()));
    config.clock = clock.clone();
    let franz = Started::start(&config).await;
    let desk = format!("http://{}", franz.desk.expect("the desk runs"));

    let records = ["late", "answered"].map(|id| (0, serde_json::to_vec(&ticket(id)).unwrap()));
    harness.produce(&harness.topics.tickets, &records).await;
    wait_until("both tickets created", || async {
        has(&harness, "late", "created").await == 1 && has(&harness, "answered", "created").await == 1
    })
    .await;
    reply(&harness, "answered", "on it").await;

    clock.advance(Span::minutes(48));
    wait_until("the unanswered ticket due soon", || async { has(&harness, "late", "due_soon").await == 1 }).await;
    assert_eq!(has(&harness, "late", "breached").await, 0, "not missed before the hour");
    clock.advance(Span::minutes(12));
    wait_until("the unanswered ticket missed", || async { has(&harness, "late", "breached").await == 1 }).await;
    wait_until("two alerts in Discord", || async { discord.embeds().len() >= 2 }).await;

    let titles: Vec<String> =
        discord.embeds().iter().map(|embed| embed["title"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(
        titles,
        ["Ticket late: the first response is due soon", "Ticket late: the first response was missed"],
        "one alert each, in order"
    );
    let api = reqwest::Client::new();
    let metrics = api.get(format!("{desk}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("franz_sla_breaches_total{target=\"first_response\",priority=\"normal\"} 1"), "{metrics}");
    assert_eq!(has(&harness, "late", "due_soon").await, 1, "due soon said once");
    assert_eq!(has(&harness, "late", "breached").await, 1, "missed said once");
    assert_eq!(has(&harness, "answered", "due_soon").await + has(&harness, "answered", "breached").await, 0);
    let shown = api.get(format!("{desk}/api/tickets/late")).bearer_auth(token(&config)).send().await.unwrap();
    let shown: Value = shown.json().await.unwrap();
    let clock = &shown["ticket"]["clocks"][0];
    assert_eq!((&clock["warned"], &clock["breached"]), (&Value::from(true), &Value::from(true)), "{shown}");
    // `franz tickets --due`: the missed ticket, marked, and not the one answered in time.
    let output = crate::util::franz(data.path(), Some(&harness))
        .env("FRANZ_DATA_DIR", data.path())
        .args(["tickets", "--due"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(listed.lines().any(|line| line.starts_with("late") && line.contains("open!")), "{listed}");
    assert!(!listed.contains("answered"), "{listed}");
    franz.stop().await.unwrap();
}

/// The board counts down the working time left before a ticket's earliest target and says "late" once it passed;
/// the ticket's page says how much of each target is spent; the numbers page the share of targets met in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_counts_down_the_working_time_left_and_the_numbers_page_shows_the_share_met_in_time() {
    let clock = Clock::manual(chrono::Utc::now());
    let team = crate::web::Team::start_with(|config| {
        config.service_levels.first_response = Some("normal 1h".into());
        config.clock = clock.clone();
    })
    .await;
    team.publish(&[ticket("late"), ticket("answered")]).await;
    let token = team.staff().add("ana").unwrap().0;
    let reply = serde_json::json!({"action": "comment", "body": "on it", "command_id": "reply-1"});
    let sent = team.http.post(format!("{}/api/tickets/answered/commands", team.url)).bearer_auth(&token).json(&reply);
    assert!(sent.send().await.unwrap().status().is_success());
    wait_until("the reply decided", || async { team.api("/api/tickets/answered").await["ticket"]["comments"] == 1 })
        .await;
    let session = team.sign_in("bo").await;

    clock.advance(Span::minutes(30));
    let board = team.page("/", &session.cookie).await;
    let row = |board: &str, id: &str| {
        board.split("<tr>").find(|row| row.contains(&format!("/tickets/{id}\""))).unwrap_or_default().to_owned()
    };
    assert!(row(&board, "late").contains("30m left"), "{board}");
    assert!(row(&board, "answered").contains("<td class=\"due\">—</td>"), "nothing due: {board}");
    let page = team.page("/tickets/late", &session.cookie).await;
    assert!(page.contains("50% of its 1h spent, 30m left"), "{page}");

    clock.advance(Span::minutes(31));
    wait_until("the first response missed", || async {
        team.api("/api/tickets/late").await["ticket"]["clocks"][0]["breached"] == true
    })
    .await;
    let board = team.page("/", &session.cookie).await;
    assert!(row(&board, "late").contains(">late<"), "{board}");
    // The numbers are counted in the background, at most every ten seconds.
    wait_until("the numbers count both", || async {
        team.api("/api/stats").await["within_target_by_week"][7]["first_response"]
            == serde_json::json!({"met": 1, "missed": 1})
    })
    .await;
    let numbers = team.page("/stats", &session.cookie).await;
    assert!(numbers.contains("Within target"), "{numbers}");
    let section = numbers.split("id=\"within-target\"").nth(1).unwrap();
    assert!(section.contains("50% (1 of 2)"), "one met, one missed this week: {section}");
    assert!(section.contains("<bdi>ana</bdi></th><td>100% (1 of 1)"), "ana answered in time: {section}");
    assert!(section.contains("<bdi>unassigned</bdi></th><td>0% (0 of 1)"), "nobody's when missed: {section}");
    team.stop().await;
}

/// A ticket waiting on its submitter (franz's defaults: 7 days, the reminder 2 days before) is reminded after five
/// days and closed after seven, "no answer from the submitter", by franz itself; one whose submitter answers stays
/// open. No target is set: the close of silent tickets works without service levels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_ticket_is_reminded_then_closed_and_one_whose_submitter_answers_stays_open() {
    let harness = Harness::new(1).await;
    let data = scratch();
    let clock = Clock::manual(chrono::Utc::now());
    let mut config = harness.config(data.path(), &[Service::Aufbereitung, Service::Akte]);
    config.clock = clock.clone();
    let franz = Started::start(&config).await;
    let records = ["silent", "answering"].map(|id| (0, serde_json::to_vec(&ticket(id)).unwrap()));
    harness.produce(&harness.topics.tickets, &records).await;
    let producer = franz::kafka::producer(&harness.bootstrap).unwrap();
    let send = |id: &str, ticket: &str, actor: Actor, action: Action| {
        let command = Command { command_id: id.into(), ticket_id: ticket.into(), actor, action };
        let producer = producer.clone();
        let topic = harness.topics.commands.clone();
        async move { franz::kafka::tickets::send_command(&producer, &topic, harness.partitions, &command).await.unwrap() }
    };
    wait_until("both tickets created", || async {
        has(&harness, "silent", "created").await == 1 && has(&harness, "answering", "created").await == 1
    })
    .await;
    for ticket in ["silent", "answering"] {
        let reply = Action::Comment { body: "Does it work now?".into(), internal: false, via: None };
        send(&format!("reply-{ticket}"), ticket, Actor::staff(ActorSource::Api, "ana"), reply).await;
    }
    wait_until("both replied", || async {
        has(&harness, "silent", "commented").await == 1 && has(&harness, "answering", "commented").await == 1
    })
    .await;
    let submitter = Actor { source: ActorSource::Discord, name: "pontatot".into(), id: Some("42".into()), staff: None };
    let answer = Action::Write {
        body: "Yes, thanks".into(),
        attachments: Vec::new(),
        via: franz::schema::lifecycle::Via::DiscordDm,
        message_id: None,
    };
    clock.advance(Span::days(3));
    send("answer", "answering", submitter, answer).await;
    wait_until("the answer decided", || async { has(&harness, "answering", "submitter_wrote").await == 1 }).await;

    clock.advance(Span::days(2));
    wait_until("the silent ticket's submitter reminded", || async { has(&harness, "silent", "reminded").await == 1 })
        .await;
    assert_eq!(has(&harness, "silent", "closed").await, 0, "not closed before the week is out");
    clock.advance(Span::days(2));
    wait_until("the silent ticket closed", || async { has(&harness, "silent", "closed").await == 1 }).await;
    let closed = events(&harness).await.into_iter().find(|e| e["ticket_id"] == "silent" && e["type"] == "closed");
    let closed = closed.unwrap();
    assert_eq!(closed["reason"], "no answer from the submitter", "{closed}");
    assert_eq!(closed["actor"]["source"], "franz", "{closed}");
    assert_eq!(has(&harness, "silent", "reminded").await, 1, "reminded once");
    assert_eq!(has(&harness, "answering", "reminded").await + has(&harness, "answering", "closed").await, 0);
    franz.stop().await.unwrap();
}

/// Found by an attack (#26), failing first: the scheduler names its time command after the ticket's version
/// (`tick:<version>`), and akte answers a command id once, a refusal included. A staff member (or any API client)
/// could send a command with the id `tick:1` to a ticket at version 1: refused, but its id answered, so the
/// scheduler's own `tick:1` was dropped as a redelivery, again every minute, and the ticket never said due soon or
/// missed. The API now refuses franz's own ids and actions before they reach akte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_id_of_franz_taken_by_an_api_client_never_silences_a_deadline() {
    let harness = Harness::new(1).await;
    let data = scratch();
    let clock = Clock::manual(chrono::Utc::now());
    let mut config = harness.config(data.path(), &[Service::Aufbereitung, Service::Akte, Service::Desk]);
    config.desk = franz::config::Desk { listen: "127.0.0.1:0".parse().unwrap(), public_url: None };
    config.service_levels.first_response = Some("normal 1h".into());
    config.clock = clock.clone();
    let franz = Started::start(&config).await;
    let desk = format!("http://{}", franz.desk.expect("the desk runs"));

    harness.produce(&harness.topics.tickets, &[(0, serde_json::to_vec(&ticket("hushed")).unwrap())]).await;
    wait_until("the ticket created", || async { has(&harness, "hushed", "created").await == 1 }).await;
    let api = reqwest::Client::new();
    // The scheduler's id for the ticket's first version, taken by a refused command: a tick, or any action.
    let token = token(&config);
    for attempt in [
        serde_json::json!({"action": "tick", "at": "2026-12-07T10:00:00Z", "command_id": "tick:1"}),
        serde_json::json!({"action": "reopen", "command_id": "tick:1"}),
        serde_json::json!({"action": "reopen", "command_id": "discord-message:1"}),
    ] {
        let taken = api
            .post(format!("{desk}/api/tickets/hushed/commands"))
            .bearer_auth(&token)
            .json(&attempt)
            .send()
            .await
            .unwrap();
        let status = taken.status();
        let body: Value = taken.json().await.unwrap();
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{attempt}: refused before akte: {body}");
    }

    clock.advance(Span::minutes(48));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while has(&harness, "hushed", "due_soon").await == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let said = has(&harness, "hushed", "due_soon").await;
    franz.stop().await.unwrap();
    assert_eq!(said, 1, "48 minutes passed: the ticket is due soon (the scheduler looks every second)");
}

/// One run of 30 tickets with a one-hour first response and two-hour resolution target, through the deadlines of
/// both, by one akte process or by two of which one is killed with SIGKILL the moment the first deadlines come. The
/// clock is a file the test rewrites (`FRANZ_TEST_CLOCK`), read by every process. Returns each ticket's history
/// (the events that changed it, without their random ids), by ticket.
async fn deadlines(two_and_a_kill: bool) -> std::collections::BTreeMap<String, Vec<Value>> {
    use franz::clock::{Clock, TEST_CLOCK};
    let harness = Harness::new(3).await;
    let dir = scratch();
    let settings = "[service_levels]\nfirst_response = \"normal 1h\"\nresolution = \"normal 2h\"\n";
    std::fs::write(dir.path().join("franz.toml"), settings).unwrap();
    let clock = dir.path().join("clock");
    let start = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z").unwrap().to_utc();
    let move_to = |minutes| Clock::write(&clock, start + Span::minutes(minutes)).unwrap();
    move_to(0);
    let process = |name: &str| {
        let data = dir.path().join(format!("data-{name}")).display().to_string();
        let env = [(TEST_CLOCK, clock.display().to_string())];
        crate::util::Up::start_with_env(dir.path(), name, &harness, &["--only", "akte", "--data-dir", &data], &env)
    };
    let first = process("first");
    let second = two_and_a_kill.then(|| process("second"));
    let records: Vec<(i32, Vec<u8>)> =
        (0..30).map(|n| (n % harness.partitions, serde_json::to_vec(&ticket(&format!("t{n:02}"))).unwrap())).collect();
    harness.produce(&harness.topics.tickets, &records).await;
    let changed =
        || async { events(&harness).await.into_iter().filter(|event| !event["version"].is_null()).collect::<Vec<_>>() };
    let count =
        |kind: &'static str| async move { changed().await.iter().filter(|event| event["type"] == kind).count() };
    wait_until("30 tickets created", || async { count("created").await == 30 }).await;
    if let Some(second) = &second {
        wait_until("both processes own partitions", || async { first.owned() > 0 && second.owned() > 0 }).await;
    }
    // The first response's due soon (48 minutes) comes, and with it the kill.
    move_to(50);
    let survivor = match second {
        Some(second) => {
            first.kill();
            second
        }
        None => first,
    };
    wait_until("30 first responses due soon", || async { count("due_soon").await == 30 }).await;
    move_to(61);
    wait_until("30 first responses missed", || async { count("breached").await == 30 }).await;
    // Both of the resolution's points at once: due soon first, then missed.
    move_to(200);
    wait_until("30 resolutions missed", || async { count("breached").await == 60 }).await;
    survivor.terminate();
    let mut histories = std::collections::BTreeMap::<String, Vec<Value>>::new();
    for mut event in changed().await {
        event.as_object_mut().unwrap().remove("event_id");
        histories.entry(event["ticket_id"].as_str().unwrap().to_owned()).or_default().push(event);
    }
    for history in histories.values_mut() {
        history.sort_by_key(|event| event["version"].as_u64());
    }
    histories
}

/// The test of the scheduler's guarantee: two akte processes, one killed with SIGKILL as the deadlines come,
/// decide exactly the events one uninterrupted process decides: the survivor finds every due deadline of the
/// partitions it takes over, and nothing is decided twice (each ticket's versions run 1 to 5 without a gap).
#[tokio::test(flavor = "multi_thread")]
async fn two_akte_processes_and_a_kill_9_during_a_deadline_decide_the_same_events_as_one_uninterrupted_run() {
    let uninterrupted = deadlines(false).await;
    let interrupted = deadlines(true).await;
    assert_eq!(uninterrupted.len(), 30);
    for (ticket, history) in &uninterrupted {
        let kinds: Vec<&str> = history.iter().map(|event| event["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["created", "due_soon", "breached", "due_soon", "breached"], "{ticket}");
        let versions: Vec<u64> = history.iter().map(|event| event["version"].as_u64().unwrap()).collect();
        assert_eq!(versions, [1, 2, 3, 4, 5], "{ticket}");
    }
    assert_eq!(interrupted, uninterrupted, "the same events, field for field");
}

/// Found by an attack (#26, silent tickets), failing first: franz was down for eight days (the clock jumps past both
/// the reminder and the close of a waiting ticket). The first time command reminds the submitter that the ticket
/// "closes on" a time already past, and the next look closes it, a moment later: the submitter is told to answer to
/// keep it open, with no time left to do so. The reminder must leave them `remind_before_close_days` (2 days).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_ticket_found_past_its_close_after_a_downtime_is_reminded_with_time_left_to_answer() {
    let (harness, _data, clock, franz) = one_ticket("forgotten").await;
    reply(&harness, "forgotten", "Does it work now?").await;

    clock.advance(Span::days(8));
    wait_until("the submitter reminded", || async { has(&harness, "forgotten", "reminded").await == 1 }).await;
    let reminded = events(&harness).await.into_iter().find(|e| e["type"] == "reminded").unwrap();
    let time = |value: &Value| chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap();
    let (sent, closes) = (time(&reminded["at"]), time(&reminded["closes"]));
    let closed = has(&harness, "forgotten", "closed").await;
    franz.stop().await.unwrap();
    assert!(
        closes - sent >= Span::days(2),
        "the reminder sent {sent} says the ticket closes {closes} (and {closed} close event(s) followed already)"
    );
}

/// Found by an attack (#26), failing first: any producer on the commands topic that names itself franz sends a time
/// command dated 9999-12-31; akte decides it by the command's time, not its own clock, and a ticket answered a
/// minute ago is reminded and closed "no answer from the submitter" by the next such command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_command_dated_the_year_9999_never_closes_a_ticket_waiting_one_minute() {
    let (harness, _data, clock, franz) = one_ticket("rushed").await;
    let producer = franz::kafka::producer(&harness.bootstrap).unwrap();
    let send = |id: &str, actor: Actor, action: Action| {
        let command = Command { command_id: id.into(), ticket_id: "rushed".into(), actor, action };
        let producer = producer.clone();
        let topic = harness.topics.commands.clone();
        async move { franz::kafka::tickets::send_command(&producer, &topic, harness.partitions, &command).await.unwrap() }
    };
    let reply = Action::Comment { body: "Does it work now?".into(), internal: false, via: None };
    send("reply-1", Actor::staff(ActorSource::Api, "ana"), reply).await;
    wait_until("the reply decided", || async { has(&harness, "rushed", "commented").await == 1 }).await;
    clock.advance(Span::minutes(1));
    let forger = Actor { source: ActorSource::Franz, name: "akte".into(), id: None, staff: None };
    for id in ["forged-1", "forged-2"] {
        send(id, forger.clone(), Action::Tick { at: "9999-12-31T23:59:59Z".into() }).await;
        wait_until("the forged time command decided", || async {
            events(&harness).await.iter().any(|e| e["caused_by"] == id)
        })
        .await;
    }
    let closed = has(&harness, "rushed", "closed").await;
    franz.stop().await.unwrap();
    assert_eq!(closed, 0, "a minute after the reply, the ticket was closed by a time command dated 9999");
}
