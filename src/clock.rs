//! What time it is, for everything in franz that decides by the time (akte's events, the service-level scheduler):
//! the system's clock, or one a test sets and moves, so that time-driven behaviour is tested without waiting.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, SecondsFormat, Utc};

/// A clock: the system's (the default), or a manual one that stands still until it is moved.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<Mutex<DateTime<Utc>>>>);

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that shows `at` until it is moved ([`Clock::advance`]).
    pub fn manual(at: DateTime<Utc>) -> Clock {
        Clock(Some(Arc::new(Mutex::new(at))))
    }

    /// What time it is.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            None => Utc::now(),
            Some(at) => *at.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// What time it is, as events and commands write it: RFC 3339 in UTC with milliseconds.
    pub fn stamp(&self) -> String {
        self.now().to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Moves a manual clock on by `by`. The system's clock cannot be moved: a test that tries is told so.
    pub fn advance(&self, by: chrono::Duration) {
        let at = self.0.as_ref().expect("only a manual clock can be moved (Clock::manual)");
        let mut at = at.lock().unwrap_or_else(PoisonError::into_inner);
        *at += by;
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("the system's clock"),
            Some(_) => write!(f, "a manual clock at {}", self.stamp()),
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
}
