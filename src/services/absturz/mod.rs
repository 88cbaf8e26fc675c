//! absturz: the service that turns operational errors and dead letters into Discord alerts, losing none.
//!
//! It consumes the errors and dead-letter topics in consumer group `absturz`, a batch at a time: whatever has
//! arrived is rendered, identical alerts are grouped (so a storm becomes a few embeds with counts), the embeds are
//! packed into as few messages as Discord's limits allow, and the batch's offsets are stored only after Discord
//! accepted every message of it. Without a webhook it writes alerts to the log instead. absturz reports its own
//! failures in the log, never to the errors topic it reads.

pub mod render;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::discord::webhook::{Counters, Outcome, Policy, Webhook};
use crate::kafka::{CommitOnRevoke, commit_stored, consumer_error_is_fatal, group_consumer_config};
use crate::metrics::ServiceLabel;
use render::{Alert, Embed, limits};

/// The service's name in metrics.
pub const NAME: &str = "absturz";
/// The consumer group of every absturz instance.
pub const GROUP: &str = "absturz";
/// The most records one batch takes.
const MAX_BATCH: usize = 2000;
/// How long a batch keeps collecting after its first record.
const BATCH_WINDOW: Duration = Duration::from_millis(100);

/// What absturz needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bootstrap: String,
    /// The topics it watches: the errors topic and the dead-letter topic.
    pub topics: Vec<String>,
    /// The ticket events topic, when it watches it too for service-level alerts (`due_soon`, `breached`).
    pub events_topic: Option<String>,
    pub group: String,
    /// Where alerts go; `None` writes them to the log.
    pub webhook_url: Option<SecretString>,
    pub policy: Policy,
    pub membership: CommitOnRevoke,
    /// Where it counts alerts, 429s and pauses.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Settings {
    pub fn new(bootstrap: String, topics: Vec<String>, webhook_url: Option<SecretString>) -> Self {
        Settings {
            bootstrap,
            topics,
            events_topic: None,
            group: GROUP.to_owned(),
            webhook_url,
            policy: Policy::default(),
            membership: CommitOnRevoke::default(),
            metrics: Arc::default(),
        }
    }
}

/// What absturz did before it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records whose alerts Discord accepted (or the log took).
    pub alerts: u64,
    /// Messages posted.
    pub messages: u64,
    pub webhook: Counters,
}

/// One consumed record and what it became.
struct Rendered {
    alert: Option<Alert>,
    topic: String,
    partition: i32,
    offset: i64,
}

/// `franz up`'s absturz: always runs; without a webhook it reports to the log.
pub fn plan(context: &super::Context<'_>) -> anyhow::Result<super::Plan> {
    let config = context.config;
    let webhook = config.discord.webhook_url.clone();
    if let Some(url) = &webhook {
        crate::discord::webhook::normalize(crate::config::expose(url)).context("invalid DISCORD_WEBHOOK_URL")?;
    }
    let mut watched = vec![config.topics.errors.clone(), config.topics.dead_letters.clone()];
    // Service-level alerts come from the ticket events, when the team set service levels.
    let events_topic = config.service_levels.has_targets().then(|| config.topics.events.clone());
    watched.extend(events_topic.clone());
    let status = match &webhook {
        Some(_) => format!("{} -> Discord webhook", watched.join(", ")),
        None => {
            format!("{} -> the log (set DISCORD_WEBHOOK_URL to send alerts to Discord)", watched.join(", "))
        }
    };
    let settings = Settings {
        metrics: context.metrics.clone(),
        events_topic,
        ..Settings::new(context.bootstrap.clone(), watched, webhook)
    };
    let shutdown = context.shutdown.clone();
    Ok(super::Plan::run(status, async move { run(settings, shutdown).await.map(drop) }))
}

