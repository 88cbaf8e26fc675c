//! Repeated log lines, logged once and then summarised: the first occurrence of a kind of message goes to the log
//! at once, repeats within [`INTERVAL`] are only counted, and the count is logged as one line when the interval is
//! over ("… repeated 412 times in the last 30 s").
//!
//! A cluster that is gone makes every librdkafka client report the same few errors many times a second (811 lines
//! in 20 s were seen); this is what keeps that readable. [`Repeats`] is the pure part, driven by the `Instant`s its
//! caller passes in, so tests move a clock instead of sleeping; [`note`] is the one process-wide instance that
//! franz's Kafka client contexts and consume loops log through. It does not decide what is worth logging, only how
//! often the same thing is said.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// How long repeats of one message are counted before the count is logged.
pub const INTERVAL: Duration = Duration::from_secs(30);

/// Messages tracked at once. Past this, a new kind of message is logged without being tracked: never lost, only
/// not counted, so a flood of distinct messages cannot grow the table without bound.
const MAX_KINDS: usize = 1_000;

/// How loud a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

/// What [`Repeats::check`] decided about one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The first of its kind in this interval: log it.
    Log,
    /// A repeat: counted, not logged.
    Quiet,
}

/// The repeats of one kind of message over an interval that is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary<T> {
    /// The occurrence that opened the interval.
    pub first: T,
    /// Occurrences after it that were not logged.
    pub repeated: u64,
    /// From the first occurrence until the summary.
    pub over: Duration,
}

struct Window<T> {
    first: T,
    since: Instant,
    repeated: u64,
}

/// Counts repeats of each kind of message (its key) per interval.
pub struct Repeats<T> {
    interval: Duration,
    windows: HashMap<String, Window<T>>,
}

impl<T: Clone> Repeats<T> {
    pub fn new(interval: Duration) -> Repeats<T> {
        Repeats { interval, windows: HashMap::new() }
    }

    /// Closes every interval that is over by `now`: returns the ones with repeats to report, and forgets them all,
    /// so the next occurrence of their kind is logged again. Call before [`Repeats::check`].
    pub fn due(&mut self, now: Instant) -> Vec<Summary<T>> {
        let interval = self.interval;
        let mut due = Vec::new();
        self.windows.retain(|_, window| {
            let over = now.saturating_duration_since(window.since);
            if over < interval {
                return true;
            }
            if window.repeated > 0 {
                due.push(Summary { first: window.first.clone(), repeated: window.repeated, over });
            }
            false
        });
        due
    }

    /// One occurrence of the message `key` (`message` is what a summary restates).
    pub fn check(&mut self, key: &str, message: &T, now: Instant) -> Verdict {
        if let Some(window) = self.windows.get_mut(key) {
            window.repeated += 1;
            return Verdict::Quiet;
        }
        if self.windows.len() < MAX_KINDS {
            self.windows.insert(key.to_owned(), Window { first: message.clone(), since: now, repeated: 0 });
        }
        Verdict::Log
    }
}

/// What makes two messages the same kind: their text without digits, so that counters, ports, milliseconds and
/// client numbers in librdkafka's lines ("after 0ms", "rdkafka#producer-3", "2/2 brokers") do not make every
/// line new.
pub fn kind(level: Level, text: &str) -> String {
    let mut key = format!("{level:?} ");
    key.extend(text.chars().filter(|c| !c.is_ascii_digit()));
    key
}

static PROCESS: LazyLock<Mutex<Repeats<(Level, String)>>> = LazyLock::new(|| Mutex::new(Repeats::new(INTERVAL)));

/// Logs `text` at `level` unless the same kind of message was logged within the last [`INTERVAL`]; then it is
/// counted, and the count is logged once that interval is over (with the next message logged through here).
pub fn note(level: Level, text: &str) {
    let now = Instant::now();
    let (summaries, verdict) = {
        let mut repeats = PROCESS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let summaries = repeats.due(now);
        let verdict = repeats.check(&kind(level, text), &(level, text.to_owned()), now);
        (summaries, verdict)
    };
    for summary in summaries {
        let (level, text) = &summary.first;
        emit(*level, &format!("{text} (repeated {} times in the last {} s)", summary.repeated, summary.over.as_secs()));
    }
    if verdict == Verdict::Log {
        emit(level, text);
    }
}

