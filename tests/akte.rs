//! akte, the ticket store and the desk's API end to end, against an in-process broker: tickets created once,
//! commands decided once with one winner per conflict (across processes too), crashes and rebuilds that neither
//! lose nor repeat an event, and every API answer a client can get.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use franz::config::{Config, Service};
use franz::schema::Ticket;
use franz::schema::lifecycle::{Action, Actor, ActorSource, Command, Event};
use rdkafka::message::Message as _;
use rdkafka::producer::FutureRecord;
use serde_json::{Value, json};

use crate::util::{Harness, Started, Up, scratch, wait_until};

fn config(harness: &Harness, data: &Path, services: &[Service]) -> Config {
    Config {
        desk: franz::config::Desk { listen: "127.0.0.1:0".parse().unwrap(), public_url: None },
        ..harness.config(data, services)
    }
}

fn ticket(n: usize) -> Ticket {
    Ticket {
        id: format!("ticket-{n:05}"),
        contact: "pontatot".into(),
        origin: "Discord".into(),
        body: format!("ticket number {n}"),
        date: "2026-02-24T08:32:23.255Z".into(),
        contact_id: Some("42".into()),
        guild_id: None,
        channel_id: None,
        follows: None,
        category: None,
        message_id: None,
        automatic: None,
        attachments: Vec::new(),
    }
}

/// Publishes normalized tickets to the tickets topic, keyed by submitter as aufbereitung does.
async fn publish_tickets(harness: &Harness, tickets: &[Ticket]) {
    let records: Vec<(i32, Vec<u8>)> = tickets
        .iter()
        .enumerate()
        .map(|(i, t)| ((i as i32) % harness.partitions, serde_json::to_vec(t).unwrap()))
        .collect();
    harness.produce(&harness.topics.tickets, &records).await;
}

/// Publishes raw command records with their keys, through the default partitioner (as any librdkafka client).
async fn publish_raw(harness: &Harness, records: &[(Option<String>, Vec<u8>)]) {
    let producer = franz::kafka::producer(&harness.bootstrap).unwrap();
    let mut pending = Vec::new();
    for (key, payload) in records {
        let mut record = FutureRecord::<String, [u8]>::to(&harness.topics.commands).payload(payload.as_slice());
        if let Some(key) = key {
            record = record.key(key);
        }
        pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for delivery in pending {
        delivery.await.unwrap().unwrap();
    }
}

fn claim(ticket: &str, who: &str, n: usize) -> (Option<String>, Vec<u8>) {
    let command = Command {
        command_id: format!("claim-{ticket}-{n}"),
        ticket_id: ticket.into(),
        actor: Actor::staff(ActorSource::Api, who),
        action: Action::Claim,
    };
    (Some(ticket.to_owned()), serde_json::to_vec(&command).unwrap())
}

async fn events(harness: &Harness, at_least: i64) -> Vec<Event> {
    let messages = harness.read(&harness.topics.events, at_least).await;
    messages.iter().map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap()).collect()
}

