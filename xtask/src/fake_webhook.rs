//! A fake Discord webhook for `cargo xtask e2e`: accepts every POST on loopback and keeps what was posted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

pub struct FakeWebhook {
    /// The URL as a user copies it from Discord.
    pub url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl FakeWebhook {
    pub fn start() -> anyhow::Result<FakeWebhook> {
        let server = tiny_http::Server::http("127.0.0.1:0")
            .map_err(|e| anyhow::anyhow!("cannot start the fake webhook: {e}"))?;
        let port = server.server_addr().to_ip().context("the fake webhook has no IP address")?.port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for mut request in server.incoming_requests() {
                let mut body = String::new();
                let _ = request.as_reader().read_to_string(&mut body);
                kept.lock().expect("the fake webhook's lock").push(serde_json::from_str(&body).unwrap_or(Value::Null));
                let _ = request.respond(tiny_http::Response::from_string(r#"{"id":"1"}"#).with_status_code(200));
            }
        });
        Ok(FakeWebhook { url: format!("http://127.0.0.1:{port}/api/webhooks/1/e2e-token"), bodies })
    }

    /// How many alerts arrived in embeds whose title starts with `prefix` (a grouped embed counts its " ×N").
    pub fn alerts_titled(&self, prefix: &str) -> u64 {
        let bodies = self.bodies.lock().expect("the fake webhook's lock");
        bodies
            .iter()
            .flat_map(|body| body["embeds"].as_array().cloned().unwrap_or_default())
            .filter_map(|embed| embed["title"].as_str().map(str::to_owned))
            .filter(|title| title.starts_with(prefix))
            .map(|title| title.rsplit_once(" ×").and_then(|(_, n)| n.parse().ok()).unwrap_or(1))
            .sum()
    }

    /// Waits until `condition` holds for what arrived, or fails after `timeout` saying what it waited for.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&FakeWebhook) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !condition(self) {
            if Instant::now() > deadline {
                bail!("the fake Discord webhook did not receive {what} within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}