fn emit(level: Level, text: &str) {
    match level {
        Level::Error => tracing::error!("{text}"),
        Level::Warn => tracing::warn!("{text}"),
        Level::Info => tracing::info!("{text}"),
        Level::Debug => tracing::debug!("{text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(start: Instant, s: u64) -> Instant {
        start + Duration::from_secs(s)
    }

    #[test]
    fn the_first_occurrence_is_logged_and_repeats_within_the_interval_are_only_counted() {
        let start = Instant::now();
        let mut repeats = Repeats::new(Duration::from_secs(30));
        assert_eq!(repeats.check("down", &"all brokers down", start), Verdict::Log);
        for s in 0..29 {
            assert!(repeats.due(seconds(start, s)).is_empty());
            assert_eq!(repeats.check("down", &"all brokers down", seconds(start, s)), Verdict::Quiet);
        }
        let due = repeats.due(seconds(start, 30));
        assert_eq!(due, vec![Summary { first: "all brokers down", repeated: 29, over: Duration::from_secs(30) }]);
        // The interval is over: the next occurrence is logged again and opens a new one.
        assert_eq!(repeats.check("down", &"all brokers down", seconds(start, 31)), Verdict::Log);
        assert_eq!(repeats.check("down", &"all brokers down", seconds(start, 32)), Verdict::Quiet);
    }

    #[test]
    fn a_new_kind_of_message_is_logged_at_once_among_repeats_of_another() {
        let start = Instant::now();
        let mut repeats = Repeats::new(Duration::from_secs(30));
        assert_eq!(repeats.check("down", &"down", start), Verdict::Log);
        assert_eq!(repeats.check("down", &"down", seconds(start, 1)), Verdict::Quiet);
        assert_eq!(repeats.check("refused", &"refused", seconds(start, 2)), Verdict::Log);
        assert_eq!(repeats.check("refused", &"refused", seconds(start, 3)), Verdict::Quiet);
        assert_eq!(repeats.check("down", &"down", seconds(start, 4)), Verdict::Quiet);
    }

    #[test]
    fn an_interval_without_repeats_ends_without_a_summary() {
        let start = Instant::now();
        let mut repeats = Repeats::new(Duration::from_secs(30));
        assert_eq!(repeats.check("once", &"once", start), Verdict::Log);
        assert!(repeats.due(seconds(start, 60)).is_empty());
        assert_eq!(repeats.check("once", &"once", seconds(start, 61)), Verdict::Log);
    }

    #[test]
    fn summaries_come_due_on_any_later_message_and_say_how_long_they_covered() {
        let start = Instant::now();
        let mut repeats = Repeats::new(Duration::from_secs(30));
        repeats.check("a", &"a", start);
        repeats.check("a", &"a", seconds(start, 5));
        repeats.check("b", &"b", seconds(start, 20));
        repeats.check("b", &"b", seconds(start, 21));
        let due = repeats.due(seconds(start, 45));
        assert_eq!(due, vec![Summary { first: "a", repeated: 1, over: Duration::from_secs(45) }]);
        let due = repeats.due(seconds(start, 50));
        assert_eq!(due, vec![Summary { first: "b", repeated: 1, over: Duration::from_secs(30) }]);
    }

    #[test]
    fn a_flood_of_distinct_messages_is_logged_whole_and_tracked_within_bounds() {
        let start = Instant::now();
        let mut repeats = Repeats::new(Duration::from_secs(30));
        for i in 0..MAX_KINDS + 10 {
            assert_eq!(repeats.check(&format!("kind {i}"), &i, start), Verdict::Log);
        }
        assert_eq!(repeats.windows.len(), MAX_KINDS);
    }

    #[test]
    fn numbers_do_not_make_a_message_new_but_the_level_does() {
        let a = "127.0.0.1:41833/bootstrap: Connect to ipv4#127.0.0.1:41833 failed: Connection refused (after 0ms)";
        let b = "127.0.0.1:41833/bootstrap: Connect to ipv4#127.0.0.1:41833 failed: Connection refused (after 12ms)";
        assert_eq!(kind(Level::Warn, a), kind(Level::Warn, b));
        assert_ne!(kind(Level::Warn, a), kind(Level::Error, a));
        assert_ne!(kind(Level::Warn, a), kind(Level::Warn, "Local: All broker connections are down"));
    }
}
