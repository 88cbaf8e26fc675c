//! `cargo xtask bench labels`: how often the labels the ticket page suggests are right, on a labelled set.
//!
//! The set is `fixtures/labels/banking77.jsonl`: 13,071 bank customers' questions (BANKING77, CC BY 4.0), each with
//! one or two franz labels and a team (`fixtures/labels/README.md` says how they were given). A fixed shuffle holds
//! out a fifth of them; the rest are created with their labels and team and closed, as a team's past work would be.
//! Each held-out ticket is created open and unlabelled, then asked for its similar tickets and suggestions as the
//! ticket page asks (`store::query::similar`, `lifecycle::routing::suggest`). The bench reports the suggested labels'
//! precision (the share that are among the ticket's own labels) and coverage (the share of held-out tickets given at
//! least one), at the shipped agreement ([`SIMILAR_AGREE`] of [`SIMILAR_SHOWN`]) and, counted from the same nearest
//! tickets, at every other; and the team suggestion's accuracy. It measures and changes nothing in franz.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::Context as _;
use franz::lifecycle::TicketState;
use franz::lifecycle::routing::{SIMILAR_AGREE, SIMILAR_SHOWN, suggest};
use franz::schema::Ticket;
use franz::schema::lifecycle::{Action, Actor, ActorSource, Command};
use franz::store::{Identity, query};

/// A debug build of a bench is its smoke run (`cargo test --benches`): the same phases on a part of the set.
const SMOKE: bool = cfg!(debug_assertions);
/// How many of the set's tickets the run uses (all of them, but in the smoke run).
const TICKETS: usize = if SMOKE { 1_500 } else { usize::MAX };
/// The shuffle that decides which tickets are held out: fixed, so every run measures the same split.
const SEED: u64 = 77;
/// One ticket in this many is held out.
const HELD_OUT_ONE_IN: usize = 5;
const SET: &str = "fixtures/labels/banking77.jsonl";

/// One line of the labelled set (its `intent`, BANKING77's own label, is only there for a reader).
#[derive(Debug, serde::Deserialize)]
struct Labelled {
    body: String,
    labels: BTreeSet<String>,
    team: String,
}

/// What one agreement threshold did over the held-out tickets.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Labels suggested, and how many of them the ticket really has.
    suggested: usize,
    right: usize,
    /// Held-out tickets given at least one label.
    covered: usize,
}

fn ticket(id: &str, n: usize, body: &str) -> Ticket {
    Ticket {
        id: id.to_owned(),
        contact: format!("customer{n}"),
        origin: "Discord".into(),
        body: body.to_owned(),
        date: "2026-12-07T10:00:00Z".into(),
        ..Ticket::default()
    }
}

/// A known ticket: created, labelled, moved to its team and closed, each by a person at the desk.
fn known(n: usize, labelled: &Labelled) -> anyhow::Result<Vec<Vec<u8>>> {
    let id = format!("k{n:05}");
    let then = |step: String, action| Command {
        command_id: format!("{id}-{step}"),
        ticket_id: id.clone(),
        actor: Actor::staff(ActorSource::Web, "ana"),
        action,
    };
    let mut commands = vec![Command::create(ticket(&id, n, &labelled.body))];
    for label in &labelled.labels {
        commands.push(then(format!("label-{label}"), Action::AddLabel { label: label.clone() }));
    }
    commands.push(then("move".into(), Action::Move { team: Some(labelled.team.clone()), reason: "bench".into() }));
    commands.push(then("close".into(), Action::Close { reason: "answered".into() }));
    let (events, state) = common::ticket_events(&commands);
    // A refused command would leave a known ticket without the labels the measure counts on.
    let state = state.with_context(|| format!("known ticket {id} was not created"))?;
    anyhow::ensure!(
        state.labels == labelled.labels
            && state.team.as_deref() == Some(labelled.team.as_str())
            && state.closed_at.is_some(),
        "known ticket {id} is not closed with labels {:?} in team {}: {state:?}",
        labelled.labels,
        labelled.team
    );
    Ok(events)
}

