//! Keeps the ticket store up to date: reads `ticket-events` from the offsets the store holds and applies it in
//! batches, on two threads of its own: one polls and parses the next batch while the other writes the last.
//!
//! Before the store opens, [`identity`] asks the cluster for its id and the topic's id, which the store is checked
//! against (a store of another cluster, or of a topic created again, is rebuilt). At start it also checks the store
//! against the topic's offsets: a store ahead of the topic (the topic was deleted and created again, or a container
//! broker started empty) is rebuilt; a store behind the topic's oldest event (retention removed events it never
//! saw) says so loudly. A large backlog shows its progress in the log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::{Identity, Parsed, Writer};
use crate::kafka;

/// Events applied in one transaction at most.
const BATCH: usize = 20_000;
/// An empty store facing a backlog this large builds its filter indexes after applying it, not row by row.
const BULK_BACKLOG: i64 = 5_000;
/// A backlog this large is a rebuild worth reporting progress on.
const REPORT_BACKLOG: i64 = 20_000;
/// How long a broker may take to answer metadata and watermark requests.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The identity of `topic` on the cluster at `bootstrap`, for [`super::open`]. A cluster that does not answer
/// leaves the ids unknown, with a warning: the store is then checked by the topic's name alone, as a network
/// error must never wipe it.
pub async fn identity(bootstrap: &str, topic: &str) -> Identity {
    match kafka::identity::fetch(bootstrap, topic, TIMEOUT).await {
        Ok(found) => Identity { topic: topic.to_owned(), cluster_id: found.cluster_id, topic_id: found.topic_id },
        Err(error) => {
            tracing::warn!(
                "cannot tell which cluster and topic the ticket store follows ({error:#}); the store is kept if it \
                 was built from a topic named {topic}. If --bootstrap now names another cluster, delete the store to \
                 rebuild it"
            );
            Identity::named(topic)
        }
    }
}

/// Follows `topic` into the store until `shutdown` is cancelled.
pub async fn run(
    mut writer: Writer,
    bootstrap: String,
    topic: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || follow(&mut writer, &bootstrap, &topic, &shutdown))
        .await
        .context("the ticket store's follower ended abnormally")?
}

fn follow(writer: &mut Writer, bootstrap: &str, topic: &str, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let consumer: kafka::PlainConsumer = kafka::consumer_config(bootstrap)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("group.id", "franz-ticket-store")
        .create_with_context(kafka::Quiet)
        .context("cannot create the ticket store's consumer")?;
    let ends = watermarks(&consumer, topic)?;
    check_against_topic(writer, &ends)?;
    let next = writer.next_offsets();
    let mut assignment = TopicPartitionList::new();
    for (&partition, &(low, _)) in &ends {
        let from = next.get(&partition).copied().unwrap_or(0).max(low);
        assignment.add_partition_offset(topic, partition, Offset::Offset(from))?;
    }
    consumer.assign(&assignment).context("cannot read the ticket events")?;

    let backlog: i64 = ends.iter().map(|(p, &(low, high))| high - next.get(p).copied().unwrap_or(0).max(low)).sum();
    let mut report = (backlog >= REPORT_BACKLOG).then(|| Report::new(backlog));
    // An empty store with a large backlog is a rebuild: its filter indexes are built once, at the end.
    let bulk = backlog >= BULK_BACKLOG && next.is_empty();
    if bulk {
        writer.begin_bulk().context("cannot prepare the ticket store's rebuild")?;
    }
    if let Some(report) = &report {
        tracing::info!("ticket store: applying {} events from {topic}", report.total);
    }
    let targets: Vec<(i32, i64)> = ends.iter().map(|(&p, &(_, high))| (p, high)).collect();
    // Two threads: this one writes, a reader polls and parses the next batch meanwhile.
    let (batches, parsed) = std::sync::mpsc::sync_channel::<Vec<Parsed>>(2);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| read(&consumer, topic, shutdown, &stop, batches));
        let written = (|| -> anyhow::Result<()> {
            let mut caught_up = false;
            while !shutdown.is_cancelled() {
                match parsed.recv_timeout(Duration::from_millis(100)) {
                    Ok(batch) => {
                        let applied = writer.apply_parsed(&batch).context("cannot write the ticket store")?;
                        if let Some(report) = &mut report {
                            report.advance(applied.events + applied.duplicates + applied.unreadable);
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                if !caught_up {
                    let next = writer.next_offsets();
                    caught_up = targets.iter().all(|(p, high)| next.get(p).copied().unwrap_or(0) >= *high);
                    if caught_up {
                        if bulk {
                            writer.end_bulk().context("cannot index the rebuilt ticket store")?;
                        }
                        if let Some(report) = report.take() {
                            report.finish();
                        }
                        writer.caught_up();
                    }
                }
            }
            Ok(())
        })();
        // A writer that failed stops the reader too.
        stop.store(true, Ordering::Relaxed);
        drop(parsed);
        reader.join().map_err(|_| anyhow::anyhow!("the ticket store's reader panicked"))?;
        written
    })
}

