//! `cargo xtask bench alerts`: an alert storm against a webhook with Discord's rate limit.
//!
//! absturz runs against the in-process broker and a fake webhook that allows 5 requests per 2 seconds and answers
//! 429 beyond that. A burst of 5,000 alerts (100 distinct problems, each repeated) is produced while absturz runs.
//! Reported: the time until every alert is visible in the fake Discord, the requests made, and the 429s provoked
//! (in all, and after the first rate-limit window).

use std::time::{Duration, Instant};

use franz::kafka;
use franz::services::absturz::{self, Settings};
use franz_broker::EmbeddedBroker;
use rdkafka::producer::FutureRecord;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

/// A debug build of a bench is its smoke run (`cargo test --benches`, which CI runs): the same phases on small
/// sizes, to prove the bench still runs to its end. Its figures mean nothing; `cargo xtask bench` builds for release.
const SMOKE: bool = cfg!(debug_assertions);
const ALERTS: usize = if SMOKE { 200 } else { 5000 };
const DISTINCT: usize = 100;
const WINDOW: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if SMOKE {
        eprintln!("smoke run (a debug build): every phase on small sizes; its figures mean nothing");
    }
    let data = tempfile::tempdir()?;
    let broker =
        EmbeddedBroker::start(franz_broker::Settings::new("127.0.0.1:0".parse()?, data.path().to_path_buf())).await?;
    let bootstrap = broker.address().to_string();
    franz::kafka::admin::ensure_topics(&bootstrap, &["errors", "dlq"], 3, 1).await?;
    let discord = fake_discord::FakeDiscord::start().await;
    discord.limit(5, WINDOW);

    let shutdown = CancellationToken::new();
    let settings = Settings::new(
        bootstrap.clone(),
        vec!["errors".into(), "dlq".into()],
        Some(SecretString::from(discord.webhook_url())),
    );
    let service = tokio::spawn(absturz::run(settings, shutdown.clone()));

    let producer = kafka::producer(&bootstrap)?;
    let started = Instant::now();
    let mut pending = Vec::with_capacity(ALERTS);
    for i in 0..ALERTS {
        let event = serde_json::json!({
            "service": "aufbereitung", "level": "error",
            "message": format!("problem {} of the storm", i % DISTINCT),
            "time": chrono::Utc::now().to_rfc3339(), "context": {"attempt": i},
        })
        .to_string();
        pending.push(producer.send_result(FutureRecord::<str, str>::to("errors").payload(&event)).map_err(|(e, _)| e)?);
    }
    for delivery in pending {
        delivery.await?.map_err(|(e, _)| e)?;
    }
    eprintln!("burst of {ALERTS} alerts produced in {:.2}s", started.elapsed().as_secs_f64());

    while discord.alerts() < ALERTS as u64 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {} of {ALERTS} alerts after 10 minutes",
            discord.alerts()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    service.await??;

    let received = discord.received();
    let first = received.first().map(|r| r.at).unwrap_or(started);
    let limited: Vec<_> = received.iter().filter(|r| r.status == 429).collect();
    let late = limited.iter().filter(|r| r.at.duration_since(first) >= WINDOW).count();
    println!(
        "\nalert storm: {ALERTS} alerts ({DISTINCT} distinct), webhook limit 5 requests per {}s",
        WINDOW.as_secs()
    );
    println!("all visible in Discord after {:.2}s (target: under 120 s)", elapsed.as_secs_f64());
    println!(
        "requests: {}, embeds: {}, 429s: {} ({} after the first window; target: 0)",
        received.len(),
        discord.embeds().len(),
        limited.len(),
        late
    );
    Ok(())
}
