//! Posting messages to a Discord webhook, within Discord's rate limits, until Discord accepts or rejects them.
//!
//! [`Webhook::post`] owns the delivery policy for one message: wait out the rate limit (both a `429` and, before
//! it comes to that, `X-RateLimit-Remaining: 0`), retry 5xx and network errors with exponential backoff and
//! jitter, and keep retrying slowly while the webhook is gone (`404`/`401`). It returns only when Discord accepted
//! the message, rejected it as malformed (`400`), or shutdown was asked for. The webhook URL carries a secret token,
//! so it never appears in a log line, an error or `Debug` output; of a refusal only Discord's error code, message
//! and refused fields are kept, never the rest of what the server answered.

use std::time::Duration;

use anyhow::{Context as _, bail};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How patiently to deliver.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The timeout of every request.
    pub request_timeout: Duration,
    /// The first wait after a 5xx or network error; it doubles up to `backoff_max`.
    pub backoff: Duration,
    pub backoff_max: Duration,
    /// The wait between attempts while the webhook is gone (404/401).
    pub gone_retry: Duration,
    /// Give up on a webhook that is gone instead of waiting for it: an interaction's follow-up webhook does not
    /// come back once its token has expired.
    pub give_up_when_gone: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            request_timeout: Duration::from_secs(10),
            backoff: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            gone_retry: Duration::from_secs(60),
            give_up_when_gone: false,
        }
    }
}

/// How a post ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// Discord refused the payload (400): a rendering bug. Carries Discord's reason.
    Rejected(String),
    /// Shutdown was asked for before Discord accepted the message.
    Cancelled,
}

/// What the webhook has done, for logs and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub rate_limited: u64,
}

/// A Discord webhook.
pub struct Webhook {
    client: reqwest::Client,
    url: SecretString,
    policy: Policy,
    /// No request before this moment: what the last response said about the rate limit.
    not_before: Instant,
    pub counters: Counters,
    /// The same 429s for `/metrics` (a handle into `crate::metrics::Metrics`, or one nobody reads).
    pub rate_limited: prometheus_client::metrics::counter::Counter,
    /// 1 while [`Webhook::pause`] waits, for `/metrics`.
    pub paused: prometheus_client::metrics::gauge::Gauge,
    /// Where a failed post is reported, as the last problem of `service`.
    pub troubles: crate::troubles::Troubles,
    /// The service a failed post is reported for.
    pub service: &'static str,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("url", &"[redacted]").field("policy", &self.policy).finish()
    }
}

impl Webhook {
    pub fn new(url: &SecretString, policy: Policy) -> anyhow::Result<Webhook> {
        Webhook::with_client(client(policy.request_timeout)?, url, policy)
    }

    /// A webhook posted to with an existing client (whose timeout then applies, not the policy's).
    pub fn with_client(client: reqwest::Client, url: &SecretString, policy: Policy) -> anyhow::Result<Webhook> {
        let url = normalize(url.expose_secret())?;
        Ok(Webhook {
            client,
            url: SecretString::from(url),
            policy,
            not_before: Instant::now(),
            counters: Counters::default(),
            rate_limited: Default::default(),
            paused: Default::default(),
            troubles: Default::default(),
            service: "discord",
        })
    }