/// Runs until `shutdown` is cancelled. A batch that Discord has not fully accepted by then is left uncommitted
/// and is delivered again by the next run (at-least-once).
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<Stats> {
    // Delivery can wait on Discord for a long time (a deleted webhook, a storm paced by rate limits) without
    // polling; librdkafka's heartbeats keep the membership alive meanwhile, so only the poll deadline must go.
    let consumer: StreamConsumer<CommitOnRevoke> = group_consumer_config(&settings.bootstrap, &settings.group)
        .set("max.poll.interval.ms", "86400000")
        .create_with_context(settings.membership.clone())?;
    let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    let mut webhook =
        settings.webhook_url.as_ref().map(|url| Webhook::new(url, settings.policy.clone())).transpose()?;
    let metrics = &settings.metrics;
    if let Some(webhook) = webhook.as_mut() {
        webhook.rate_limited = metrics.webhook_rate_limited.clone();
        webhook.paused = metrics.webhook_paused.clone();
        webhook.troubles = metrics.troubles.clone();
        webhook.service = NAME;
    }
    let mut stats = Stats::default();

    let result = async {
        loop {
            let batch = gather(&consumer, settings.events_topic.as_deref(), &shutdown).await?;
            if batch.is_empty() {
                return Ok::<_, anyhow::Error>(());
            }
            metrics.records_in.get_or_create(&ServiceLabel { service: NAME.to_owned() }).inc_by(batch.len() as u64);
            metrics.alerts_pending.set(batch.len() as i64);
            let delivered = match webhook.as_mut() {
                Some(webhook) => deliver(webhook, &batch, &shutdown, &mut stats).await,
                None => {
                    for alert in batch.iter().filter_map(|rendered| rendered.alert.as_ref()) {
                        tracing::warn!(title = %alert.embed.title, "alert: {}", alert.embed.description);
                    }
                    true
                }
            };
            if !delivered {
                return Ok(());
            }
            metrics.alerts_pending.set(0);
            let alerts = batch.iter().filter(|rendered| rendered.alert.is_some()).count() as u64;
            metrics.alerts_delivered.inc_by(alerts);
            stats.alerts += alerts;
            for rendered in &batch {
                // Fails only if the partition moved to another member; it will deliver the record again.
                let _ = consumer.store_offset(&rendered.topic, rendered.partition, rendered.offset);
            }
        }
    }
    .await;
    if let Some(webhook) = &webhook {
        stats.webhook = webhook.counters.clone();
    }
    let committed = tokio::task::spawn_blocking(move || {
        let committed = commit_stored(&consumer);
        drop(consumer);
        committed
    })
    .await?;
    result?;
    committed?;
    tracing::info!(?stats, "absturz stopped");
    Ok(stats)
}

/// Waits for a record (or shutdown), then takes whatever else arrives within the batch window.
async fn gather(
    consumer: &StreamConsumer<CommitOnRevoke>,
    events_topic: Option<&str>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<Rendered>> {
    let mut batch = Vec::new();
    let first = loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(batch),
            message = consumer.recv() => match message {
                Ok(message) => break message,
                Err(error) if consumer_error_is_fatal(&error) => return Err(error.into()),
                Err(_) => continue,
            },
        }
    };
    batch.push(rendered(&first, events_topic));
    drop(first);
    let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
    while batch.len() < MAX_BATCH {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => batch.push(rendered(&message, events_topic)),
            Ok(Err(error)) if consumer_error_is_fatal(&error) => return Err(error.into()),
            Ok(Err(_)) => break,
            Err(_) => break,
        }
    }
    Ok(batch)
}

/// A record as what it becomes: an alert, or (an event of the ticket events topic that is no service-level point)
/// nothing, its offset stored with the batch all the same.
fn rendered(message: &rdkafka::message::BorrowedMessage<'_>, events_topic: Option<&str>) -> Rendered {
    let (topic, partition, offset) = (message.topic().to_owned(), message.partition(), message.offset());
    let value = message.payload().unwrap_or_default();
    let alert = match events_topic {
        Some(events) if events == topic => render::deadline(&topic, partition, offset, value),
        _ => Some(render::render(&topic, partition, offset, value)),
    };
    Rendered { alert, topic, partition, offset }
}

