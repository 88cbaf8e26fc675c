//! franz's Prometheus metrics: one registry per running franz, shared by the services through `services::Context`.
//!
//! Services count what they do (records in and out, dead letters, retries, alerts, time to claim) on the handles
//! here as it happens; what is cheaper to read than to track (consumer lag, tickets by status) is read at scrape
//! time by `ops`. The embedded broker's own metrics (`franz_broker_*`: requests, bytes, latencies, connections,
//! log bytes) are its crate's, registered here when franz runs it. Beside the metrics travel `troubles`, the
//! last problem each service reported, since every service that counts also reports, and `mailbox`, what the mail
//! service is doing now. This module only defines the
//! metrics and encodes them; it does no I/O. Names are
//! `franz_*` in base units, counters end in `_total`, and no label carries ticket text, a person's name or a
//! secret: labels are service names, topic names, consumer groups, error types and ticket statuses.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A service's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    pub service: String,
}

/// A service and the topic it wrote to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutputLabels {
    pub service: String,
    pub topic: String,
}

/// Why a record became a dead letter (the DLQ contract's `error_type`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorTypeLabel {
    pub error_type: String,
}

/// A consumer group and a topic it reads.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    pub group: String,
    pub topic: String,
}

/// The type of a ticket event (`created`, `claimed`, ..., `rejected`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub event: String,
}

/// The team a routing rule gave a new ticket (`none`: the rule set no team). Bounded: a team is named by a rule,
/// and franz takes at most `routing::RULES_MAX` rules.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TeamLabel {
    pub team: String,
}

/// A satisfaction rating, `1` to `5`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RatingLabel {
    pub rating: String,
}

/// A service-level target (`first_response`, `next_response`, `resolution`) and the ticket's priority.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlaLabel {
    pub target: String,
    pub priority: String,
}

/// A ticket status (`open`, `claimed`, `closed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

/// What the bot sent that Discord refused for good (`card`, `direct_message`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabel {
    pub what: String,
}

/// What a mail can become, or how a reply by mail can end: the `outcome`s of `franz_mails_total`.
pub const MAIL_OUTCOMES: [&str; 8] =
    ["ticket", "answer", "note", "dead_letter", "bounce", "recorded", "reply_sent", "reply_refused"];

/// What one mail became.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

/// The `what` of a card Discord refused.
pub const REFUSED_CARD: &str = "card";
/// The `what` of a direct message Discord refused.
pub const REFUSED_DIRECT_MESSAGE: &str = "direct_message";
/// The `what` of a ticket's thread (or a message in it) Discord refused.
pub const REFUSED_THREAD: &str = "thread";

/// Every metric of one running franz.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Records a service consumed, by service.
    pub records_in: Family<ServiceLabel, Counter>,
    /// Records a service produced and the broker acknowledged, by service and output topic.
    pub records_out: Family<OutputLabels, Counter>,
    /// Intake records that became dead letters, by error type.
    pub dead_letters: Family<ErrorTypeLabel, Counter>,
    /// Deliveries retried after the broker refused an output, by service.
    pub relay_retries: Family<ServiceLabel, Counter>,
    /// Ticket events akte decided, by type; `rejected` counts the commands it refused.
    pub akte_events: Family<EventLabel, Counter>,
    /// Service-level targets missed, as akte decides each `breached`.
    pub sla_breaches: Family<SlaLabel, Counter>,
    /// New tickets a routing rule matched, by the team it gave them.
    pub tickets_routed: Family<TeamLabel, Counter>,
    /// Satisfaction ratings akte recorded (a changed rating counts again), by rating.
    pub ratings: Family<RatingLabel, Counter>,
    /// Seconds from a ticket's creation to its first claim, observed as akte decides each first claim.
    pub time_to_claim: Histogram,
    /// Median seconds from a ticket's creation to its first claim, over tickets of the last 30 days; read at
    /// scrape time (the histogram starts empty with each process, this does not).
    pub time_to_claim_median: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Alert records Discord (or the log) accepted.
    pub alerts_delivered: Counter,
    /// Alert records read and not yet accepted by Discord.
    pub alerts_pending: Gauge,
    /// Answers 429 (rate limited) from the Discord webhook.
    pub webhook_rate_limited: Counter,
    /// 1 while absturz waits for a webhook that is gone or misconfigured, else 0.
    pub webhook_paused: Gauge,
    /// Cards and direct messages Discord refused for good (a 4xx other than 429), skipped so the rest goes on.
    pub discord_refused: Family<RefusedLabel, Counter>,
    /// Mails briefkasten took from the mailbox, by what they became (`ticket`, `dead_letter`).
    pub mails: Family<OutcomeLabel, Counter>,
    /// Connections to the mailbox made again after one failed or the server ended it.
    pub imap_reconnects: Counter,
    /// 1 for each service that is running, 0 for one that stopped; read at scrape time.
    pub service_up: Family<ServiceLabel, Gauge>,
    /// Records behind the end, per franz consumer group and topic; read at scrape time.
    pub consumer_lag: Family<LagLabels, Gauge>,
    /// Tickets in the store by status; read at scrape time.
    pub tickets: Family<StatusLabel, Gauge>,
    /// Partitions of all topics of the broker, embedded or not; read at scrape time.
    pub broker_partitions: Gauge,
    /// 1 when the broker answered the last metadata request, else 0; read at scrape time.
    pub broker_up: Gauge,
    /// Not a metric: the last problem each service reported, for `/readyz` and `franz status`.
    pub troubles: crate::troubles::Troubles,
    /// Not a metric: what the mailbox of tickets by email is doing now, for `/readyz` and `franz status`.
    pub mailbox: crate::mailbox::Watch,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(None)
    }
}