    /// Posts one message and returns once Discord accepted or rejected it, or shutdown was asked for.
    pub async fn post(&mut self, body: &Value, shutdown: &CancellationToken) -> Outcome {
        let mut backoff = self.policy.backoff;
        let mut gone_logged = false;
        loop {
            if !self.wait_until(self.not_before, shutdown).await {
                return Outcome::Cancelled;
            }
            self.counters.requests += 1;
            let response = self.client.post(self.url.expose_secret()).json(body).send().await;
            let wait = match response {
                Ok(response) => {
                    let status = response.status();
                    self.note_rate_limit(response.headers());
                    match status {
                        s if s.is_success() => {
                            if gone_logged {
                                tracing::info!("the Discord webhook answers again; delivering the alerts that waited");
                            }
                            return Outcome::Accepted;
                        }
                        StatusCode::TOO_MANY_REQUESTS => {
                            self.counters.rate_limited += 1;
                            self.rate_limited.inc();
                            let headers = response.headers().clone();
                            let retry_after = retry_after(&headers, response.json::<Value>().await.ok());
                            tracing::warn!("Discord rate limit hit; waiting {retry_after:?}");
                            self.not_before = self.not_before.max(Instant::now() + retry_after);
                            Duration::ZERO
                        }
                        StatusCode::BAD_REQUEST => {
                            let body = response.text().await.unwrap_or_default();
                            return Outcome::Rejected(self.refusal(status, &body));
                        }
                        StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                            if self.policy.give_up_when_gone =>
                        {
                            return Outcome::Rejected(format!("HTTP {status}: the webhook is gone"));
                        }
                        StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                            let problem = format!("the Discord webhook is gone (HTTP {status}); alerts wait");
                            self.troubles.report(self.service, problem);
                            if !gone_logged {
                                tracing::error!(
                                    "the Discord webhook is gone (HTTP {status}): it was deleted or its token is wrong. \
                                     Alerts are kept, not dropped; franz retries every {:?}. Set DISCORD_WEBHOOK_URL to a \
                                     working webhook and restart to deliver them sooner",
                                    self.policy.gone_retry
                                );
                                gone_logged = true;
                            }
                            self.policy.gone_retry
                        }
                        // Any other 4xx will not change by retrying (413, 405, …): like a 400.
                        s if s.is_client_error() && s != StatusCode::REQUEST_TIMEOUT => {
                            let body = response.text().await.unwrap_or_default();
                            return Outcome::Rejected(self.refusal(s, &body));
                        }
                        other => {
                            tracing::warn!("Discord answered HTTP {other}; retrying in about {backoff:?}");
                            self.troubles.report(self.service, format!("Discord answered HTTP {other}; retrying"));
                            next_backoff(&mut backoff, self.policy.backoff_max)
                        }
                    }
                }
                Err(error) => {
                    let error = unanswered(&error);
                    tracing::warn!(%error, "cannot reach Discord; retrying in about {backoff:?}");
                    self.troubles.report(self.service, format!("cannot reach Discord ({error}); retrying"));
                    next_backoff(&mut backoff, self.policy.backoff_max)
                }
            };
            if !self.wait_until(Instant::now() + wait, shutdown).await {
                return Outcome::Cancelled;
            }
        }
    }

    /// Why the webhook refused a post, from its answer: the status, and Discord's error code, message and, for an
    /// invalid form, each refused field with why. Nothing else of the body is kept, and the webhook's token is cut
    /// out of what is: a server at the webhook's address that echoes the request (whose path holds the token) must
    /// not put the token into a log line, `/readyz` or a reply.
    fn refusal(&self, status: StatusCode, body: &str) -> String {
        let Ok(error) = serde_json::from_str::<Value>(body) else {
            return format!("HTTP {status}, with an answer that is not Discord's (not its JSON error)");
        };
        let clipped = |value: &Value| crate::discord::clip(value.as_str().unwrap_or_default(), 200);
        let mut reason = format!("HTTP {status}: {} (code {})", clipped(&error["message"]), error["code"]);
        let mut fields = Vec::new();
        refused_fields(&error["errors"], &mut String::new(), &mut fields);
        for (field, why) in fields.iter().take(5) {
            reason.push_str(&format!("; {}: {}", crate::discord::clip(field, 100), crate::discord::clip(why, 200)));
        }
        let token = self.url.expose_secret().split(['?', '#']).next().and_then(|path| path.rsplit('/').next());
        match token {
            // Discord's tokens are 68 characters; a few letters (a test's URL) are no secret, and common in text.
            Some(token) if token.len() >= 8 => reason.replace(token, "[redacted]"),
            _ => reason,
        }
    }

    /// Waits as long as while the webhook is gone; false if shutdown came first.
    pub async fn pause(&self, shutdown: &CancellationToken) -> bool {
        self.paused.set(1);
        let waited = self.wait_until(Instant::now() + self.policy.gone_retry, shutdown).await;
        self.paused.set(0);
        waited
    }

    /// Sleeps until `deadline`; false if shutdown came first.
    async fn wait_until(&self, deadline: Instant, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => true,
            _ = shutdown.cancelled() => false,
        }
    }

    /// Discord says how many requests are left in the current window and when it resets; when none are left, the
    /// next request waits for the reset instead of provoking a 429.
    fn note_rate_limit(&mut self, headers: &reqwest::header::HeaderMap) {
        let number = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<f64>().ok());
        if let (Some(remaining), Some(reset_after)) =
            (number("x-ratelimit-remaining"), number("x-ratelimit-reset-after"))
        {
            if remaining < 1.0 {
                self.not_before = self.not_before.max(Instant::now() + seconds(reset_after));
            }
        }
    }
}