/// Posts the whole batch; true once Discord accepted all of it, false if shutdown came first.
async fn deliver(webhook: &mut Webhook, batch: &[Rendered], shutdown: &CancellationToken, stats: &mut Stats) -> bool {
    for message in pack(group(batch)) {
        let embeds: Vec<Embed> = message.iter().map(|(embed, _)| embed.clone()).collect();
        stats.messages += 1;
        match webhook.post(&render::message(&embeds), shutdown).await {
            Outcome::Accepted => {}
            Outcome::Cancelled => return false,
            Outcome::Rejected(reason) => {
                tracing::error!(%reason, "Discord rejected an alert message (a rendering bug); sending its alerts plainly");
                webhook.troubles.report(NAME, format!("Discord rejected an alert message: {reason}"));
                for (_, alert) in &message {
                    let mut told = false;
                    loop {
                        stats.messages += 1;
                        match webhook.post(&render::message(&[render::minimal(alert)]), shutdown).await {
                            Outcome::Accepted => break,
                            Outcome::Cancelled => return false,
                            // Not a rendering bug then, but the webhook's setup (a forum channel needs a thread,
                            // for one): the alert waits, like for a deleted webhook.
                            Outcome::Rejected(reason) => {
                                if !told {
                                    tracing::error!(
                                        %reason,
                                        "Discord rejects even a plain alert: the webhook is probably misconfigured. Alerts are kept and retried"
                                    );
                                    told = true;
                                }
                                if !webhook.pause(shutdown).await {
                                    return false;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    true
}

/// One embed per distinct alert, in first-seen order; repeated alerts become one embed with a count and the first
/// and last time. Each embed keeps a representative alert for the plain fallback.
fn group(batch: &[Rendered]) -> Vec<(Embed, Alert)> {
    let mut order: Vec<(&Alert, usize, Option<&str>, Option<&str>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for alert in batch.iter().filter_map(|rendered| rendered.alert.as_ref()) {
        match index.get(alert.key.as_str()) {
            Some(&i) => {
                let entry = &mut order[i];
                entry.1 += 1;
                entry.3 = alert.time.as_deref().or(entry.3);
            }
            None => {
                index.insert(&alert.key, order.len());
                order.push((alert, 1, alert.time.as_deref(), alert.time.as_deref()));
            }
        }
    }
    order
        .into_iter()
        .map(|(alert, count, first, last)| {
            let embed = if count == 1 { alert.embed.clone() } else { render::grouped(alert, count, first, last) };
            (embed, alert.clone())
        })
        .collect()
}

/// Packs embeds into messages of at most 10 embeds and 6,000 characters.
fn pack(embeds: Vec<(Embed, Alert)>) -> Vec<Vec<(Embed, Alert)>> {
    let mut messages: Vec<Vec<(Embed, Alert)>> = Vec::new();
    let mut size = 0;
    for (embed, alert) in embeds {
        let fits = messages
            .last()
            .is_some_and(|m| m.len() < limits::EMBEDS_PER_MESSAGE && size + embed.size() <= limits::MESSAGE_TOTAL);
        if !fits {
            messages.push(Vec::new());
            size = 0;
        }
        size += embed.size();
        messages.last_mut().expect("a message was just pushed").push((embed, alert));
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(values: &[&str]) -> Vec<Rendered> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Rendered {
                alert: Some(render::render("errors", 0, i as i64, v.as_bytes())),
                topic: "errors".into(),
                partition: 0,
                offset: i as i64,
            })
            .collect()
    }

    fn event(message: &str, time: &str) -> String {
        serde_json::json!({"service": "aufbereitung", "level": "error", "message": message, "time": time}).to_string()
    }

    #[test]
    fn identical_alerts_are_grouped_with_a_count_and_first_and_last_time() {
        let values = [
            event("a", "2026-01-01T00:00:00Z"),
            event("b", "2026-01-01T00:00:01Z"),
            event("a", "2026-01-01T00:00:02Z"),
            event("a", "2026-01-01T00:00:03Z"),
        ];
        let grouped = group(&batch(&values.iter().map(String::as_str).collect::<Vec<_>>()));
        assert_eq!(grouped.len(), 2);
        assert!(grouped[0].0.title.ends_with("×3"), "{}", grouped[0].0.title);
        let repeated = &grouped[0].0.fields[0].value;
        assert!(
            repeated.contains("3 times") && repeated.contains("00:00:00") && repeated.contains("00:00:03"),
            "{repeated}"
        );
        assert_eq!(grouped[1].0.title, "aufbereitung · error");
    }

    #[test]
    fn messages_hold_at_most_ten_embeds_and_six_thousand_characters() {
        let values: Vec<String> = (0..95).map(|i| event(&format!("{i} {}", "x".repeat(i * 20)), "t")).collect();
        let messages = pack(group(&batch(&values.iter().map(String::as_str).collect::<Vec<_>>())));
        assert_eq!(messages.iter().map(Vec::len).sum::<usize>(), 95);
        for message in &messages {
            assert!(message.len() <= 10);
            assert!(message.iter().map(|(e, _)| e.size()).sum::<usize>() <= 6000);
        }
    }
}
