//! A fake Discord webhook on loopback: scripted answers, an optional rate limit, and a record of every request.
//! Shared by the integration tests and `benches/alerts.rs`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// One answer the fake gives instead of accepting.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Status(u16),
    /// 429 with this `retry_after`, in seconds.
    RateLimited(f64),
}

/// A request the fake received, and what it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub status: u16,
    pub query: String,
    pub body: Value,
}

#[derive(Default)]
struct State {
    script: VecDeque<Answer>,
    received: Vec<Received>,
    /// At most this many accepted requests per window, like Discord's webhook limit.
    limit: Option<(u32, Duration)>,
    window: Option<(Instant, u32)>,
}

pub struct FakeDiscord {
    pub server: MockServer,
    state: Arc<Mutex<State>>,
}

struct Responder(Arc<Mutex<State>>);

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.0.lock().unwrap();
        let now = Instant::now();
        let mut answer = state.script.pop_front();
        let mut headers = Vec::new();
        if let (None, Some((per_window, length))) = (answer, state.limit) {
            let (start, used) = match state.window {
                Some((start, used)) if now.duration_since(start) < length => (start, used),
                _ => (now, 0),
            };
            let reset_after = length.saturating_sub(now.duration_since(start)).as_secs_f64();
            if used >= per_window {
                answer = Some(Answer::RateLimited(reset_after));
                state.window = Some((start, used));
            } else {
                state.window = Some((start, used + 1));
                headers.push(("x-ratelimit-remaining", (per_window - used - 1).to_string()));
                headers.push(("x-ratelimit-reset-after", format!("{reset_after:.3}")));
            }
        }
        let response = match answer {
            None => ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": "1"})),
            Some(Answer::Status(code)) => ResponseTemplate::new(code).set_body_json(serde_json::json!({"message": "scripted", "code": 0})),
            Some(Answer::RateLimited(retry_after)) => ResponseTemplate::new(429)
                .set_body_json(serde_json::json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": false})),
        };
        let response = headers.into_iter().fold(response, |r, (k, v)| r.insert_header(k, v.as_str()));
        let status = match answer {
            None => 200,
            Some(Answer::Status(code)) => code,
            Some(Answer::RateLimited(_)) => 429,
        };
        let body = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        state.received.push(Received {
            at: now,
            status,
            query: request.url.query().unwrap_or_default().to_owned(),
            body,
        });
        response
    }
}

impl FakeDiscord {
    pub async fn start() -> FakeDiscord {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(method("POST"))
            .and(path_regex(r"^/api/v10/webhooks/[0-9]+/[A-Za-z0-9_-]+$"))
            .respond_with(Responder(state.clone()))
            .mount(&server)
            .await;
        FakeDiscord { server, state }
    }

    /// The webhook URL as a user copies it from Discord (without the API version).
    pub fn url(&self) -> String {
        format!("{}/api/webhooks/123/secret-token", self.server.uri())
    }

    /// The next requests get these answers, in order; after them, requests are accepted.
    pub fn script(&self, answers: &[Answer]) {
        self.state.lock().unwrap().script.extend(answers.iter().copied());
    }

    /// Enforce Discord-style rate limiting on accepted requests.
    pub fn limit(&self, per_window: u32, window: Duration) {
        self.state.lock().unwrap().limit = Some((per_window, window));
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Every embed of every accepted request, in order.
    pub fn embeds(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r.status == 200)
            .flat_map(|r| r.body["embeds"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// How many alerts the accepted embeds stand for: a grouped embed's title ends with " ×N".
    pub fn alerts(&self) -> u64 {
        self.embeds()
            .iter()
            .map(|e| {
                e["title"].as_str().and_then(|t| t.rsplit_once(" ×")).and_then(|(_, n)| n.parse().ok()).unwrap_or(1)
            })
            .sum()
    }
}