/// The HTTP client franz talks to Discord's webhooks with.
pub fn client(request_timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(request_timeout)
        .user_agent(concat!("franz/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot create the HTTP client")
}

/// Each field of Discord's `errors` tree that holds `_errors`, with its path (`embeds.0.description`) and the
/// first message.
fn refused_fields(tree: &Value, path: &mut String, out: &mut Vec<(String, String)>) {
    let Some(object) = tree.as_object() else { return };
    for (key, value) in object {
        if key == "_errors" {
            let why = value[0]["message"].as_str().unwrap_or("refused");
            out.push((path.clone(), why.to_owned()));
        } else if out.len() < 5 {
            let before = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
            refused_fields(value, path, out);
            path.truncate(before);
        }
    }
}

/// Why a request got no answer, without its URL: timed out, no connection or failed, then each cause (refused,
/// unknown host, a TLS failure), where reqwest's own text is "error sending request" for all of them.
pub fn unanswered(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "found no connection"
    } else {
        "failed"
    }
    .to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Doubles the backoff and returns the current wait with up to 25% jitter, so clients do not retry in lockstep.
fn next_backoff(backoff: &mut Duration, max: Duration) -> Duration {
    let wait = backoff.mul_f64(1.0 + fastrand::f64() * 0.25);
    *backoff = (*backoff * 2).min(max);
    wait
}

/// How long a 429 asks us to wait: the body's `retry_after`, else the `Retry-After` header, else one second.
fn retry_after(headers: &reqwest::header::HeaderMap, body: Option<Value>) -> Duration {
    let from_body = body.and_then(|b| b.get("retry_after").and_then(Value::as_f64));
    let from_header =
        headers.get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<f64>().ok());
    seconds(from_body.or(from_header).unwrap_or(1.0))
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.clamp(0.0, 3600.0)).unwrap_or(Duration::from_secs(1))
}

