//! `cargo xtask bench deadlines`: akte's service-level scheduler with a million tickets.
//!
//! A `franz broker` process holds `ticket-events` with 1,000,000 tickets decided under a one-hour first response
//! target (`normal 1h, low 720h`): 900,000 closed, 90,000 open and low priority (due weeks from now), and 10,000 open
//! whose first response falls due within one minute. `franz up --only akte` builds its ticket store from them on a
//! clock (a `FRANZ_TEST_CLOCK` file) two hours before that minute, where nothing is due, and stops. Then it starts
//! again on the clock a second after that minute, as a franz that was down while the deadlines came, and the bench
//! reports: the time from the start to the first decision and until all 20,000 (each of the 10,000 tickets is due
//! soon and missed: two points), the decisions beyond those (none expected), the process's peak RSS, and the
//! scheduler's look itself (`store::query::due` on the built store, the first 1,000 due of 10,000).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use franz::clock::{Clock, TEST_CLOCK};
use franz::lifecycle::calendar::Calendar;
use franz::lifecycle::levels::{Levels, Target};
use franz::lifecycle::{self, Policy, TicketState};
use franz::schema::Ticket;
use franz::schema::lifecycle::{Action, Actor, ActorSource, Command as TicketCommand, Priority};

/// A debug build of a bench is its smoke run (`cargo test --benches`): the same phases on small sizes.
const SMOKE: bool = cfg!(debug_assertions);
const TICKETS: usize = if SMOKE { 30_000 } else { 1_000_000 };
const OPEN: usize = TICKETS / 10;
const DUE: usize = OPEN / 10;
const PARTITIONS: i32 = 3;
const PATIENCE: Duration = Duration::from_secs(if SMOKE { 300 } else { 1800 });

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn franz(args: &[&str], data: &Path, clock: &Path, stderr: Stdio) -> anyhow::Result<Child> {
    Ok(Command::new(env!("CARGO_BIN_EXE_franz"))
        .args(args)
        .env("FRANZ_DATA_DIR", data)
        .env("FRANZ_CONFIG", data.join("franz.toml"))
        .env("FRANZ_LOG", "info")
        .env(TEST_CLOCK, clock)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()?)
}

fn policy() -> Policy {
    let hour = Duration::from_secs(3600);
    let targets =
        [((Target::FirstResponse, Priority::Normal), hour), ((Target::FirstResponse, Priority::Low), 720 * hour)];
    let levels = Levels {
        teams: Default::default(),
        calendar: Calendar::always(),
        warn_percent: 80,
        targets: targets.into_iter().collect(),
        remind_before: Duration::ZERO,
    };
    Policy { levels: Some(Arc::new(levels)), ..Policy::default() }
}

fn stamp(at: DateTime<Utc>) -> String {
    franz::lifecycle::levels::stamp(at)
}

/// Ticket `n`'s events, as akte decides them; `minute` is when the 10,000 fall due.
fn history(n: usize, minute: DateTime<Utc>, policy: &Policy, rng: &mut fastrand::Rng) -> Vec<Vec<u8>> {
    let created = if n < DUE {
        // Due one hour after creation: spread over the minute.
        minute - chrono::Duration::hours(1) + chrono::Duration::milliseconds((n * 60_000 / DUE) as i64)
    } else if n < OPEN {
        // Low priority, due in 30 days: due soon (24 days) well after the minute.
        minute - chrono::Duration::minutes(rng.i64(60..10 * 24 * 60))
    } else {
        minute - chrono::Duration::minutes(rng.i64(60..30 * 24 * 60))
    };
    let ticket = Ticket {
        id: format!("bench-{n:07}"),
        contact: format!("user{}", rng.usize(0..50_000)),
        origin: "Discord".into(),
        body: format!("ticket {n} needs an answer"),
        date: stamp(created),
        ..Ticket::default()
    };
    let actor = Actor::staff(ActorSource::Web, &format!("staff{}", rng.usize(0..20)));
    let mut commands = vec![(TicketCommand::create(ticket.clone()), created)];
    let then = |action| TicketCommand { command_id: format!("{n}-2"), ticket_id: ticket.id.clone(), actor, action };
    if n >= OPEN {
        commands.push((then(Action::Close { reason: "fixed".into() }), created + chrono::Duration::minutes(30)));
    } else if n >= DUE {
        commands.push((then(Action::SetPriority { priority: Priority::Low }), created + chrono::Duration::seconds(5)));
    }
    let mut state: Option<TicketState> = None;
    commands
        .iter()
        .map(|(command, at)| {
            let event = lifecycle::decide(state.as_ref(), command, &stamp(*at), policy);
            state = lifecycle::apply(state.take(), &event);
            serde_json::to_vec(&event).unwrap()
        })
        .collect()
}