/// A running franz (akte and the desk) with a staff member, and an HTTP client for its API.
struct Desk {
    running: Started,
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Desk {
    async fn start(config: &Config) -> Desk {
        let running = Started::start(config).await;
        let url = format!("http://{}", running.desk.expect("the desk runs"));
        let staff = franz::people::Staff::open(&config.data_dir.join("desk")).unwrap();
        let (token, _) = staff.add("ana").unwrap();
        Desk { running, url, token, http: reqwest::Client::new() }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}{path}", self.url)).bearer_auth(&self.token).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn send(&self, id: &str, body: Value) -> (u16, Value) {
        let url = format!("{}/api/tickets/{id}/commands", self.url);
        let response = self.http.post(url).bearer_auth(&self.token).json(&body).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn stop(self) {
        self.running.stop().await.expect("franz stops cleanly");
    }
}

async fn wait_for_ticket(desk: &Desk, id: &str) {
    wait_until(&format!("ticket {id} in the store"), || async {
        desk.get(&format!("/api/tickets/{id}")).await.0 == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_delivered_twice_is_created_once_and_worked_through_the_api_with_every_step_in_its_history() {
    let harness = Harness::new(3).await;
    let data = tempfile::tempdir().unwrap();
    let desk = Desk::start(&config(&harness, data.path(), &[Service::Akte, Service::Desk])).await;
    publish_tickets(&harness, &[ticket(1), ticket(1)]).await;
    wait_for_ticket(&desk, "ticket-00001").await;

    let (status, claimed) = desk.send("ticket-00001", json!({"action": "claim"})).await;
    assert_eq!((status, claimed["event"]["type"].as_str()), (200, Some("claimed")), "{claimed}");
    let ana = serde_json::json!({"source": "staff", "id": "ana", "name": "ana"});
    assert_eq!(claimed["ticket"]["assignee"], ana, "the answer shows the ticket after the change: {claimed}");
    let retry = json!({"action": "comment", "body": "we are on it", "command_id": "my-retry-1"});
    let (_, first) = desk.send("ticket-00001", retry.clone()).await;
    let (status, again) = desk.send("ticket-00001", retry).await;
    assert_eq!(status, 200);
    assert_eq!(first["event"], again["event"], "a retried command id has one effect and one event");
    let (status, refused) = desk.send("ticket-00001", json!({"action": "reopen"})).await;
    let waiting = "the ticket is waiting, not closed";
    assert_eq!((status, refused["error"].as_str()), (409, Some(waiting)), "a public reply waits on the submitter");
    let (status, closed) = desk.send("ticket-00001", json!({"action": "close", "reason": "fixed the printer"})).await;
    assert_eq!((status, closed["ticket"]["status"].as_str()), (200, Some("closed")));

    let (status, shown) = desk.get("/api/tickets/ticket-00001").await;
    assert_eq!(status, 200);
    let types: Vec<&str> = shown["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["created", "claimed", "commented", "rejected", "closed"]);
    assert_eq!(shown["ticket"]["close_reason"], "fixed the printer");
    assert_eq!(shown["events"][1]["actor"], json!({"source": "api", "name": "ana"}));
    assert_eq!(events(&harness, 5).await.len(), 5, "the duplicate ticket and the retried command wrote nothing");
    desk.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_bad_requests_unknown_tickets_and_missing_or_wrong_credentials_clearly() {
    let harness = Harness::new(1).await;
    let data = tempfile::tempdir().unwrap();
    let mut desk = Desk::start(&config(&harness, data.path(), &[Service::Akte, Service::Desk])).await;
    publish_tickets(&harness, &[ticket(1)]).await;
    wait_for_ticket(&desk, "ticket-00001").await;
    let http = desk.http.clone();
    let base = desk.url.clone();
    let url = |path: &str| format!("{base}{path}");

    let none = http.get(url("/api/tickets")).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let wrong = http.get(url("/api/tickets")).bearer_auth("franz_guess").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let before = harness.count(&harness.topics.commands).await;
    let unsigned = http.post(url("/api/tickets/ticket-00001/commands")).json(&json!({"action": "claim"})).send().await;
    assert_eq!(unsigned.unwrap().status(), 401);
    franz::people::Staff::open(&data.path().join("desk")).unwrap().remove("ana").unwrap();
    let (status, body) = desk.send("ticket-00001", json!({"action": "claim"})).await;
    assert_eq!(status, 401, "a removed member's token stops working: {body}");
    assert_eq!(harness.count(&harness.topics.commands).await, before, "nothing was sent for a refused caller");
    let staff = franz::people::Staff::open(&data.path().join("desk")).unwrap();
    desk.token = staff.add("bo").unwrap().0;

    let (status, body) = desk.get("/api/tickets/no-such-ticket").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("there is no ticket no-such-ticket")));
    let (status, _) = desk.send("no-such-ticket", json!({"action": "claim"})).await;
    assert_eq!(status, 404);
    let (status, body) = desk.get("/api/nothing-here").await;
    assert_eq!(status, 404, "{body}");
    for (bad, says) in [
        (json!({"action": "fly"}), "unknown variant"),
        (json!({"action": "assign"}), "missing field `to`"),
        (json!({"action": "create", "ticket": ticket(2)}), "created from the intake"),
        (json!({"action": "claim", "command_id": "x".repeat(65)}), "command_id has 1 to 64"),
    ] {
        let (status, body) = desk.send("ticket-00001", bad).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap().contains(says), "{body}");
    }
    let raw = http
        .post(url("/api/tickets/ticket-00001/commands"))
        .bearer_auth(&desk.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let huge = json!({"action": "comment", "body": "x".repeat(100_000)});
    let (status, _) = desk.send("ticket-00001", huge).await;
    assert_eq!(status, 413, "bodies are capped");
    let (status, body) = desk.send("ticket-00001", json!({"action": "comment", "body": "x".repeat(4001)})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("a comment has at most 4000 characters (this one has 4001)"))
    );
    for query in ["status=bogus", "limit=0", "limit=201", "cursor=abc", "colour=red"] {
        let (status, body) = desk.get(&format!("/api/tickets?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
    }
    let (status, stats) = desk.get("/api/stats").await;
    assert_eq!((status, stats["open"].as_u64()), (200, Some(1)));
    let (status, me) = desk.get("/api/me").await;
    assert_eq!((status, me["name"].as_str()), (200, Some("bo")));
    desk.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_akte_processes_give_each_of_200_conflicting_claims_one_winner_and_lose_nothing() {
    let harness = Harness::new(3).await;
    let dir = scratch();
    let data = |name: &str| dir.path().join(name).display().to_string();
    let (data_a, data_b) = (data("a"), data("b"));
    let a = Up::start(dir.path(), "a", &harness, &["--only", "akte", "--data-dir", &data_a]);
    let b = Up::start(dir.path(), "b", &harness, &["--only", "akte", "--data-dir", &data_b]);
    wait_until("both akte processes to own command partitions", || async {
        let owns = |up: &Up| {
            up.log().lines().rev().find(|l| l.contains("ticket-commands") || l.contains("commands-")).is_some()
        };
        owns(&a) && owns(&b)
    })
    .await;
    let tickets: Vec<Ticket> = (0..20).map(ticket).collect();
    publish_tickets(&harness, &tickets).await;
    events(&harness, 20).await;
    // Ten people claim each ticket at once: 200 claims, interleaved across tickets.
    let claims: Vec<(Option<String>, Vec<u8>)> =
        (0..10).flat_map(|n| tickets.iter().map(move |t| claim(&t.id, &format!("staff{n}"), n))).collect();
    publish_raw(&harness, &claims).await;
    let all = events(&harness, 220).await;
    let mut per_ticket: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for event in &all {
        per_ticket.entry(event.ticket_id.as_str()).or_default().push(event.change.name());
    }
    for (ticket, types) in &per_ticket {
        let count = |name: &str| types.iter().filter(|t| **t == name).count();
        assert_eq!((count("created"), count("claimed"), count("rejected")), (1, 1, 9), "{ticket}: {types:?}");
    }
    assert_eq!(per_ticket.len(), 20);
    let caused: HashSet<&str> = all.iter().map(|e| e.caused_by.as_str()).collect();
    assert_eq!(caused.len(), all.len(), "one event per command");
    let (log_a, log_b) = (a.terminate(), b.terminate());
    assert!(log_a.contains("franz stopped cleanly") && log_b.contains("franz stopped cleanly"));
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_a_foreign_partitioner_misplaced_are_forwarded_to_their_tickets_single_writer() {
    let harness = Harness::new(3).await;
    let data = tempfile::tempdir().unwrap();
    let desk = Desk::start(&config(&harness, data.path(), &[Service::Akte, Service::Desk])).await;
    publish_tickets(&harness, &[ticket(7)]).await;
    wait_for_ticket(&desk, "ticket-00007").await;
    let home = franz::kafka::tickets::ticket_partition("ticket-00007", 3);
    let producer = franz::kafka::producer(&harness.bootstrap).unwrap();
    for partition in (0..3).filter(|p| *p != home) {
        let (key, payload) = claim("ticket-00007", &format!("p{partition}"), partition as usize);
        let record = FutureRecord::to(&harness.topics.commands)
            .key(key.as_deref().unwrap())
            .payload(&payload)
            .partition(partition);
        producer.send(record, Duration::from_secs(10)).await.unwrap();
    }
    let all = events(&harness, 3).await;
    let names: Vec<&str> = all.iter().map(|e| e.change.name()).collect();
    assert_eq!(names.iter().filter(|n| **n == "claimed").count(), 1, "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "rejected").count(), 1, "{names:?}");
    desk.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_commands_become_rejections_or_dead_letters_and_the_partition_goes_on() {
    let harness = Harness::new(1).await;
    let data = tempfile::tempdir().unwrap();
    let desk = Desk::start(&config(&harness, data.path(), &[Service::Akte, Service::Desk])).await;
    publish_tickets(&harness, &[ticket(1)]).await;
    wait_for_ticket(&desk, "ticket-00001").await;
    let key = Some("ticket-00001".to_owned());
    let command = |action: Value| {
        let mut c = json!({"command_id": uuid::Uuid::new_v4().to_string(), "ticket_id": "ticket-00001",
            "actor": {"source": "cli", "name": "x"}});
        c.as_object_mut().unwrap().extend(action.as_object().unwrap().clone());
        serde_json::to_vec(&c).unwrap()
    };
    let bad = vec![
        (key.clone(), b"not json at all".to_vec()),
        (key.clone(), command(json!({"action": "teleport"}))),
        (key.clone(), command(json!({"action": "assign"}))),
        (key.clone(), command(json!({"action": "comment", "body": "y".repeat(900_000)}))),
        (key.clone(), serde_json::to_vec(&json!({"command_id": "c", "ticket_id": "other", "actor": {"source": "cli", "name": "x"}, "action": "claim"})).unwrap()),
        (None, command(json!({"action": "claim"}))),
        (key.clone(), command(json!({"action": "claim"}))),
    ];
    publish_raw(&harness, &bad).await;
    let all = events(&harness, 7).await;
    let names: Vec<&str> = all.iter().map(|e| e.change.name()).collect();
    assert_eq!(names, ["created", "rejected", "rejected", "rejected", "rejected", "rejected", "claimed"]);
    let sizes: Vec<usize> = all.iter().map(|e| serde_json::to_vec(e).unwrap().len()).collect();
    assert!(sizes.iter().all(|s| *s < 2_000), "a rejection does not echo a huge value: {sizes:?}");
    let letters = harness.read_json(&harness.topics.dead_letters, 1).await;
    assert!(letters[0]["error"].as_str().unwrap().contains("key must be its ticket id"), "{letters:?}");
    assert_eq!(letters[0]["source"]["topic"], harness.topics.commands.as_str());
    desk.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn akte_killed_mid_stream_and_restarted_applies_every_command_exactly_once() {
    let harness = Harness::new(3).await;
    let dir = scratch();
    let data = dir.path().join("data").display().to_string();
    let args = ["--only", "akte", "--data-dir", &data];
    let first = Up::start(dir.path(), "first", &harness, &args);
    let tickets: Vec<Ticket> = (0..50).map(ticket).collect();
    publish_tickets(&harness, &tickets).await;
    // Comments on a ticket akte has not created yet are refused (its create command comes from akte's own intake
    // loop, which may start after the deciding one): the crash this test is about is in the middle of comments.
    wait_until("the 50 tickets created", || async { harness.count(&harness.topics.events).await >= 50 }).await;
    let comments: Vec<(Option<String>, Vec<u8>)> = (0..20)
        .flat_map(|n| {
            tickets.iter().map(move |t| {
                let command = Command {
                    command_id: format!("comment-{}-{n}", t.id),
                    ticket_id: t.id.clone(),
                    actor: Actor::staff(ActorSource::Cli, "ana"),
                    action: Action::Comment { body: format!("note {n}"), internal: true, via: None },
                };
                (Some(t.id.clone()), serde_json::to_vec(&command).unwrap())
            })
        })
        .collect();
    let sending = publish_raw(&harness, &comments);
    let killing = async {
        wait_until("akte to be half-way", || async { harness.count(&harness.topics.events).await >= 300 }).await;
        first.kill();
    };
    tokio::join!(sending, killing);
    let second = Up::start(dir.path(), "second", &harness, &args);
    let all = events(&harness, 1050).await;
    let mut by_command: HashMap<&str, usize> = HashMap::new();
    for event in &all {
        *by_command.entry(&event.caused_by).or_default() += 1;
    }
    assert_eq!(by_command.len(), 1050, "every command answered");
    assert!(by_command.values().all(|n| *n == 1), "no command answered twice");
    let versions: BTreeMap<&str, Vec<u64>> = all.iter().fold(BTreeMap::new(), |mut m, e| {
        m.entry(e.ticket_id.as_str()).or_insert_with(Vec::new).extend(e.version);
        m
    });
    let gapless: Vec<u64> = (1..=21).collect();
    let rejected: Vec<&str> = all.iter().filter(|e| e.version.is_none()).map(|e| e.caused_by.as_str()).collect();
    assert!(rejected.is_empty(), "no command refused: {rejected:?}");
    let broken: Vec<_> = versions.iter().filter(|(_, v)| **v != gapless).collect();
    assert!(broken.is_empty(), "gapless versions per ticket; not so for {broken:?}");
    second.terminate();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_store_rebuilds_itself_to_the_same_rows_and_pages_through_ten_thousand_tickets() {
    let harness = Harness::new(3).await;
    let data = tempfile::tempdir().unwrap();
    let config = config(&harness, data.path(), &[Service::Akte, Service::Desk]);
    let desk = Desk::start(&config).await;
    let tickets: Vec<Ticket> = (0..10_000).map(ticket).collect();
    publish_tickets(&harness, &tickets).await;
    for n in [3, 5_000, 9_999] {
        wait_for_ticket(&desk, &ticket(n).id).await;
    }
    wait_until("all 10,000 tickets in the store", || async { desk.get("/api/stats").await.1["open"] == 10_000 }).await;
    let id = ticket(42).id;
    desk.send(&id, json!({"action": "claim"})).await;
    desk.send(&id, json!({"action": "add_label", "label": "printer"})).await;

    let (before, count) = pages(&desk).await;
    assert_eq!((before.len(), count), (10_000, 50));
    let ids: HashSet<&str> = before.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 10_000, "no ticket twice");
    desk.stop().await;

    let store = data.path().join("store/tickets.sqlite");
    assert!(store.exists(), "the store lives in the data dir");
    for file in ["tickets.sqlite", "tickets.sqlite-wal", "tickets.sqlite-shm"] {
        let _ = std::fs::remove_file(data.path().join("store").join(file));
    }
    let desk = Desk::start(&config).await;
    wait_until("the rebuilt store to hold every ticket", || async { desk.get("/api/stats").await.1["open"] == 9_999 })
        .await;
    let (after, _) = pages(&desk).await;
    let key = |t: &Value| t["id"].as_str().unwrap().to_owned();
    let (mut before, mut after) = (before, after);
    before.sort_by_key(key);
    after.sort_by_key(key);
    assert_eq!(before, after, "the rebuilt rows equal the rows before");
    let (_, labelled) = desk.get("/api/tickets?label=printer").await;
    assert_eq!(labelled["tickets"][0]["id"], id.as_str());
    desk.stop().await;
}

/// Every ticket, following the cursor 200 at a time; and how many pages that took.
async fn pages(desk: &Desk) -> (Vec<Value>, usize) {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut count = 0;
    loop {
        let after = cursor.as_ref().map_or(String::new(), |c| format!("&cursor={c}"));
        let (status, page) = desk.get(&format!("/api/tickets?limit=200{after}")).await;
        assert_eq!(status, 200, "{page}");
        count += 1;
        seen.extend(page["tickets"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (seen, count),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_id_used_on_another_ticket_does_not_suppress_a_creation() {
    let harness = Harness::new(1).await;
    let data = tempfile::tempdir().unwrap();
    let desk = Desk::start(&config(&harness, data.path(), &[Service::Akte, Service::Desk])).await;
    publish_tickets(&harness, &[ticket(1)]).await;
    wait_for_ticket(&desk, "ticket-00001").await;
    // The create command id of a ticket still to come is predictable; used on another ticket it is another command.
    let squatted = franz::schema::lifecycle::create_command_id("ticket-00002");
    let (status, _) =
        desk.send("ticket-00001", json!({"action": "comment", "body": "innocent", "command_id": squatted})).await;
    assert_eq!(status, 200);
    publish_tickets(&harness, &[ticket(2)]).await;
    wait_for_ticket(&desk, "ticket-00002").await;
    desk.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reusing_a_command_id_for_a_different_command_is_refused_and_a_true_retry_gets_the_first_answer() {
    let harness = Harness::new(1).await;
    let data = tempfile::tempdir().unwrap();
    let mut desk = Desk::start(&config(&harness, data.path(), &[Service::Akte, Service::Desk])).await;
    publish_tickets(&harness, &[ticket(1)]).await;
    wait_for_ticket(&desk, "ticket-00001").await;
    let (status, first) = desk.send("ticket-00001", json!({"action": "claim", "command_id": "c-1"})).await;
    assert_eq!(status, 200);
    let (status, retry) = desk.send("ticket-00001", json!({"action": "claim", "command_id": "c-1"})).await;
    assert_eq!((status, &retry["event"]), (200, &first["event"]));
    let (status, other) =
        desk.send("ticket-00001", json!({"action": "close", "reason": "x", "command_id": "c-1"})).await;
    assert_eq!(status, 409, "{other}");
    assert!(other["error"].as_str().unwrap().contains("was used for another command"), "{other}");
    desk.token = franz::people::Staff::open(&data.path().join("desk")).unwrap().add("bo").unwrap().0;
    let (status, _) = desk.send("ticket-00001", json!({"action": "claim", "command_id": "c-1"})).await;
    assert_eq!(status, 409, "someone else's command id is not theirs to retry");
    let (_, shown) = desk.get("/api/tickets/ticket-00001").await;
    assert_eq!(shown["ticket"]["status"], "claimed", "nothing was closed");
    desk.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_ticket_becomes_a_dead_letter_and_akte_goes_on() {
    let harness = Harness::new(1).await;
    let data = tempfile::tempdir().unwrap();
    let desk = Desk::start(&config(&harness, data.path(), &[Service::Akte, Service::Desk])).await;
    let mut big = ticket(1);
    big.body = "B".repeat(900_000);
    publish_tickets(&harness, &[big, ticket(2)]).await;
    wait_for_ticket(&desk, "ticket-00002").await;
    let letters = harness.read_json(&harness.topics.dead_letters, 1).await;
    assert!(letters[0]["error"].as_str().unwrap().contains("more than the 65536 a ticket may have"), "{letters:?}");
    let (status, _) = desk.get("/api/tickets/ticket-00001").await;
    assert_eq!(status, 404);
    desk.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_half_sent_connections_are_closed_and_connections_over_the_cap_are_refused() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let harness = Harness::new(1).await;
    let data = tempfile::tempdir().unwrap();
    let desk = Desk::start(&config(&harness, data.path(), &[Service::Akte, Service::Desk])).await;
    let address = desk.url.trim_start_matches("http://").to_owned();
    let closed_within = |mut stream: tokio::net::TcpStream, limit: Duration| async move {
        let mut buffer = [0u8; 1024];
        let started = std::time::Instant::now();
        loop {
            match tokio::time::timeout(limit, stream.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
                Ok(Ok(_)) => continue,
                Err(_) => return None,
            }
        }
    };
    let mut half = tokio::net::TcpStream::connect(&address).await.unwrap();
    half.write_all(b"GET /api/me HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let idle = tokio::net::TcpStream::connect(&address).await.unwrap();
    let limit = franz::desk::HEAD_TIMEOUT + Duration::from_secs(5);
    let (half, idle) = tokio::join!(closed_within(half, limit), closed_within(idle, limit));
    assert!(half.is_some() && idle.is_some(), "half-sent {half:?}, idle {idle:?}");

    let mut held = Vec::new();
    for _ in 0..franz::desk::MAX_CONNECTIONS {
        held.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    let extra = tokio::net::TcpStream::connect(&address).await.unwrap();
    assert!(closed_within(extra, Duration::from_secs(5)).await.is_some(), "a connection over the cap is closed");
    franz::kafka::admin::metadata(&harness.bootstrap, None, Duration::from_secs(5)).await.expect("the broker answers");
    drop(held);
    wait_until("the desk to answer again", || async {
        desk.http
            .get(format!("{}/api/me", desk.url))
            .bearer_auth(&desk.token)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let lower = desk.http.get(format!("{}/api/me", desk.url)).header("authorization", format!("bearer {}", desk.token));
    assert_eq!(lower.send().await.unwrap().status(), 200, "the scheme is case-insensitive");
    let wrong_method = desk.http.delete(format!("{}/api/me", desk.url)).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    let body: Value = wrong_method.json().await.expect("even a 405 is JSON");
    assert!(body["error"].is_string());
    desk.stop().await;
}

/// `n` tickets straight onto the events topic, as akte would have decided their creation, each holding the word
/// "printer" (so one search matches them all).
async fn fill_events(harness: &Harness, n: usize) {
    use futures::StreamExt as _;
    let producer: rdkafka::producer::FutureProducer = franz::kafka::client_config(&harness.bootstrap)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .unwrap();
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..n {
        let ticket = Ticket { body: format!("printer number {i} is out of paper"), ..ticket(i) };
        let id = ticket.id.clone();
        let event =
            franz::lifecycle::decide(None, &Command::create(ticket), "2026-02-24T08:32:24.000Z", &Default::default());
        let payload = serde_json::to_vec(&event).unwrap();
        loop {
            match producer.send_result(FutureRecord::to(&harness.topics.events).key(&id).payload(&payload)) {
                Ok(delivery) => break pending.push(delivery),
                Err(_) => {
                    pending.next().await;
                }
            }
        }
    }
    while let Some(delivery) = pending.next().await {
        delivery.unwrap().unwrap();
    }
}

/// Regression (#33): the store's eight readers were shared by the desk's searches and akte, waited for 30 s and had
/// no time limit per query, so one person's searches over a large store kept commands from being answered (408 after
/// 30 s) and could stop akte and franz. Now searches have readers of their own, a time limit and at most two at once
/// per person, commands' lookups have theirs, and akte has a connection of its own.
#[tokio::test(flavor = "multi_thread")]
async fn searches_that_fill_every_reader_keep_neither_akte_nor_a_claim_waiting() {
    const TICKETS: usize = 200_000;
    let harness = Harness::new(1).await;
    fill_events(&harness, TICKETS).await;
    let data = scratch();
    let desk = Desk::start(&config(&harness, data.path(), &[Service::Akte, Service::Desk])).await;
    let store = desk.running.store.clone().expect("the store is open");
    let applied = |p: &franz::store::Progress| p.next.get(&0).copied().unwrap_or(0) >= TICKETS as i64;
    assert!(store.wait_for(Duration::from_secs(300), applied).await, "the store applied {TICKETS} tickets");
    let staff = franz::people::Staff::open(&data.path().join("desk")).unwrap();
    let searchers: Vec<String> = (0..5).map(|i| staff.add(&format!("searcher{i}")).unwrap().0).collect();
    // akte joins its group and catches up with its partition on the first command, before any search runs.
    let (status, body) = desk.send("ticket-00001", json!({"action": "claim"})).await;
    assert_eq!(status, 200, "{body}");

    // Three searches at a time from each of five people, each matching every ticket, until the claim is answered.
    let stop = tokio_util::sync::CancellationToken::new();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut load = tokio::task::JoinSet::new();
    for token in &searchers {
        for _ in 0..3 {
            let (http, url, token, stop) = (desk.http.clone(), desk.url.clone(), token.clone(), stop.clone());
            let answered = answered.clone();
            load.spawn(async move {
                let mut statuses = Vec::new();
                while !stop.is_cancelled() {
                    let search = http.get(format!("{url}/api/tickets?q=printer")).bearer_auth(&token).send();
                    statuses.push(search.await.map_or(0, |r| r.status().as_u16()));
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                statuses
            });
        }
    }
    // The claim goes in once the searches have been running for a while, each person's first two holding readers.
    wait_until("30 searches answered", || async { answered.load(std::sync::atomic::Ordering::Relaxed) >= 30 }).await;
    let started = std::time::Instant::now();
    let (status, body) = desk.send("ticket-00007", json!({"action": "claim"})).await;
    let took = started.elapsed();
    stop.cancel();
    let statuses: Vec<u16> = load.join_all().await.into_iter().flatten().collect();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ticket"]["assignee"]["name"], "ana", "{body}");
    assert!(took < Duration::from_secs(5), "the claim took {took:?} while the searches ran");
    assert!(statuses.contains(&429), "a third search of one person is refused: {statuses:?}");
    assert!(statuses.iter().all(|s| [200, 429, 503].contains(s)), "{statuses:?}");
    let (ready, reasons) = desk.get("/readyz").await;
    assert_eq!(ready, 200, "franz keeps running: {reasons}");
    let count = |status: u16| statuses.iter().filter(|s| **s == status).count();
    eprintln!("claim answered in {took:?}; searches: {} 200, {} 429, {} 503", count(200), count(429), count(503));
    desk.running.stop().await.unwrap();
}

/// Regression (#33 attack): with the broker gone, a command waited for librdkafka's delivery timeout, and the desk's
/// 30 s request timeout answered a bodiless 408; the README promises 504 within 10 s, with the command id to retry.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_the_broker_cannot_take_is_answered_504_with_its_command_id_within_the_answer_timeout() {
    let harness = Harness::new(1).await;
    publish_tickets(&harness, &[ticket(1)]).await;
    let data = scratch();
    let desk = Desk::start(&config(&harness, data.path(), &[Service::Akte, Service::Desk])).await;
    wait_until("the ticket", || async { desk.get("/api/tickets/ticket-00001").await.0 == 200 }).await;
    let (_harness, (status, body, took)) = harness
        .with_broker_down(async {
            let started = std::time::Instant::now();
            let (status, body) = desk.send("ticket-00001", json!({"action": "claim", "command_id": "k1"})).await;
            (status, body, started.elapsed())
        })
        .await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["command_id"], "k1", "{body}");
    assert!(body["error"].as_str().unwrap().contains("the broker has not taken the command"), "{body}");
    assert!(took < Duration::from_secs(20), "answered after {took:?}");
    desk.running.stop().await.unwrap();
}

/// `created` events for tickets `numbers` straight onto `harness`'s events topic, as akte would have decided them.
async fn created_events(harness: &Harness, numbers: std::ops::Range<usize>) {
    let producer = franz::kafka::producer(&harness.bootstrap).unwrap();
    for n in numbers {
        let ticket = ticket(n);
        let event = franz::lifecycle::decide(
            None,
            &Command::create(ticket.clone()),
            "2026-02-24T08:32:24.000Z",
            &Default::default(),
        );
        let payload = serde_json::to_vec(&event).unwrap();
        let record = FutureRecord::to(&harness.topics.events).key(&ticket.id).payload(&payload);
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    }
}

/// The ids of every ticket in the store of a started franz, once it has caught up with its topic.
async fn stored_ids(running: &Started) -> BTreeSet<String> {
    let store = running.store.clone().expect("the store is open");
    assert!(store.wait_for(crate::util::PATIENCE, |p| p.caught_up).await, "the store catches up with its topic");
    let conn = store.reader().unwrap();
    let filter = franz::store::query::Filter { limit: Some(franz::store::query::PAGE_MAX), ..Default::default() };
    let page = franz::store::query::list(&conn, &filter).unwrap();
    assert!(page.next_cursor.is_none(), "every ticket fits one page");
    page.tickets.into_iter().map(|t| t.id).collect()
}

/// Regression (#33): the store remembered its topic by name only. A data dir used with one cluster and then with
/// another whose topic of the same name is longer kept the first cluster's tickets and skipped the other's first
/// events (5 tickets that do not exist there shown, and 35 of its 40). The store now remembers the cluster id and
/// the topic id, and a store of another cluster is rebuilt.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_built_on_one_cluster_is_rebuilt_when_franz_points_at_another_with_the_same_topic_names() {
    let first = Harness::new(3).await;
    let mut second = Harness::new(3).await;
    second.topics = first.topics.clone();
    let kept = second.topics.kept_forever();
    franz::kafka::admin::ensure_topics_keeping(&second.bootstrap, &second.topics.all(), 3, 1, &kept).await.unwrap();
    created_events(&first, 0..5).await;
    created_events(&second, 100..140).await;
    let data = tempfile::tempdir().unwrap();

    let running = Started::start(&config(&first, data.path(), &[Service::Desk])).await;
    let old: BTreeSet<String> = (0..5).map(|n| ticket(n).id).collect();
    assert_eq!(stored_ids(&running).await, old, "the first cluster's tickets");
    running.stop().await.unwrap();

    let running = Started::start(&config(&second, data.path(), &[Service::Desk])).await;
    let new: BTreeSet<String> = (100..140).map(|n| ticket(n).id).collect();
    assert_eq!(stored_ids(&running).await, new, "exactly the second cluster's tickets, none of the first's");
    running.stop().await.unwrap();
}
