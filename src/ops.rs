//! The operations endpoints: `/metrics` (Prometheus), `/healthz` (the process is alive) and `/readyz` (it can do
//! its work), for scrapers, load balancers and orchestrators.
//!
//! They need no credential and show no ticket text, names or secrets. `/metrics` refreshes what is read at scrape
//! time (consumer lag, tickets by status, partitions) and then encodes `crate::metrics`. What is read from the
//! broker is read at most once per [`FRESH`], however many requests arrive: an unauthenticated flood of HTTP requests
//! must not become a flood of Kafka requests. The router is
//! served on the desk's listener, or on its own with `metrics_listen`; `app` decides which. This module does not
//! count anything itself: the services do.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rdkafka::consumer::Consumer as _;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use serde_json::json;

use crate::kafka::PlainConsumer;
use crate::metrics::{LagLabels, Metrics, ServiceLabel, StatusLabel};
use crate::store::Store;

/// How long one broker request of a scrape or readiness check may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long what a scrape or a readiness check read from the broker is used again.
pub const FRESH: Duration = Duration::from_secs(1);

/// What the endpoints read.
pub struct Ops {
    pub metrics: Arc<Metrics>,
    bootstrap: String,
    /// The topics franz needs.
    topics: Vec<String>,
    /// Each franz consumer group of an enabled service, with the topics it reads.
    groups: Vec<(String, Vec<String>)>,
    /// Whether each started task is still running, by name.
    running: Mutex<BTreeMap<String, bool>>,
    /// What the broker is and where clients reach it, as `/readyz` says.
    broker: BrokerInfo,
    /// Where the desk serves, once it does.
    desk: Mutex<Option<String>>,
    store: Option<Store>,
    /// One never-subscribed client per group, made on first use, to read its committed offsets.
    lag_clients: Mutex<BTreeMap<String, PlainConsumer>>,
    /// When the gauges read at scrape time were last read; held while they are read, so concurrent scrapes wait
    /// for one reading.
    scraped: tokio::sync::Mutex<Option<Instant>>,
    /// The topics the broker last listed (`None`: it did not answer), and when.
    listed: tokio::sync::Mutex<Option<(Instant, Option<Vec<String>>)>>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops").field("bootstrap", &self.bootstrap).field("groups", &self.groups).finish_non_exhaustive()
    }
}

/// The answer of `/readyz`, and what `franz status` reads.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Readiness {
    /// `ready` or `unready`.
    pub status: String,
    /// Why not ready; empty when ready.
    pub reasons: Vec<String>,
    /// Each started task and whether it runs.
    pub services: BTreeMap<String, bool>,
    /// The last problem each service reported (a retried delivery, an unreachable webhook, its failure).
    #[serde(default)]
    pub problems: BTreeMap<String, crate::troubles::Trouble>,
    /// The broker: what it is and where clients reach it.
    #[serde(default)]
    pub broker: BrokerInfo,
    /// The desk's address, when it runs.
    #[serde(default)]
    pub desk: Option<String>,
    /// The mailbox of tickets by email, when briefkasten runs.
    #[serde(default)]
    pub mailbox: Option<crate::mailbox::MailboxState>,
}

/// What `/readyz` says of the broker.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct BrokerInfo {
    /// `embedded`, `embedded (ephemeral)`, `redpanda`, `kafka` or `external`.
    pub kind: String,
    /// Where clients reach it: the embedded broker's advertised address, else the bootstrap address.
    pub address: String,
}

impl Ops {
    pub fn new(
        metrics: Arc<Metrics>,
        bootstrap: String,
        topics: Vec<String>,
        groups: Vec<(String, Vec<String>)>,
        store: Option<Store>,
        broker: BrokerInfo,
    ) -> Ops {
        Ops {
            metrics,
            bootstrap,
            topics,
            groups,
            running: Mutex::default(),
            broker,
            desk: Mutex::default(),
            store,
            lag_clients: Mutex::default(),
            scraped: tokio::sync::Mutex::default(),
            listed: tokio::sync::Mutex::default(),
        }
    }

    /// Drops the clients that read consumer lag, so that none keeps calling a broker that is about to stop (each
    /// would log its failed reconnects as errors).
    pub async fn release_clients(&self) {
        let clients = std::mem::take(&mut *self.lag_clients.lock().unwrap_or_else(|p| p.into_inner()));
        // Dropping a client waits for its threads: not on an async worker.
        let _ = tokio::task::spawn_blocking(move || drop(clients)).await;
    }

