//! `cargo xtask bench similar`: the similar tickets of the ticket page on a store of 50,000 tickets.
//!
//! The bench builds a ticket store of 50,000 tickets straight from their events (bodies of 8 to 40 words drawn from
//! a 2,000-word vocabulary with a few frequent words, four in five closed, labelled and in teams), then asks it for
//! the closed tickets most like 1,000 random tickets (`store::query::similar`, what the ticket page, the API and
//! `franz tickets similar` run) and reports p50, p99 and the slowest, with the number found.

mod common;

use std::time::{Duration, Instant};

use franz::lifecycle;
use franz::schema::Ticket;
use franz::schema::lifecycle::{Action, Actor, ActorSource, Command};
use franz::store::{Identity, query};

/// A debug build of a bench is its smoke run (`cargo test --benches`): the same phases on small sizes.
const SMOKE: bool = cfg!(debug_assertions);
const TICKETS: usize = if SMOKE { 2_000 } else { 50_000 };
const ASKS: usize = if SMOKE { 50 } else { 1_000 };
const VOCABULARY: usize = 2_000;

fn word(rng: &mut fastrand::Rng) -> String {
    // A few words are in most tickets (as "the", "printer" or "error" are), the rest spread out.
    if rng.u8(..) < 64 { format!("common{}", rng.usize(0..10)) } else { format!("w{:04}x", rng.usize(0..VOCABULARY)) }
}

fn events(n: usize, rng: &mut fastrand::Rng) -> Vec<Vec<u8>> {
    let body: Vec<String> = (0..rng.usize(8..40)).map(|_| word(rng)).collect();
    let ticket = Ticket {
        id: format!("t{n:06}"),
        contact: format!("user{}", rng.usize(0..5_000)),
        origin: "Discord".into(),
        body: body.join(" "),
        date: "2026-12-07T10:00:00Z".into(),
        ..Ticket::default()
    };
    let actor = Actor::staff(ActorSource::Web, "ana");
    let mut commands = vec![Command::create(ticket)];
    let then = |suffix: &str, action| Command {
        command_id: format!("{n}-{suffix}"),
        ticket_id: format!("t{n:06}"),
        actor: actor.clone(),
        action,
    };
    if rng.u8(..) < 204 {
        commands.push(then("label", Action::AddLabel { label: format!("label{}", rng.usize(0..30)) }));
        let team = format!("team{}", rng.usize(0..5));
        commands.push(then("move", Action::Move { team: Some(team), reason: "bench".into() }));
        commands.push(then("close", Action::Close { reason: "fixed".into() }));
    }
    common::ticket_events(&commands).0
}

fn main() -> anyhow::Result<()> {
    if SMOKE {
        eprintln!("smoke run (a debug build): every phase on small sizes; its figures mean nothing");
    }
    let dir = tempfile::tempdir()?;
    let (store, mut writer) = franz::store::open(&dir.path().join("tickets.sqlite"), &Identity::named("events"))?;
    let mut rng = fastrand::Rng::with_seed(3);
    let payloads: Vec<Vec<u8>> = (0..TICKETS).flat_map(|n| events(n, &mut rng)).collect();
    let built = Instant::now();
    common::fill_store(&mut writer, &payloads)?;
    let built = built.elapsed();
    let conn = store.reader()?;
    let mut took: Vec<Duration> = Vec::with_capacity(ASKS);
    let mut found = 0;
    for _ in 0..ASKS {
        let id = format!("t{:06}", rng.usize(0..TICKETS));
        let ticket = query::ticket(&conn, &id)?.expect("every ticket is in the store");
        let started = Instant::now();
        let similar = query::similar(&conn, &ticket, lifecycle::routing::SIMILAR_SHOWN)?;
        let _ = lifecycle::routing::suggest(&ticket, &similar);
        took.push(started.elapsed());
        found += similar.len();
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(took[((q * took.len() as f64) as usize).min(took.len() - 1)]);
    println!(
        "similar tickets: {TICKETS} tickets ({} events) in a store built in {:.1} s",
        payloads.len(),
        built.as_secs_f64()
    );
    println!(
        "  {ASKS} asks: p50 {:.2} ms, p99 {:.2} ms, slowest {:.2} ms; {:.1} similar found per ask",
        at(0.5),
        at(0.99),
        ms(*took.last().unwrap()),
        found as f64 / ASKS as f64
    );
    Ok(())
}
