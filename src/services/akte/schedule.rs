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
        let at = stamp(self.clock.now());
        let store = self.store.clone();
        let now = at.clone();
        let due = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(String, u64)>> {
            let conn = store.reader()?;
            Ok(query::due(&conn, &now, PER_LOOK)?)
        })
        .await
        .context("the scheduler's look at the store ended abnormally")??;
        sent.retain(|ticket, _| due.iter().any(|(id, _)| id == ticket));
        for (ticket, version) in due {
            if sent.get(&ticket).is_some_and(|(seen, when)| *seen == version && when.elapsed() < RESEND_AFTER) {
                continue;
            }
            let command = Command {
                command_id: format!("tick:{version}"),
                ticket_id: ticket.clone(),
                actor: Actor { source: ActorSource::Franz, name: super::NAME.into(), id: None, staff: None },
                action: Action::Tick { at: at.clone() },
            };
            match send_command(&self.producer, &self.commands_topic, self.partitions, &command).await {
                Ok(()) => {
                    sent.insert(ticket, (version, Instant::now()));
                }
                // The next look tries again.
                Err(error) => tracing::warn!(service = super::NAME, ticket, "cannot send a time command: {error:#}"),
            }
        }
        Ok(())
    }
}