    /// Records where the desk serves.
    pub fn set_desk(&self, url: String) {
        *self.desk.lock().unwrap_or_else(|p| p.into_inner()) = Some(url);
    }

    /// Records that a task started (`true`) or ended (`false`).
    pub fn set_running(&self, name: &str, running: bool) {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_owned(), running);
        self.metrics.service_up.get_or_create(&ServiceLabel { service: name.to_owned() }).set(i64::from(running));
    }

    /// Checks everything `/readyz` promises: the broker answers, the topics exist, every task runs, the store
    /// has caught up with the events topic.
    pub async fn readiness(&self) -> Readiness {
        let mut reasons = Vec::new();
        match self.topics_present().await {
            Some(present) => {
                let missing: Vec<&str> =
                    self.topics.iter().filter(|t| !present.contains(t)).map(String::as_str).collect();
                if !missing.is_empty() {
                    reasons.push(format!("topics missing: {}", missing.join(", ")));
                }
            }
            None => reasons.push(format!("the broker at {} does not answer", self.bootstrap)),
        }
        let services = self.running.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (name, running) in &services {
            if !running {
                reasons.push(format!("{name} stopped"));
            }
        }
        if let Some(store) = &self.store {
            if !store.progress().borrow().caught_up {
                reasons.push("the ticket store is still catching up with the events".to_owned());
            }
        }
        let status = if reasons.is_empty() { "ready" } else { "unready" };
        Readiness {
            status: status.to_owned(),
            reasons,
            services,
            problems: self.metrics.troubles.all(),
            broker: self.broker.clone(),
            desk: self.desk.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            mailbox: self.metrics.mailbox.get(),
        }
    }

    /// The topics the broker lists, read at most once per [`FRESH`]; `None` when it does not answer.
    async fn topics_present(&self) -> Option<Vec<String>> {
        let mut listed = self.listed.lock().await;
        if let Some((_, present)) = listed.as_ref().filter(|(at, _)| at.elapsed() < FRESH) {
            return present.clone();
        }
        let present = crate::kafka::admin::metadata(&self.bootstrap, None, BROKER_TIMEOUT).await.ok().map(|metadata| {
            metadata.topics().iter().filter(|t| t.error().is_none()).map(|t| t.name().to_owned()).collect()
        });
        *listed = Some((Instant::now(), present.clone()));
        present
    }

    /// Reads what is read at scrape time into the gauges, unless that was done less than [`FRESH`] ago.
    async fn scrape(self: Arc<Self>) {
        let mut scraped = self.scraped.lock().await;
        if scraped.is_some_and(|at| at.elapsed() < FRESH) {
            return;
        }
        self.clone().read_gauges().await;
        *scraped = Some(Instant::now());
    }

    /// Reads the ticket store and the broker into the gauges.
    async fn read_gauges(self: Arc<Self>) {
        if let Some(store) = self.store.clone() {
            // Only what the gauges show, on the blocking pool: a scrape must not hold an async worker on SQLite.
            let read = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let conn = store.reader()?;
                let counts = crate::store::query::status_counts(&conn)?;
                let (to_claim, _) = crate::store::query::times_to_claim_and_close(&conn, chrono::Utc::now())?;
                Ok((counts, to_claim))
            })
            .await
            .map_err(anyhow::Error::from)
            .and_then(|read| read);
            match read {
                Ok(((open, claimed, waiting, closed), to_claim)) => {
                    self.metrics.time_to_claim_median.set(to_claim.median_secs.unwrap_or(0.0));
                    let by_status = [("open", open), ("claimed", claimed), ("waiting", waiting), ("closed", closed)];
                    for (status, count) in by_status {
                        self.metrics
                            .tickets
                            .get_or_create(&StatusLabel { status: status.to_owned() })
                            .set(count as i64);
                    }
                }
                Err(error) => tracing::warn!("metrics: cannot read the ticket store: {error:#}"),
            }
        }
        let ops = self.clone();
        let lag = tokio::task::spawn_blocking(move || ops.read_lag()).await;
        match lag {
            Ok(Ok(())) => {
                self.metrics.broker_up.set(1);
            }
            Ok(Err(error)) => {
                tracing::debug!("metrics: cannot read consumer lag: {error:#}");
                self.metrics.broker_up.set(0);
            }
            Err(error) => tracing::warn!("metrics: the lag task failed: {error}"),
        }
    }

    /// Sets the lag of every franz group on every topic it reads: the end offset minus the committed offset,
    /// summed over partitions (a partition with nothing committed counts from its start). Blocks.
    fn read_lag(&self) -> anyhow::Result<()> {
        let mut clients = self.lag_clients.lock().unwrap_or_else(|p| p.into_inner());
        let metadata_client = match clients.get(".metadata") {
            Some(client) => client,
            None => {
                let client: PlainConsumer = crate::kafka::client_config(&self.bootstrap)
                    .set("allow.auto.create.topics", "false")
                    .create_with_context(crate::kafka::Quiet)?;
                clients.entry(".metadata".to_owned()).or_insert(client)
            }
        };
        let metadata = metadata_client.fetch_metadata(None, BROKER_TIMEOUT)?;
        let partitions: BTreeMap<&str, i32> =
            metadata.topics().iter().map(|t| (t.name(), t.partitions().len() as i32)).collect();
        self.metrics.broker_partitions.set(partitions.values().map(|&p| i64::from(p)).sum());
        for (group, topics) in &self.groups {
            if !clients.contains_key(group) {
                let client: PlainConsumer = crate::kafka::group_consumer_config(&self.bootstrap, group)
                    .create_with_context(crate::kafka::Quiet)?;
                clients.insert(group.clone(), client);
            }
            let client = &clients[group];
            let mut list = TopicPartitionList::new();
            for topic in topics {
                for partition in 0..partitions.get(topic.as_str()).copied().unwrap_or(0) {
                    list.add_partition(topic, partition);
                }
            }
            // `committed_offsets`, not `committed`: DESIGN.md records that the latter hung a later drop.
            let committed = client.committed_offsets(list, BROKER_TIMEOUT)?;
            let mut lag: BTreeMap<String, i64> = topics.iter().map(|t| (t.clone(), 0)).collect();
            for element in committed.elements() {
                let (low, high) = client.fetch_watermarks(element.topic(), element.partition(), BROKER_TIMEOUT)?;
                let done = match element.offset() {
                    Offset::Offset(offset) => offset,
                    _ => low,
                };
                *lag.entry(element.topic().to_owned()).or_default() += (high - done).max(0);
            }
            for (topic, behind) in lag {
                let labels = LagLabels { group: group.clone(), topic };
                self.metrics.consumer_lag.get_or_create(&labels).set(behind);
            }
        }
        Ok(())
    }
}

