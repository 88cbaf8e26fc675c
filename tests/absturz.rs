//! absturz against the in-process broker and a fake Discord webhook: what arrives, when, and what is never lost.

use std::collections::BTreeMap;
use std::time::Duration;

use franz::discord::webhook::Policy;
use franz::services::absturz::{self, Settings, Stats};
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::util::{Harness, wait_until};
use fake_discord::{Answer, Endpoint, FakeDiscord};

struct Instance {
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<Stats>>,
}

impl Instance {
    fn start(harness: &Harness, webhook: Option<&FakeDiscord>) -> Instance {
        Instance::run(settings(harness, webhook))
    }

    fn run(settings: Settings) -> Instance {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(absturz::run(settings, shutdown.clone()));
        Instance { shutdown, task }
    }

    async fn stop(self) -> Stats {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task).await.expect("stops in time").unwrap().unwrap()
    }
}

/// absturz's settings for the harness's topics, with short waits.
fn settings(harness: &Harness, webhook: Option<&FakeDiscord>) -> Settings {
    let topics = vec![harness.topics.errors.clone(), harness.topics.dead_letters.clone()];
    let mut settings =
        Settings::new(harness.bootstrap.clone(), topics, webhook.map(|w| SecretString::from(w.webhook_url())));
    settings.policy = Policy {
        request_timeout: Duration::from_secs(5),
        backoff: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        gone_retry: Duration::from_millis(50),
        give_up_when_gone: false,
    };
    settings
}

/// Distinct error events, `n` of them.
fn events(n: usize) -> Vec<(i32, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let event = serde_json::json!({"service": "aufbereitung", "level": "error", "message": format!("problem {i}"), "time": "2026-02-24T08:32:23Z"});
            (0, event.to_string().into_bytes())
        })
        .collect()
}