async fn fill(bootstrap: &str, topic: &str, minute: DateTime<Utc>) -> anyhow::Result<Duration> {
    let mut writer = common::Writer::new(bootstrap)?;
    let started = Instant::now();
    let (policy, mut rng) = (policy(), fastrand::Rng::with_seed(7));
    for n in 0..TICKETS {
        let key = format!("bench-{n:07}");
        let partition = franz::kafka::tickets::ticket_partition(&key, PARTITIONS);
        for payload in history(n, minute, &policy, &mut rng) {
            writer.send(topic, &key, &payload, partition).await;
        }
        if n % 250_000 == 249_999 {
            eprintln!("  written {} tickets", n + 1);
        }
    }
    writer.finish().await?;
    Ok(started.elapsed())
}

/// The events on `topic` now.
async fn events(bootstrap: &str, topic: &str) -> anyhow::Result<i64> {
    let topics = franz::kafka::admin::describe(bootstrap, Duration::from_secs(10)).await?;
    Ok(topics.iter().find(|t| t.name == topic).map_or(0, |t| t.end_offsets.iter().sum()))
}

/// Waits for `line` in the log at `path`, failing if the process ends first.
async fn wait_for_line(process: &mut Child, path: &Path, line: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(line) {
            return Ok(());
        }
        if let Some(status) = process.try_wait()? {
            anyhow::bail!("franz up ended ({status}) before {line:?}:\n{log}");
        }
        anyhow::ensure!(started.elapsed() < PATIENCE, "no {line:?} in time:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stop(mut process: Child) -> anyhow::Result<()> {
    Command::new("kill").args(["-TERM", &process.id().to_string()]).status()?;
    process.wait()?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if SMOKE {
        eprintln!("smoke run (a debug build): every phase on small sizes; its figures mean nothing");
    }
    let scratch = tempfile::tempdir()?;
    let (broker_dir, akte_dir) = (scratch.path().join("broker"), scratch.path().join("akte"));
    for dir in [&broker_dir, &akte_dir] {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(broker_dir.join("franz.toml"), "")?;
    std::fs::write(akte_dir.join("franz.toml"), "[service_levels]\nfirst_response = \"normal 1h, low 720h\"\n")?;
    let clock = scratch.path().join("clock");
    // The minute the 10,000 fall due: a whole minute, an hour from now.
    let minute = DateTime::from_timestamp(Utc::now().timestamp() / 60 * 60 + 3600, 0).unwrap();
    Clock::write(&clock, minute - chrono::Duration::hours(2))?;
    let bootstrap = format!("127.0.0.1:{}", free_port());
    let mut broker = franz(
        &["broker", "--listen", &bootstrap, "--data-dir", &broker_dir.display().to_string()],
        &broker_dir,
        &clock,
        Stdio::null(),
    )?;
    common::broker_ready(&mut broker)?;
    let topics = franz::config::Topics::default();
    franz::kafka::admin::ensure_topics_keeping(&bootstrap, &topics.all(), PARTITIONS, 1, &topics.kept_forever())
        .await?;
    eprintln!("writing {TICKETS} tickets ({OPEN} open, {DUE} due within one minute) to {}", topics.events);
    let filled = fill(&bootstrap, &topics.events, minute).await?;
    let written = events(&bootstrap, &topics.events).await?;
    eprintln!("  {written} events written in {:.1} s", filled.as_secs_f64());

    // The store is built on a clock where nothing is due yet.
    let akte = ["up", "--bootstrap", &bootstrap, "--only", "akte"];
    let first_log = scratch.path().join("first.log");
    let started = Instant::now();
    let mut first = franz(&akte, &akte_dir, &clock, Stdio::from(std::fs::File::create(&first_log)?))?;
    wait_for_line(&mut first, &first_log, "ticket store: caught up").await?;
    let built = started.elapsed();
    let early = events(&bootstrap, &topics.events).await? - written;
    stop(first)?;

    // The scheduler's look on the built store, at the time of the restart: its 1,000 a look, and all that are due.
    let after = stamp(minute + chrono::Duration::seconds(61));
    let store = rusqlite::Connection::open(akte_dir.join("store/tickets.sqlite"))?;
    if early > 0 {
        let mut kinds = store.prepare("SELECT type, count(*), min(at), max(at) FROM events GROUP BY type")?;
        let kinds: Vec<(String, i64, String, String)> = kinds
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
            .collect::<Result<_, _>>()?;
        anyhow::bail!("{early} events decided before the minute: {kinds:?}");
    }
    let looked = Instant::now();
    let one_look = franz::store::query::due(&store, &after, 1000)?.len();
    let look = looked.elapsed();
    let looked = Instant::now();
    let all_due = franz::store::query::due(&store, &after, TICKETS)?.len();
    let look_all = looked.elapsed();
    anyhow::ensure!(all_due == DUE, "{all_due} tickets due, not {DUE}");
    drop(store);

    // franz comes back a second after the minute: every one of the 10,000 is due soon and missed.
    Clock::write(&clock, minute + chrono::Duration::seconds(61))?;
    let second_log = scratch.path().join("second.log");
    let started = Instant::now();
    let mut second = franz(&akte, &akte_dir, &clock, Stdio::from(std::fs::File::create(&second_log)?))?;
    let expected = written + 2 * DUE as i64;
    let mut first_decision = None;
    loop {
        let now = events(&bootstrap, &topics.events).await?;
        if now > written && first_decision.is_none() {
            first_decision = Some(started.elapsed());
        }
        if now >= expected {
            break;
        }
        if let Some(status) = second.try_wait()? {
            anyhow::bail!("franz up ended ({status}):\n{}", std::fs::read_to_string(&second_log)?);
        }
        anyhow::ensure!(started.elapsed() < PATIENCE, "{} of {} decisions in time", now - written, 2 * DUE);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_decided = started.elapsed();
    // Two more looks of the scheduler: anything decided twice would show now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let beyond = events(&bootstrap, &topics.events).await? - expected;
    let rss = common::peak_rss_mib(second.id());
    stop(second)?;

    stop(broker)?;

    println!("deadlines: {TICKETS} tickets, {OPEN} open with deadlines, {DUE} falling due within one minute");
    println!("  store built from {written} events in {:.1} s", built.as_secs_f64());
    println!(
        "  restarted after the minute: first decision after {:.2} s, all {} decisions after {:.2} s; {beyond} beyond them",
        first_decision.unwrap_or_default().as_secs_f64(),
        2 * DUE,
        all_decided.as_secs_f64()
    );
    println!("  akte's peak RSS after the restart: {rss:.0} MiB");
    println!(
        "  the scheduler's look at the restart: {one_look} tickets (it takes 1,000 at most) in {:.1} ms; all {all_due} due in {:.1} ms",
        look.as_secs_f64() * 1000.0,
        look_all.as_secs_f64() * 1000.0
    );
    anyhow::ensure!(beyond == 0, "{beyond} decisions beyond the expected");
    Ok(())
}