/// Half a minute to a week: a ticket claimed at once to one left over a long weekend.
const TIME_TO_CLAIM_BUCKETS: [f64; 12] =
    [30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 259200.0, 604800.0];

impl Metrics {
    /// A fresh registry with every metric registered, the embedded `broker`'s too when franz runs one.
    pub fn new(broker: Option<&franz_broker::Probe>) -> Metrics {
        Metrics::build(broker, true)
    }

    /// The metrics of `franz broker`: the broker's own, its partitions and whether it answers; none of the
    /// services', which would read 0 for ever there.
    pub fn broker_alone(broker: Option<&franz_broker::Probe>) -> Metrics {
        Metrics::build(broker, false)
    }

    /// A registry with the broker's metrics, and the services' (`pipeline`) too.
    fn build(broker: Option<&franz_broker::Probe>, pipeline: bool) -> Metrics {
        let mut registry = Registry::with_prefix("franz");
        let metrics = Metrics {
            records_in: Family::default(),
            records_out: Family::default(),
            dead_letters: Family::default(),
            relay_retries: Family::default(),
            akte_events: Family::default(),
            sla_breaches: Family::default(),
            tickets_routed: Family::default(),
            ratings: Family::default(),
            time_to_claim: Histogram::new(TIME_TO_CLAIM_BUCKETS),
            time_to_claim_median: Gauge::default(),
            alerts_delivered: Counter::default(),
            alerts_pending: Gauge::default(),
            webhook_rate_limited: Counter::default(),
            webhook_paused: Gauge::default(),
            discord_refused: Family::default(),
            mails: Family::default(),
            imap_reconnects: Counter::default(),
            service_up: Family::default(),
            consumer_lag: Family::default(),
            tickets: Family::default(),
            broker_partitions: Gauge::default(),
            broker_up: Gauge::default(),
            troubles: Default::default(),
            mailbox: Default::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        if pipeline {
            r.register("records_in", "Records a service consumed", metrics.records_in.clone());
            r.register(
                "records_out",
                "Records a service produced, acknowledged by the broker",
                metrics.records_out.clone(),
            );
            r.register("dead_letters", "Intake records that became dead letters", metrics.dead_letters.clone());
            r.register("relay_retries", "Output deliveries retried after a failure", metrics.relay_retries.clone());
            r.register(
                "akte_events",
                "Ticket events akte decided, by type (rejected: refused)",
                metrics.akte_events.clone(),
            );
            r.register(
                "tickets_routed",
                "New tickets a routing rule matched, by the team it gave them (none: the rule set no team)",
                metrics.tickets_routed.clone(),
            );
            r.register(
                "ratings",
                "Satisfaction ratings akte recorded, by rating (1 bad to 5 great; a changed rating counts again)",
                metrics.ratings.clone(),
            );
            r.register(
                "sla_breaches",
                "Service-level targets missed, by target and the ticket's priority, as akte decides each",
                metrics.sla_breaches.clone(),
            );
            r.register(
                "time_to_claim_seconds",
                "Time from a ticket's creation to its first claim, as akte decides each first claim",
                metrics.time_to_claim.clone(),
            );
            r.register(
                "time_to_claim_median_seconds",
                "Median time from creation to first claim, tickets of the last 30 days",
                metrics.time_to_claim_median.clone(),
            );
            r.register("mails", "Mails taken from the mailbox, by what they became", metrics.mails.clone());
            r.register(
                "imap_reconnects",
                "Connections to the mailbox made again after a failure",
                metrics.imap_reconnects.clone(),
            );
            r.register(
                "alerts_delivered",
                "Alert records accepted by Discord or the log",
                metrics.alerts_delivered.clone(),
            );
            r.register(
                "alerts_pending",
                "Alert records read and not yet accepted by Discord",
                metrics.alerts_pending.clone(),
            );
            r.register(
                "webhook_rate_limited",
                "Discord webhook answers 429 (rate limited)",
                metrics.webhook_rate_limited.clone(),
            );
            r.register(
                "webhook_paused",
                "1 while absturz waits for a gone or misconfigured webhook",
                metrics.webhook_paused.clone(),
            );
            r.register(
                "discord_refused",
                "Cards and direct messages Discord refused for good, skipped (what: card, direct_message)",
                metrics.discord_refused.clone(),
            );
            r.register("service_up", "1 for a running service, 0 for a stopped one", metrics.service_up.clone());
            r.register(
                "consumer_lag_records",
                "Records behind the end, per consumer group and topic",
                metrics.consumer_lag.clone(),
            );
            r.register("tickets", "Tickets in the store by status", metrics.tickets.clone());
        }
        r.register("broker_partitions", "Partitions of all topics", metrics.broker_partitions.clone());
        r.register("broker_up", "1 when the broker answered metadata at the last scrape", metrics.broker_up.clone());
        if let Some(broker) = broker {
            broker.register_metrics(r.sub_registry_with_prefix("broker"));
        }
        if pipeline {
            for error_type in ["json_decode_error", "validation_error", "unexpected_error"] {
                let _ = metrics.dead_letters.get_or_create(&ErrorTypeLabel { error_type: error_type.to_owned() });
            }
            for what in [REFUSED_CARD, REFUSED_DIRECT_MESSAGE, REFUSED_THREAD] {
                let _ = metrics.discord_refused.get_or_create(&RefusedLabel { what: what.to_owned() });
            }
            for rating in 1..=5 {
                let _ = metrics.ratings.get_or_create(&RatingLabel { rating: rating.to_string() });
            }
            for outcome in MAIL_OUTCOMES {
                let _ = metrics.mails.get_or_create(&OutcomeLabel { outcome: outcome.to_owned() });
            }
        }
        Metrics { registry, ..metrics }
    }

    /// The exposition in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// The exposition in Prometheus' classic text format (0.0.4), for scrapers that do not ask for OpenMetrics
    /// (`curl`, `promtool check metrics`).
    pub fn encode_classic(&self) -> String {
        classic(&self.encode())
    }
}

/// The content type of [`Metrics::encode`]'s text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of [`Metrics::encode_classic`]'s text.
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics text as classic text. The two differ, for what this registry holds, only in that OpenMetrics
/// names a counter family without the `_total` its samples carry, ends with `# EOF`, and may have `# UNIT` lines;
/// classic text wants the family named like its samples.
fn classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        openmetrics.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let header = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match header {
            Some(header) => out.push_str(&header),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counter_families_like_their_samples() {
        let metrics = Metrics::default();
        metrics.alerts_delivered.inc();
        let text = metrics.encode_classic();
        assert!(text.contains("# TYPE franz_alerts_delivered_total counter\n"), "{text}");
        assert!(text.contains("# HELP franz_alerts_delivered_total "), "{text}");
        assert!(text.contains("\nfranz_alerts_delivered_total 1\n"), "{text}");
        assert!(text.contains("# TYPE franz_alerts_pending gauge\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }
}