/// The URL to post to: the versioned API path (`/api/v10/…`, added to a copied URL without one) and
/// `wait=true`, so Discord answers only once the message exists.
pub fn normalize(url: &str) -> anyhow::Result<String> {
    let Ok(mut parsed) = Url::parse(url.trim()) else {
        bail!("DISCORD_WEBHOOK_URL is not a URL; copy it from Discord: Server Settings → Integrations → Webhooks");
    };
    if !matches!(parsed.scheme(), "https" | "http") {
        bail!("DISCORD_WEBHOOK_URL must be an https:// URL");
    }
    let segments: Vec<String> = parsed.path_segments().map(|s| s.map(str::to_owned).collect()).unwrap_or_default();
    if let [api, rest @ ..] = segments.as_slice() {
        let versioned = rest.first().is_some_and(|s| s.starts_with('v') && s[1..].chars().all(|c| c.is_ascii_digit()));
        if api == "api" && !versioned {
            let path = format!("/api/v10/{}", rest.join("/"));
            parsed.set_path(&path);
        }
    }
    let others: Vec<(String, String)> =
        parsed.query_pairs().filter(|(k, _)| k != "wait").map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    parsed.query_pairs_mut().clear().extend_pairs(others).append_pair("wait", "true");
    Ok(parsed.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copied_webhook_urls_get_the_versioned_path_and_wait() {
        assert_eq!(
            normalize("https://discord.com/api/webhooks/123/tok-en").unwrap(),
            "https://discord.com/api/v10/webhooks/123/tok-en?wait=true"
        );
        assert_eq!(
            normalize("https://discord.com/api/v9/webhooks/1/t?thread_id=5&wait=false").unwrap(),
            "https://discord.com/api/v9/webhooks/1/t?thread_id=5&wait=true"
        );
        assert_eq!(
            normalize("http://127.0.0.1:8080/api/webhooks/1/t").unwrap(),
            "http://127.0.0.1:8080/api/v10/webhooks/1/t?wait=true"
        );
    }

    #[test]
    fn bad_webhook_urls_are_refused_without_echoing_them() {
        for url in ["not a url sekrit", "ftp://discord.com/api/webhooks/1/sekrit"] {
            let error = normalize(url).unwrap_err().to_string();
            assert!(!error.contains("sekrit"), "{error}");
        }
    }

    #[test]
    fn debug_output_hides_the_url() {
        let webhook =
            Webhook::new(&SecretString::from("https://discord.com/api/webhooks/1/sekrit"), Policy::default()).unwrap();
        assert!(!format!("{webhook:?}").contains("sekrit"));
    }

    fn webhook() -> Webhook {
        Webhook::new(&SecretString::from("https://discord.com/api/webhooks/1/sekrit-token"), Policy::default()).unwrap()
    }

    #[test]
    fn a_refusal_keeps_discords_code_message_and_refused_fields() {
        let body = serde_json::json!({
            "code": 50035,
            "message": "Invalid Form Body",
            "errors": {"embeds": {"0": {"description": {"_errors": [
                {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 4096 or fewer in length."}
            ]}}}}
        });
        assert_eq!(
            webhook().refusal(StatusCode::BAD_REQUEST, &body.to_string()),
            "HTTP 400 Bad Request: Invalid Form Body (code 50035); embeds.0.description: Must be 4096 or fewer in length."
        );
    }

    #[test]
    fn a_refusal_that_echoes_the_request_keeps_neither_the_body_nor_the_token() {
        let echo = "POST /api/v10/webhooks/1/sekrit-token?wait=true HTTP/1.1\r\nhost: discord.com\r\n";
        let reason = webhook().refusal(StatusCode::BAD_REQUEST, echo);
        assert!(!reason.contains("sekrit") && !reason.contains("POST"), "{reason}");
        let echo =
            serde_json::json!({"code": 0, "message": format!("you sent {echo}"), "errors": {"sekrit-token": {}}});
        let reason = webhook().refusal(StatusCode::PAYLOAD_TOO_LARGE, &echo.to_string());
        assert!(!reason.contains("sekrit"), "{reason}");
        assert!(
            reason.starts_with("HTTP 413") && reason.contains(": you sent POST /api/v10/webhooks/1/[redacted]?"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_says_so_without_the_url() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let error = reqwest::get(format!("http://{closed}/api/webhooks/1/sekrit")).await.unwrap_err();
        let text = unanswered(&error);
        assert!(text.starts_with("found no connection: ") && text.contains("refused"), "{text}");
        assert!(!text.contains("sekrit") && !text.contains(&closed.port().to_string()), "{text}");
    }

    #[test]
    fn retry_after_prefers_the_body_then_the_header() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers, Some(serde_json::json!({"retry_after": 0.25}))), Duration::from_millis(250));
        assert_eq!(retry_after(&headers, None), Duration::from_secs(3));
        assert_eq!(retry_after(&reqwest::header::HeaderMap::new(), None), Duration::from_secs(1));
    }
}