/// Polls `topic` and parses each batch, until shutdown, a stop, or the writer is gone.
fn read(
    consumer: &kafka::PlainConsumer,
    topic: &str,
    shutdown: &CancellationToken,
    stop: &AtomicBool,
    batches: SyncSender<Vec<Parsed>>,
) {
    while !shutdown.is_cancelled() && !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::new();
        let mut take = |message: KafkaResult<BorrowedMessage<'_>>| match message {
            Ok(message) => batch.push(Parsed::new(
                message.partition(),
                message.offset(),
                message.payload().unwrap_or_default().to_vec(),
            )),
            // Every poll reports it again while the cluster is gone: said once per interval.
            Err(error) => kafka::repeats::note(
                kafka::repeats::Level::Warn,
                &format!("reading {topic} failed; librdkafka retries by itself: {error}"),
            ),
        };
        if let Some(first) = consumer.poll(Duration::from_millis(100)) {
            take(first);
            for _ in 1..BATCH {
                match consumer.poll(Duration::ZERO) {
                    Some(message) => take(message),
                    None => break,
                }
            }
        }
        if !batch.is_empty() && batches.send(batch).is_err() {
            return;
        }
    }
}

/// Each partition's oldest and next offsets.
fn watermarks(
    consumer: &kafka::PlainConsumer,
    topic: &str,
) -> anyhow::Result<std::collections::BTreeMap<i32, (i64, i64)>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .with_context(|| format!("cannot read the metadata of {topic}"))?;
    let partitions = metadata.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
    if partitions == 0 {
        anyhow::bail!("topic {topic} does not exist");
    }
    (0..partitions as i32)
        .map(|p| {
            let marks = consumer
                .fetch_watermarks(topic, p, TIMEOUT)
                .with_context(|| format!("cannot read the offsets of {topic}/{p}"))?;
            Ok((p, marks))
        })
        .collect()
}

fn check_against_topic(writer: &mut Writer, ends: &std::collections::BTreeMap<i32, (i64, i64)>) -> anyhow::Result<()> {
    let next = writer.next_offsets();
    let ahead = next.iter().find(|(p, n)| ends.get(p).is_none_or(|&(_, high)| **n > high));
    if let Some((partition, stored)) = ahead {
        let high = ends.get(partition).map_or(0, |e| e.1);
        writer.reset(&format!(
            "it has applied partition {partition} up to offset {stored} but the topic ends at {high} (the topic was \
             created again)"
        ))?;
        return Ok(());
    }
    for (partition, &(low, _)) in ends {
        let stored = next.get(partition).copied().unwrap_or(0);
        if stored < low {
            tracing::error!(
                "ticket events {stored}..{low} of partition {partition} were removed by retention before the store \
                 applied them; the tickets they changed are incomplete. Keep ticket-events forever (retention -1)."
            );
        }
    }
    Ok(())
}

/// Progress of a large backlog, logged every few seconds.
struct Report {
    total: i64,
    done: i64,
    started: Instant,
    last: Instant,
}

impl Report {
    fn new(total: i64) -> Report {
        Report { total, done: 0, started: Instant::now(), last: Instant::now() }
    }

    fn advance(&mut self, records: u64) {
        self.done += records as i64;
        if self.last.elapsed() >= Duration::from_secs(2) {
            self.last = Instant::now();
            let rate = self.done as f64 / self.started.elapsed().as_secs_f64();
            tracing::info!(
                "ticket store: {} of {} events applied ({}%), {rate:.0} events/s",
                self.done,
                self.total,
                self.done * 100 / self.total.max(1)
            );
        }
    }

    fn finish(self) {
        let seconds = self.started.elapsed().as_secs_f64();
        tracing::info!(
            "ticket store: caught up, {} events in {seconds:.1} s ({:.0} events/s)",
            self.done,
            self.done as f64 / seconds.max(0.001)
        );
    }
}
