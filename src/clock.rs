//! What time it is, for everything in franz that decides by the time (akte's events, the service-level scheduler):
//! the system's clock, or one a test sets and moves, so that time-driven behaviour is tested without waiting.
//!
//! A test moves a clock of its own process ([`Clock::manual`]), or of franz processes it starts: `FRANZ_TEST_CLOCK`
//! names a file holding an RFC 3339 time, which the test rewrites to move every process's clock at once
//! ([`Clock::file`]). Neither is anything a team sets: franz runs on the system's clock.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};

/// The environment variable that gives franz a test's clock file.
pub const TEST_CLOCK: &str = "FRANZ_TEST_CLOCK";

/// A clock: the system's (the default), or a test's that stands still until it is moved.
#[derive(Clone, Default)]
pub struct Clock(Source);

#[derive(Clone, Default)]
enum Source {
    #[default]
    System,
    Manual(Arc<Mutex<DateTime<Utc>>>),
    /// The time in a file, and the last time read from it (shown while the file is being rewritten).
    File(Arc<(PathBuf, Mutex<DateTime<Utc>>)>),
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// A clock that shows `at` until it is moved ([`Clock::advance`]).
    pub fn manual(at: DateTime<Utc>) -> Clock {
        Clock(Source::Manual(Arc::new(Mutex::new(at))))
    }

    /// A clock that shows the time written in the file at `path` (RFC 3339), read at every look; a test rewrites
    /// the file to move it ([`Clock::write`]). Fails when the file holds no time now.
    pub fn file(path: PathBuf) -> anyhow::Result<Clock> {
        let at = read(&path).with_context(|| format!("{TEST_CLOCK} names {}, which holds no time", path.display()))?;
        Ok(Clock(Source::File(Arc::new((path, Mutex::new(at))))))
    }

    /// Writes `at` to a clock file, whole or not at all for its readers.
    pub fn write(path: &std::path::Path, at: DateTime<Utc>) -> std::io::Result<()> {
        let next = path.with_extension("next");
        std::fs::write(&next, at.to_rfc3339_opts(SecondsFormat::Millis, true))?;
        std::fs::rename(next, path)
    }

    /// What time it is.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            Source::System => Utc::now(),
            Source::Manual(at) => *at.lock().unwrap_or_else(PoisonError::into_inner),
            Source::File(file) => {
                let (path, last) = &**file;
                let mut last = last.lock().unwrap_or_else(PoisonError::into_inner);
                if let Ok(at) = read(path) {
                    *last = at;
                }
                *last
            }
        }
    }

    /// What time it is, as events and commands write it: RFC 3339 in UTC with milliseconds.
    pub fn stamp(&self) -> String {
        self.now().to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Moves a manual clock on by `by`. The system's clock cannot be moved: a test that tries is told so.
    pub fn advance(&self, by: chrono::Duration) {
        let Source::Manual(at) = &self.0 else { panic!("only a manual clock can be moved (Clock::manual)") };
        let mut at = at.lock().unwrap_or_else(PoisonError::into_inner);
        *at += by;
    }
}

fn read(path: &std::path::Path) -> anyhow::Result<DateTime<Utc>> {
    let text = std::fs::read_to_string(path)?;
    Ok(DateTime::parse_from_rfc3339(text.trim())?.with_timezone(&Utc))
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Source::System => f.write_str("the system's clock"),
            Source::Manual(_) => write!(f, "a manual clock at {}", self.stamp()),
            Source::File(file) => write!(f, "the clock in {} at {}", file.0.display(), self.stamp()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_it_is_moved() {
        let start = DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z").unwrap().with_timezone(&Utc);
        let clock = Clock::manual(start);
        let copy = clock.clone();
        assert_eq!(clock.now(), start);
        copy.advance(chrono::Duration::minutes(48));
        assert_eq!(clock.stamp(), "2026-12-07T10:48:00.000Z", "every copy shows the same time");
        assert!(Clock::system().now() > start);
    }

    #[test]
    fn a_clock_file_moves_every_clock_that_reads_it_and_one_without_a_time_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clock");
        std::fs::write(&path, "not a time").unwrap();
        let refused = Clock::file(path.clone()).map(|_| ()).unwrap_err();
        assert!(format!("{refused:#}").contains("FRANZ_TEST_CLOCK names"), "{refused:#}");
        let start = DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z").unwrap().with_timezone(&Utc);
        Clock::write(&path, start).unwrap();
        let clock = Clock::file(path.clone()).unwrap();
        assert_eq!(clock.now(), start);
        Clock::write(&path, start + chrono::Duration::minutes(61)).unwrap();
        assert_eq!(clock.stamp(), "2026-12-07T11:01:00.000Z");
        std::fs::write(&path, "").unwrap();
        assert_eq!(clock.stamp(), "2026-12-07T11:01:00.000Z", "a file being rewritten shows the last time");
    }
}
