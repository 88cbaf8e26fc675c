//! akte: the single writer of the ticket lifecycle.
//!
//! Two at-least-once loops share one producer. *Intake* (consumer group `akte-intake`) turns each normalized
//! ticket of `tickets-formatted` into a `create` command on `ticket-commands`, keyed by the ticket id, with a
//! command id derived from it; a record that is no ticket becomes a dead letter. *Decide* (consumer group `akte`)
//! answers each command with exactly one event on `ticket-events`, through `lifecycle::decide`.
//!
//! One writer per ticket: a ticket's commands all sit in one partition of `ticket-commands` (a command that a
//! client with another partitioner put elsewhere is forwarded to it first), and its events go to the same
//! partition number of `ticket-events`. Only the group member that owns that partition decides; before deciding
//! after a rebalance it waits until the ticket store has applied that event partition to its end, so it sees what
//! the previous owner wrote. Between store updates it keeps the state it just produced in memory (`pending`), and
//! a command whose id has an answer already (a redelivery, a retry) gets no second event.

mod decide;
mod schedule;

use anyhow::Context as _;
use rdkafka::consumer::Consumer as _;
use tokio_util::sync::CancellationToken;

use crate::config::Topics;
use crate::kafka::relay::{self, Input, Output, RetryPolicy};
use crate::kafka::{self, CommitOnRevoke, group_consumer, report_error};
use crate::schema::lifecycle::Command;
use crate::schema::{DeadLetter, ErrorType, Ticket, now_rfc3339};
use crate::store::Store;

/// The service's name in logs and error events.
pub const NAME: &str = "akte";
/// The consumer group that decides commands.
pub const GROUP: &str = "akte";
/// The consumer group that turns tickets into create commands.
pub const INTAKE_GROUP: &str = "akte-intake";

/// What akte needs to run.
#[derive(Clone)]
pub struct Settings {
    pub bootstrap: String,
    pub topics: Topics,
    pub store: Store,
    pub retry: RetryPolicy,
    /// Where both loops count their records.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The team's rules the decisions follow.
    pub policy: crate::lifecycle::Policy,
    /// What time it is, for the events and the service-level scheduler.
    pub clock: crate::clock::Clock,
}

/// `franz up`'s akte: runs whenever it is enabled (it opens the ticket store).
pub async fn plan(context: &super::Context<'_>) -> anyhow::Result<super::Plan> {
    let store = context.store.clone().context("akte needs the ticket store")?;
    let topics = &context.config.topics;
    let status = format!("{}, {} -> {}", topics.tickets, topics.commands, topics.events);
    let settings = Settings {
        bootstrap: context.bootstrap.clone(),
        topics: topics.clone(),
        store,
        retry: RetryPolicy::default(),
        metrics: context.metrics.clone(),
        policy: crate::lifecycle::Policy {
            reopen_within: context.config.reopen_within,
            levels: context.config.service_levels.levels().map(std::sync::Arc::new),
            routing: context.config.rules.clone(),
            rate_within: context.config.satisfaction.window,
        },
        clock: context.config.clock.clone(),
    };
    Ok(super::Plan::run(status, run(settings, context.shutdown.clone())))
}

/// Runs both loops until `shutdown` is cancelled, or until one of them fails: then the other stops too, the
/// failure is reported to the errors topic, and it is returned.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let producer = kafka::producer(&settings.bootstrap)?;
    let stop = shutdown.child_token();
    let decider = decide::Decider::new(&settings)?;
    let membership = decider.membership();
    let commands = group_consumer(&settings.bootstrap, GROUP, membership)?;
    commands.subscribe(&[&settings.topics.commands])?;
    let tickets = group_consumer(&settings.bootstrap, INTAKE_GROUP, CommitOnRevoke::default())?;
    tickets.subscribe(&[&settings.topics.tickets])?;

    let topics = settings.topics.clone();
    let meter = relay::Meter::of(&settings.metrics, NAME);
    let intake = async {
        let result = relay::run(tickets, &producer, &stop, &settings.retry, &meter, |input: &Input<'_>| {
            create_command(&topics, input)
        })
        .await;
        stop.cancel();
        result
    };
    let decide = async {
        let result = relay::run(commands, &producer, &stop, &settings.retry, &meter, decider).await;
        stop.cancel();
        result
    };
    let schedule = async {
        if settings.policy.levels.is_none() {
            return Ok(());
        }
        let result = async {
            let timeout = std::time::Duration::from_secs(10);
            let metadata = kafka::admin::metadata(&settings.bootstrap, Some(&topics.commands), timeout).await?;
            let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len() as i32);
            let scheduler = schedule::Scheduler {
                store: settings.store.clone(),
                producer: producer.clone(),
                commands_topic: topics.commands.clone(),
                partitions,
                clock: settings.clock.clone(),
            };
            scheduler.run(stop.clone()).await
        }
        .await;
        // Whichever way it ended, the loops end with it: akte never runs on without its scheduler.
        stop.cancel();
        result
    };
    let (intake, decide, schedule) = tokio::join!(intake, decide, schedule);
    let failure = intake.err().map(anyhow::Error::from).or(decide.err().map(anyhow::Error::from)).or(schedule.err());
    match failure {
        None => Ok(()),
        Some(error) => {
            let message = format!("{error:#}; akte stopped");
            report_error(&producer, &topics.errors, NAME, message, serde_json::Map::new()).await;
            Err(error)
        }
    }
}

/// The largest normalized ticket akte takes in: aufbereitung's limits make tickets of a few KiB at most, and a
/// larger one would make a command over the producer's size limit, stopping akte at it on every start.
pub const TICKET_MAX_BYTES: usize = 64 * 1024;

/// A normalized ticket's create command, keyed by the ticket id; a record that is no ticket (or too large to be
/// one) becomes a dead letter.
fn create_command(topics: &Topics, input: &Input<'_>) -> Output {
    let parsed = if input.payload.len() > TICKET_MAX_BYTES {
        Err(format!("{} bytes, more than the {TICKET_MAX_BYTES} a ticket may have", input.payload.len()))
    } else {
        serde_json::from_slice::<Ticket>(input.payload).map_err(|error| error.to_string()).and_then(|ticket| {
            serde_json::to_vec(&Command::create(ticket.clone())).map(|c| (ticket, c)).map_err(|e| e.to_string())
        })
    };
    match parsed {
        Ok((ticket, command)) => Output {
            topic: topics.commands.clone(),
            key: Some(ticket.id.into_bytes()),
            payload: command,
            partition: None,
        },
        Err(error) => {
            let letter = DeadLetter::new(
                ErrorType::JsonDecodeError,
                format!("not a normalized ticket: {error}"),
                input.payload,
                input.source(),
                now_rfc3339(),
            );
            Output {
                topic: topics.dead_letters.clone(),
                key: input.key.map(<[u8]>::to_vec),
                payload: serde_json::to_vec(&letter).unwrap_or_default(),
                partition: None,
            }
        }
    }
}
