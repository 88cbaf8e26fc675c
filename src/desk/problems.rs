//! What went wrong recently, for the desk's problems page: the records of the dead-letter topic and of `errors`
//! (what absturz posts to a webhook), kept in memory so a team without a webhook still notices.
//!
//! A thread of its own reads both topics from a week back (by timestamp; everything, on a broker that cannot
//! answer that) and keeps the newest [`KEPT`] records, newest first. It commits nothing: every desk keeps its own
//! view and rebuilds it at start. A record that is not a dead letter or an error event is kept as its raw text, so
//! nothing on these topics goes unseen.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::kafka;
use crate::schema::{DeadLetter, ErrorEvent};

/// Records kept, newest first.
pub const KEPT: usize = 1_000;
/// How far back the desk reads at start.
const LOOK_BACK: chrono::Duration = chrono::Duration::days(7);
/// How long a broker may take to answer at start.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The most characters of a record's text kept for the page.
const TEXT_MAX: usize = 64 * 1024;

/// One problem: where it sits and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// RFC 3339, from the record (or from Kafka's timestamp when it carries none).
    pub time: String,
    pub kind: Kind,
    /// The record's value as text (cut at [`TEXT_MAX`] characters).
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// An intake record or command that could not be used.
    DeadLetter { error_type: String, error: String },
    /// An operational problem a service reported.
    Error { service: String, level: String, message: String },
    /// A record of neither shape.
    Unreadable,
}

impl Problem {
    /// What the problem says, in one line.
    pub fn summary(&self) -> &str {
        match &self.kind {
            Kind::DeadLetter { error, .. } => error,
            Kind::Error { message, .. } => message,
            Kind::Unreadable => "a record that is neither a dead letter nor an error event",
        }
    }

    pub fn is_dead_letter(&self) -> bool {
        matches!(self.kind, Kind::DeadLetter { .. })
    }
}

/// The recent problems, shared by the desk's handlers.
#[derive(Clone)]
pub struct Problems {
    kept: Arc<Mutex<VecDeque<Problem>>>,
    /// Bumped whenever a problem arrives, so open pages update.
    changed: watch::Sender<u64>,
}

impl Default for Problems {
    fn default() -> Problems {
        Problems { kept: Arc::default(), changed: watch::Sender::new(0) }
    }
}

impl Problems {
    /// The kept problems, newest first.
    pub fn recent(&self) -> Vec<Problem> {
        self.lock().iter().cloned().collect()
    }

    /// One problem by where it sits.
    pub fn find(&self, topic: &str, partition: i32, offset: i64) -> Option<Problem> {
        self.lock().iter().find(|p| p.topic == topic && p.partition == partition && p.offset == offset).cloned()
    }

    /// Wakes when a problem arrives.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn add(&self, problem: Problem) {
        let mut kept = self.lock();
        // Partitions interleave: keep the list ordered by time, newest first (most arrive newest already).
        let at = kept.iter().position(|p| p.time <= problem.time).unwrap_or(kept.len());
        kept.insert(at, problem);
        kept.truncate(KEPT);
        drop(kept);
        self.changed.send_modify(|n| *n += 1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Problem>> {
        self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Follows `topics` into the list until `shutdown` is cancelled.
    pub async fn follow(
        self,
        bootstrap: String,
        topics: Vec<String>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        tokio::task::spawn_blocking(move || self.follow_blocking(&bootstrap, &topics, &shutdown))
            .await
            .context("the desk's problem follower ended abnormally")?
    }

    fn follow_blocking(&self, bootstrap: &str, topics: &[String], shutdown: &CancellationToken) -> anyhow::Result<()> {
        let consumer: kafka::PlainConsumer = kafka::consumer_config(bootstrap)
            .set("group.id", "franz-desk-problems")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create_with_context(kafka::Quiet)
            .context("cannot create the desk's problem reader")?;
        consumer.assign(&start_offsets(&consumer, topics)?).context("cannot read the problem topics")?;
        while !shutdown.is_cancelled() {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => self.add(problem_from(
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    message.timestamp().to_millis(),
                    message.payload().unwrap_or_default(),
                )),
                Some(Err(error)) => tracing::debug!(%error, "reading the problem topics failed; librdkafka retries"),
                None => {}
            }
        }
        Ok(())
    }
}

/// Where to start each partition of `topics`: a week back, or the beginning where the broker cannot say.
fn start_offsets(consumer: &kafka::PlainConsumer, topics: &[String]) -> anyhow::Result<TopicPartitionList> {
    let since = (chrono::Utc::now() - LOOK_BACK).timestamp_millis();
    let mut by_time = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .with_context(|| format!("cannot read the metadata of {topic}"))?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            by_time.add_partition_offset(topic, partition.id(), Offset::Offset(since))?;
        }
    }
    match consumer.offsets_for_times(by_time.clone(), TIMEOUT) {
        // A partition with nothing newer answers `End`; that is where to wait.
        Ok(found) => Ok(found),
        Err(error) => {
            tracing::debug!(%error, "the broker cannot find offsets by time; the desk reads the problem topics whole");
            let mut whole = TopicPartitionList::new();
            for element in by_time.elements() {
                whole.add_partition_offset(element.topic(), element.partition(), Offset::Beginning)?;
            }
            Ok(whole)
        }
    }
}