/// The routes: `/metrics`, `/healthz`, `/readyz`.
pub fn router(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(readyz))
        .with_state(ops)
}

/// OpenMetrics for a scraper that asks for it (Prometheus does), classic text for everyone else.
async fn metrics(State(ops): State<Arc<Ops>>, headers: HeaderMap) -> Response {
    ops.clone().scrape().await;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if wants_openmetrics(accept) {
        ([(header::CONTENT_TYPE, crate::metrics::OPENMETRICS)], ops.metrics.encode()).into_response()
    } else {
        ([(header::CONTENT_TYPE, crate::metrics::CLASSIC)], ops.metrics.encode_classic()).into_response()
    }
}

/// Whether an `Accept` header takes OpenMetrics: media types compare without case, and `q=0` refuses one.
fn wants_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|entry| {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let refused = parts.any(|param| {
            param.split_once('=').is_some_and(|(key, value)| {
                key.trim().eq_ignore_ascii_case("q") && value.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
            })
        });
        media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
    })
}

async fn readyz(State(ops): State<Arc<Ops>>) -> Response {
    let readiness = ops.readiness().await;
    let status = if readiness.reasons.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(readiness)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_is_chosen_without_regard_to_case_and_never_when_refused_with_q_0() {
        assert!(wants_openmetrics("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"));
        assert!(wants_openmetrics("APPLICATION/OpenMetrics-Text"));
        assert!(!wants_openmetrics("application/openmetrics-text;q=0, text/plain"));
        assert!(!wants_openmetrics("application/openmetrics-text ; Q = 0.000"));
        assert!(!wants_openmetrics("text/plain, */*"));
        assert!(!wants_openmetrics(""));
        assert!(!wants_openmetrics("application/openmetrics-textual"));
    }
}
