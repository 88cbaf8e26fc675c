//! The scheduler: wakes akte when a service-level point of a ticket comes.
//!
//! Every second it asks the ticket store for the tickets whose next point (`tickets.next_check`, indexed) has come
//! by franz's clock (`config.clock`: the system's, or a test's), and sends each a time command (`tick`) whose id names
//! the ticket's version it saw (`tick:<version>`); akte decides it into `due_soon` or `breached`
//! (`lifecycle::levels::tick`). A ticket is ticked once per version: until the store shows the event the tick made,
//! it is not ticked again, unless a minute passes (the command could have been lost). Every akte process schedules
//! every ticket: two ticks of one version are one command id, which akte answers once. Nothing is kept but the
//! store, so after a restart or a rebalance the first look finds every point that passed meanwhile.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::kafka::Producer;
use crate::kafka::tickets::send_command;
use crate::lifecycle::levels::stamp;
use crate::schema::lifecycle::{Action, Actor, ActorSource, Command};
use crate::store::{Store, query};

/// How often the store is asked.
const EVERY: Duration = Duration::from_secs(1);
/// The most tickets ticked at one look; the rest at the next.
const PER_LOOK: usize = 1000;
/// How long a tick waits for its event before it is sent again.
const RESEND_AFTER: Duration = Duration::from_secs(60);

/// What the scheduler needs.
pub struct Scheduler {
    pub store: Store,
    pub producer: Producer,
    pub commands_topic: String,
    pub partitions: i32,
    pub clock: Clock,
}

impl Scheduler {
    /// Looks every second until `shutdown` is cancelled; a look that fails is said in the log (at most once per
    /// `repeats::INTERVAL`, with a count) and made again.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut sent: HashMap<String, (u64, Instant)> = HashMap::new();
        loop {
            // A store that cannot be read now (busy, rebuilding) is asked again at the next look.
            if let Err(error) = self.look(&mut sent).await {
                let text = format!("akte's scheduler cannot read the ticket store: {error:#}");
                crate::kafka::repeats::note(crate::kafka::repeats::Level::Warn, &text);
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(EVERY) => {}
            }
        }
    }

    /// Ticks every ticket whose point has come, and forgets those ticked that are not due any more.
    async fn look(&self, sent: &mut HashMap<String, (u64, Instant)>) -> anyhow::Result<()> {
        // A store still reading its backlog holds tickets part-way through their history, whose points passed
        // long ago by the events not applied yet: akte would refuse their ticks (a `rejected` event on each).
        if !self.store.progress().borrow().caught_up {
            return Ok(());
        }
        let at = stamp(self.clock.now());
        let store = self.store.clone();
        let now = at.clone();
        let due = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(String, u64)>> {
            let conn = store.reader()?;
            Ok(query::due(&conn, &now, PER_LOOK)?)
        })
        .await
        .context("the scheduler's look at the store ended abnormally")??;
        let looked: std::collections::HashSet<&str> = due.iter().map(|(id, _)| id.as_str()).collect();
        sent.retain(|ticket, _| looked.contains(ticket.as_str()));
        let ticks: Vec<(String, u64, Command)> = due
            .into_iter()
            .filter(|(ticket, version)| {
                !sent.get(ticket).is_some_and(|(seen, when)| seen == version && when.elapsed() < RESEND_AFTER)
            })
            .map(|(ticket, version)| {
                let command = Command {
                    command_id: format!("tick:{version}"),
                    ticket_id: ticket.clone(),
                    actor: Actor { source: ActorSource::Franz, name: super::NAME.into(), id: None, staff: None },
                    action: Action::Tick { at: at.clone() },
                };
                (ticket, version, command)
            })
            .collect();
        // All at once: the producer batches them, where one after another each would wait for its acknowledgement.
        let sending = ticks
            .iter()
            .map(|(.., command)| send_command(&self.producer, &self.commands_topic, self.partitions, command));
        let results = futures::future::join_all(sending).await;
        let mut failed = (0, None);
        for ((ticket, version, _), result) in ticks.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    sent.insert(ticket, (version, Instant::now()));
                }
                // The next look tries again.
                Err(error) => failed = (failed.0 + 1, failed.1.or(Some(error))),
            }
        }
        if let (count, Some(error)) = failed {
            tracing::warn!(service = super::NAME, "cannot send {count} time commands: {error:#}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::lifecycle::Command;
    use crate::store::tests::{apply_all, open_temp, payloads, ticket};

    /// Found by the deadlines bench (#26), failing first: the scheduler looked while the store was still reading
    /// its backlog, where a ticket whose priority was lowered seconds after its creation still showed its first
    /// (normal) deadline, passed weeks ago: ticks that akte refused, one `rejected` event each.
    #[tokio::test]
    async fn the_scheduler_waits_until_the_store_has_read_its_backlog() {
        let policy = crate::lifecycle::Policy {
            levels: Some(std::sync::Arc::new(crate::lifecycle::levels::Levels {
                teams: Default::default(),
                calendar: crate::lifecycle::calendar::Calendar::always(),
                warn_percent: 80,
                targets: [(
                    (crate::lifecycle::levels::Target::FirstResponse, crate::schema::lifecycle::Priority::Normal),
                    Duration::from_secs(3600),
                )]
                .into_iter()
                .collect(),
                remind_before: Duration::ZERO,
            })),
            ..Default::default()
        };
        let created =
            crate::lifecycle::decide(None, &Command::create(ticket("t1", "a")), "2026-03-01T00:00:00.000Z", &policy);
        let (_dir, store, mut writer) = open_temp();
        apply_all(&mut writer, &payloads(&[created]), 0, 10);
        let scheduler = Scheduler {
            store,
            // Never reached: nothing may be sent.
            producer: crate::kafka::producer("127.0.0.1:9").unwrap(),
            commands_topic: "commands".into(),
            partitions: 1,
            clock: Clock::manual(chrono::DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z").unwrap().to_utc()),
        };
        let mut sent = HashMap::new();
        let looked = tokio::time::timeout(Duration::from_secs(5), scheduler.look(&mut sent)).await;
        assert!(matches!(looked, Ok(Ok(()))) && sent.is_empty(), "nothing is ticked before the store caught up");
        writer.caught_up();
        // Caught up, the ticket is due: the look tries to send its tick (to a broker that never answers).
        let looked = tokio::time::timeout(Duration::from_millis(500), scheduler.look(&mut sent)).await;
        assert!(looked.is_err() || !sent.is_empty(), "the due ticket is ticked once the store caught up");
    }
}