/// The labels that at least `agree` of `nearest` carry and `ticket` lacks: `suggest`'s rule at any threshold.
fn agreed(ticket: &TicketState, nearest: &[TicketState], agree: usize) -> BTreeSet<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for other in nearest {
        for label in &other.labels {
            *counts.entry(label).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .filter(|(label, count)| *count >= agree && !ticket.labels.contains(*label))
        .map(|(label, _)| label.to_owned())
        .collect()
}

fn ratio(part: usize, whole: usize) -> String {
    if whole == 0 { "-".into() } else { format!("{:.3}", part as f64 / whole as f64) }
}

fn main() -> anyhow::Result<()> {
    if SMOKE {
        eprintln!("smoke run (a debug build): every phase on part of the set; its figures mean nothing");
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(SET);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let set: Vec<Labelled> = text
        .lines()
        .enumerate()
        .map(|(i, line)| serde_json::from_str(line).with_context(|| format!("{SET}:{}", i + 1)))
        .collect::<anyhow::Result<_>>()?;
    let mut order: Vec<usize> = (0..set.len()).collect();
    fastrand::Rng::with_seed(SEED).shuffle(&mut order);
    order.truncate(TICKETS);
    let (held_out, known_ones) = order.split_at(order.len() / HELD_OUT_ONE_IN);
    anyhow::ensure!(!held_out.is_empty() && !known_ones.is_empty(), "no held-out or no known tickets in {SET}");

    let mut payloads = Vec::new();
    for &n in known_ones {
        payloads.extend(known(n, &set[n])?);
    }
    for &n in held_out {
        payloads.extend(common::ticket_events(&[Command::create(ticket(&format!("h{n:05}"), n, &set[n].body))]).0);
    }
    let dir = tempfile::tempdir()?;
    let (store, mut writer) = franz::store::open(&dir.path().join("tickets.sqlite"), &Identity::named("events"))?;
    let built = Instant::now();
    common::fill_store(&mut writer, &payloads)?;
    let built = built.elapsed();

    let conn = store.reader()?;
    let asked = Instant::now();
    let mut tallies = [Tally::default(); SIMILAR_SHOWN];
    let mut true_labels = 0;
    let (mut found, mut found_all) = (0, 0);
    let (mut teams_suggested, mut teams_right) = (0, 0);
    // At the shipped threshold, by label: held-out tickets that have it, times suggested, times rightly.
    let mut by_label: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    for &n in held_out {
        let id = format!("h{n:05}");
        let ticket = query::ticket(&conn, &id)?.with_context(|| format!("held-out ticket {id} is not in the store"))?;
        anyhow::ensure!(ticket.labels.is_empty() && ticket.closed_at.is_none(), "held-out ticket {id}: {ticket:?}");
        // What the ticket page runs (`desk::api::similar_to`).
        let similar = query::similar(&conn, &ticket, SIMILAR_SHOWN)?;
        let suggested = suggest(&ticket, &similar);

        let truth = &set[n].labels;
        true_labels += truth.len();
        found += similar.len();
        found_all += usize::from(similar.len() == SIMILAR_SHOWN);
        let nearest = &similar[..similar.len().min(SIMILAR_SHOWN)];
        for (agree, tally) in (1..=SIMILAR_SHOWN).zip(&mut tallies) {
            let labels = agreed(&ticket, nearest, agree);
            if agree == SIMILAR_AGREE {
                // The other thresholds are counted by this bench's copy of the rule: it must agree with franz's.
                let shipped: BTreeSet<String> = suggested.labels.iter().cloned().collect();
                anyhow::ensure!(labels == shipped, "{id}: suggest gave {shipped:?}, the bench's count {labels:?}");
                for label in truth {
                    by_label.entry(label.clone()).or_default()[0] += 1;
                }
                for label in &labels {
                    let counts = by_label.entry(label.clone()).or_default();
                    counts[1] += 1;
                    counts[2] += usize::from(truth.contains(label));
                }
            }
            tally.suggested += labels.len();
            tally.right += labels.iter().filter(|label| truth.contains(*label)).count();
            tally.covered += usize::from(!labels.is_empty());
        }
        if let Some(team) = &suggested.team {
            teams_suggested += 1;
            teams_right += usize::from(*team == set[n].team);
        }
    }
    let asked = asked.elapsed();
    anyhow::ensure!(found > 0, "no held-out ticket found a similar ticket: the store's search found nothing");

    let held = held_out.len();
    println!(
        "suggested labels: {} labelled tickets ({SET}), {} known (labelled, in a team, closed), {held} held out \
         (seed {SEED}); store of {} events built in {:.1} s, {held} asks in {:.1} s",
        order.len(),
        known_ones.len(),
        payloads.len(),
        built.as_secs_f64(),
        asked.as_secs_f64()
    );
    println!(
        "  {:.2} similar tickets found per held-out ticket, {found_all} of {held} with all {SIMILAR_SHOWN}; {:.2} true \
         labels per held-out ticket",
        found as f64 / held as f64,
        true_labels as f64 / held as f64
    );
    println!();
    println!("  agree    precision  coverage  recall  labels suggested");
    for (agree, tally) in (1..=SIMILAR_SHOWN).zip(&tallies) {
        println!(
            "  {agree} of {SIMILAR_SHOWN}   {:>9}  {:>8}  {:>6}  {:>16}{}",
            ratio(tally.right, tally.suggested),
            ratio(tally.covered, held),
            ratio(tally.right, true_labels),
            tally.suggested,
            if agree == SIMILAR_AGREE { "  <- shipped" } else { "" }
        );
    }
    println!(
        "  precision: suggested labels the ticket has / labels suggested; coverage: held-out tickets given a label; \
         recall: the held-out tickets' labels suggested / all their labels"
    );
    println!();
    // For scale: what suggesting the held-out tickets' most common label to every one of them would score.
    let (common, [have, ..]) =
        by_label.iter().max_by_key(|(_, [have, ..])| *have).expect("a held-out ticket has labels");
    println!("  for scale: suggesting {common:?} to every held-out ticket would have precision {}", ratio(*have, held));
    println!(
        "  team at {SIMILAR_AGREE} of {SIMILAR_SHOWN}: accuracy {} ({teams_right} of {teams_suggested} suggested), \
         coverage {}",
        ratio(teams_right, teams_suggested),
        ratio(teams_suggested, held)
    );
    println!();
    println!("  by label at {SIMILAR_AGREE} of {SIMILAR_SHOWN}: held-out tickets with it, suggested, right, precision");
    for (label, [have, suggested, right]) in &by_label {
        println!("    {label:<10} {have:>6} {suggested:>6} {right:>6}  {:>5}", ratio(*right, *suggested));
    }
    Ok(())
}