/// A record of a problem topic as the desk shows it.
fn problem_from(topic: &str, partition: i32, offset: i64, timestamp_ms: Option<i64>, payload: &[u8]) -> Problem {
    let text = String::from_utf8_lossy(payload);
    let text: String = text.chars().take(TEXT_MAX).collect();
    let record_time = || {
        timestamp_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
            .unwrap_or_else(chrono::Utc::now)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let (kind, time) = if let Ok(letter) = serde_json::from_slice::<DeadLetter>(payload) {
        let error_type = serde_json::to_value(letter.error_type).ok().and_then(|v| v.as_str().map(str::to_owned));
        (Kind::DeadLetter { error_type: error_type.unwrap_or_default(), error: letter.error }, letter.time)
    } else if let Ok(event) = serde_json::from_slice::<ErrorEvent>(payload) {
        let level = serde_json::to_value(event.level).ok().and_then(|v| v.as_str().map(str::to_owned));
        let kind = Kind::Error { service: event.service, level: level.unwrap_or_default(), message: event.message };
        (kind, event.time)
    } else {
        (Kind::Unreadable, record_time())
    };
    // A time that is no RFC 3339 would sort wrongly: use the record's own.
    let time = if chrono::DateTime::parse_from_rfc3339(&time).is_ok() { time } else { record_time() };
    Problem { topic: topic.to_owned(), partition, offset, time, kind, text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_errors_and_other_records_are_each_recognised() {
        let letter = br#"{"error":"body is empty","error_type":"validation_error","raw_value":"{}","raw_size":2,
            "time":"2026-12-01T10:00:00.000Z","source":{"topic":"discordMSG","partition":0,"offset":7}}"#;
        let problem = problem_from("dlq", 0, 3, None, letter);
        assert_eq!(
            problem.kind,
            Kind::DeadLetter { error_type: "validation_error".into(), error: "body is empty".into() }
        );
        assert_eq!(problem.time, "2026-12-01T10:00:00.000Z");
        let error = br#"{"service":"akte","level":"error","message":"stopped","time":"2026-12-01T11:00:00.000Z"}"#;
        assert_eq!(problem_from("errors", 0, 0, None, error).summary(), "stopped");
        let other = problem_from("errors", 1, 9, Some(0), b"\xff not json");
        assert_eq!(other.kind, Kind::Unreadable);
        assert_eq!(other.time, "1970-01-01T00:00:00.000Z");
        assert!(other.text.contains("not json"));
    }

    #[test]
    fn the_newest_problems_are_kept_newest_first_and_bounded() {
        let problems = Problems::default();
        let changes = problems.subscribe();
        for n in 0..KEPT + 10 {
            let time = format!("2026-12-01T10:{:02}:{:02}.000Z", n / 60 % 60, n % 60);
            problems.add(Problem { time, ..problem_from("errors", 0, n as i64, Some(0), b"x") });
        }
        // One arriving late from another partition goes to its place by time.
        problems.add(Problem { time: "2026-12-01T10:00:30.500Z".into(), ..problem_from("dlq", 1, 0, Some(0), b"x") });
        let recent = problems.recent();
        assert_eq!(recent.len(), KEPT);
        assert_eq!(recent[0].offset, (KEPT + 9) as i64);
        assert!(recent.windows(2).all(|w| w[0].time >= w[1].time));
        assert!(problems.find("dlq", 1, 0).is_some());
        assert!(problems.find("errors", 0, 0).is_none(), "the oldest fell out");
        assert!(changes.has_changed().unwrap());
    }
}