/// How often each (topic, offset) footer was delivered.
fn deliveries(discord: &FakeDiscord) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for embed in discord.embeds() {
        *seen.entry(embed["footer"]["text"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn every_alert_of_a_mixed_stream_is_delivered_exactly_once_when_discord_is_healthy() {
    let harness = Harness::new(1).await;
    let discord = FakeDiscord::start().await;
    harness.produce(&harness.topics.errors, &events(20)).await;
    let letter = serde_json::json!({"error": "invalid JSON", "error_type": "json_decode_error", "raw_value": "{x", "raw_size": 2, "time": "2026-02-24T08:32:23Z", "source": {"topic": "discordMSG", "partition": 0, "offset": 1}});
    harness.produce(&harness.topics.dead_letters, &[(0, letter.to_string().into_bytes())]).await;
    harness.produce(&harness.topics.errors, &[(0, br#"{"some": "json"}"#.to_vec()), (0, b"plain text".to_vec())]).await;

    let instance = Instance::start(&harness, Some(&discord));
    wait_until("23 alerts in Discord", || async { discord.alerts() >= 23 }).await;
    let stats = instance.stop().await;

    let seen = deliveries(&discord);
    assert_eq!(seen.len(), 23, "{seen:?}");
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    assert_eq!(stats.alerts, 23);
    for request in discord.received() {
        assert_eq!(request.query, "wait=true");
        assert_eq!(request.body["allowed_mentions"], serde_json::json!({"parse": []}));
        assert!(request.body["embeds"].as_array().unwrap().len() <= 10);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_429_no_request_comes_before_retry_after_and_nothing_is_lost() {
    let harness = Harness::new(1).await;
    let discord = FakeDiscord::start().await;
    discord.script(Endpoint::Webhook, &[Answer::RateLimited(0.4)]);
    harness.produce(&harness.topics.errors, &events(3)).await;

    let instance = Instance::start(&harness, Some(&discord));
    wait_until("3 alerts in Discord", || async { discord.alerts() >= 3 }).await;
    instance.stop().await;

    let received = discord.received();
    assert_eq!(received[0].status, 429);
    let waited = received[1].at.duration_since(received[0].at);
    assert!(waited >= Duration::from_millis(400), "retried after {waited:?}");
    assert_eq!(deliveries(&discord).len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_shows_in_the_metrics_with_the_alerts_it_holds_pending_until_they_are_delivered() {
    let harness = Harness::new(1).await;
    let discord = FakeDiscord::start().await;
    discord.script(Endpoint::Webhook, &[Answer::RateLimited(2.0)]);
    harness.produce(&harness.topics.errors, &events(3)).await;
    let metrics = std::sync::Arc::new(franz::metrics::Metrics::default());
    let mut settings = settings(&harness, Some(&discord));
    settings.metrics = metrics.clone();

    let instance = Instance::run(settings);
    wait_until("the 429 counted with 3 alerts pending", || async {
        metrics.webhook_rate_limited.get() == 1 && metrics.alerts_pending.get() == 3
    })
    .await;
    assert_eq!(metrics.alerts_delivered.get(), 0, "delivered before the rate limit reset");
    wait_until("3 alerts delivered and none pending", || async {
        metrics.alerts_delivered.get() == 3 && metrics.alerts_pending.get() == 0
    })
    .await;
    instance.stop().await;
    assert_eq!(deliveries(&discord).len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_and_offsets_advance_only_after_success() {
    let harness = Harness::new(1).await;
    let discord = FakeDiscord::start().await;
    discord.script(Endpoint::Webhook, &[Answer::Status(500), Answer::Status(502), Answer::Status(503)]);
    harness.produce(&harness.topics.errors, &events(5)).await;

    let instance = Instance::start(&harness, Some(&discord));
    wait_until("5 alerts in Discord", || async { discord.alerts() >= 5 }).await;
    instance.stop().await;
    assert_eq!(discord.received().iter().filter(|r| r.status >= 500).count(), 3);

    // The accepted batch was committed: a new instance sends only the new alert.
    let instance = Instance::start(&harness, Some(&discord));
    harness.produce(&harness.topics.errors, &[(0, br#"{"after": "restart"}"#.to_vec())]).await;
    wait_until("the new alert", || async { discord.alerts() >= 6 }).await;
    instance.stop().await;
    assert_eq!(discord.alerts(), 6, "nothing was sent twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gone_webhook_pauses_delivery_and_resumes_without_losing_alerts() {
    let harness = Harness::new(1).await;
    let discord = FakeDiscord::start().await;
    discord.script(
        Endpoint::Webhook,
        &[Answer::Status(404), Answer::Status(404), Answer::Status(401), Answer::Status(404)],
    );
    harness.produce(&harness.topics.errors, &events(4)).await;
    let metrics = std::sync::Arc::new(franz::metrics::Metrics::default());
    let mut settings = settings(&harness, Some(&discord));
    settings.metrics = metrics.clone();

    let instance = Instance::run(settings);
    wait_until("4 alerts in Discord", || async { discord.alerts() >= 4 }).await;
    instance.stop().await;
    let seen = deliveries(&discord);
    assert_eq!(seen.len(), 4);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    let problem = metrics.troubles.all().remove("absturz").expect("the gone webhook is absturz's last problem");
    assert_eq!(problem.text, "the Discord webhook is gone (HTTP 404 Not Found); alerts wait");
    let secret = discord.webhook_url();
    assert!(!secret.is_empty() && !problem.text.contains(&secret), "no webhook URL in the problem");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_payload_falls_back_to_plain_alerts_and_the_stream_goes_on() {
    let harness = Harness::new(1).await;
    let discord = FakeDiscord::start().await;
    discord.script(Endpoint::Webhook, &[Answer::Status(400)]);
    harness.produce(&harness.topics.errors, &events(2)).await;

    let instance = Instance::start(&harness, Some(&discord));
    wait_until("2 plain alerts", || async { discord.embeds().len() >= 2 }).await;
    harness.produce(&harness.topics.errors, &[(0, b"later".to_vec())]).await;
    wait_until("the later alert", || async { discord.embeds().len() >= 3 }).await;
    instance.stop().await;

    let titles: Vec<String> = discord.embeds().iter().map(|e| e["title"].as_str().unwrap().to_owned()).collect();
    assert!(titles[0].contains("shown plainly") && titles[1].contains("shown plainly"), "{titles:?}");
    assert_eq!(titles[2], format!("Message on {}", harness.topics.errors));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_post_and_commit_resends_at_most_the_uncommitted_batch() {
    let harness = Harness::new(1).await;
    let discord = FakeDiscord::start().await;
    harness.produce(&harness.topics.errors, &events(8)).await;

    // Abort (no shutdown, no commit) as soon as Discord has accepted something.
    let crashed = Instance::start(&harness, Some(&discord));
    wait_until("a first delivery", || async { discord.alerts() >= 1 }).await;
    crashed.task.abort();
    let first_batch = discord.alerts();

    let instance = Instance::start(&harness, Some(&discord));
    harness.produce(&harness.topics.errors, &events(1)).await;
    wait_until("every alert at least once", || async { deliveries(&discord).len() >= 9 }).await;
    instance.stop().await;
    let total = discord.alerts();
    assert!(
        total >= 9 && total <= 9 + first_batch,
        "{total} deliveries for 9 alerts after a first batch of {first_batch}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_webhook_alerts_go_to_the_log_and_are_committed() {
    let harness = Harness::new(1).await;
    harness.produce(&harness.topics.errors, &events(3)).await;
    let instance = Instance::start(&harness, None);
    wait_until("the alerts to be consumed", || async {
        let committed = rdkafka_committed(&harness).await;
        committed >= 3
    })
    .await;
    assert_eq!(instance.stop().await.alerts, 3);
}

/// The offset group `absturz` committed on the errors topic.
async fn rdkafka_committed(harness: &Harness) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let bootstrap = harness.bootstrap.clone();
    let topic = harness.topics.errors.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer =
            franz::kafka::client_config(&bootstrap).set("group.id", absturz::GROUP).create().unwrap();
        let list = franz::kafka::partitions_at(&topic, 1, rdkafka::Offset::Invalid);
        let committed = consumer.committed_offsets(list, Duration::from_secs(5)).unwrap();
        committed.elements().first().and_then(|e| e.offset().to_raw()).unwrap_or(-1)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_steady_stream_waits_for_the_rate_limit_reset_instead_of_provoking_429s() {
    let harness = Harness::new(1).await;
    let discord = FakeDiscord::start().await;
    discord.limit(2, Duration::from_millis(700));
    let instance = Instance::start(&harness, Some(&discord));
    // One alert at a time, each delivered before the next: every one needs its own request.
    for round in 1..=6u64 {
        let event =
            serde_json::json!({"service": "s", "level": "warn", "message": format!("round {round}"), "time": "t"});
        harness.produce(&harness.topics.errors, &[(0, event.to_string().into_bytes())]).await;
        wait_until(&format!("alert {round}"), || async { discord.alerts() >= round }).await;
    }
    instance.stop().await;
    let statuses: Vec<u16> = discord.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200; 6], "the limit headers were obeyed");
}

/// Regression: when Discord rejected even the plain fallback (a misconfigured webhook answers 400 to everything),
/// the alert was logged and its offset committed, so it never reached Discord.
#[tokio::test(flavor = "multi_thread")]
async fn alerts_that_discord_rejects_even_plainly_wait_instead_of_being_dropped() {
    let harness = Harness::new(1).await;
    let discord = FakeDiscord::start().await;
    discord.script(
        Endpoint::Webhook,
        &[Answer::Status(400), Answer::Status(400), Answer::Status(400), Answer::Status(413)],
    );
    harness.produce(&harness.topics.errors, &events(1)).await;

    let instance = Instance::start(&harness, Some(&discord));
    wait_until("the alert, once Discord takes it", || async { !discord.embeds().is_empty() }).await;
    instance.stop().await;
    let statuses: Vec<u16> = discord.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![400, 400, 400, 413, 200]);
}
