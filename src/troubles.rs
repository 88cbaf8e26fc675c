//! The last problem each service reported (a delivery retried, a webhook unreachable, a task that failed), for
//! `/readyz` and `franz status`: what an operator asks first when a counter stops moving.
//!
//! Services report here where they log a warning or an error they recover from, with the same text; nothing here
//! is a metric (text makes no label). Texts are kept short and on one line, and they must already be free of
//! secrets, as the log lines they repeat are (a webhook error is reported without its URL).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// The most of a problem's text that is kept.
const TEXT_CHARS: usize = 300;

/// One service's last problem.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Trouble {
    /// When it was reported (RFC 3339, UTC).
    pub at: String,
    /// What happened: one line, at most 300 characters.
    pub text: String,
}

/// The last problem of each service, by service name; cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub struct Troubles(Arc<Mutex<BTreeMap<String, Trouble>>>);

impl Troubles {
    /// Records `text` as `service`'s latest problem.
    pub fn report(&self, service: &str, text: impl std::fmt::Display) {
        let text: String = crate::terminal::visible(&text.to_string()).chars().take(TEXT_CHARS).collect();
        let trouble = Trouble { at: crate::schema::now_rfc3339(), text };
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(service.to_owned(), trouble);
    }

    /// Every service's last problem.
    pub fn all(&self) -> BTreeMap<String, Trouble> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_kept_on_one_line_without_terminal_escapes_and_the_newest_wins() {
        let troubles = Troubles::default();
        troubles.report("absturz", "first");
        troubles.report("absturz", format!("HTTP 500\n\u{1b}]0;title\u{7}{}", "x".repeat(1000)));
        let all = troubles.all();
        let text = &all["absturz"].text;
        assert!(text.starts_with("HTTP 500\\n\\u{1b}]0;title\\u{7}x"), "{text}");
        assert_eq!(text.chars().count(), TEXT_CHARS);
        assert!(!text.chars().any(char::is_control), "{text}");
    }
}
