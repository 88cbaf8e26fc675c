//! Topic administration against any Kafka-protocol broker: reachability, creation and description.
//!
//! librdkafka's metadata and watermark calls block, so they run on the blocking pool. Creation is idempotent:
//! an existing topic is fine, and one with fewer partitions than asked for is reported, not changed. A topic that is
//! a map is asked to be compacted, and created without compaction on a cluster that cannot compact.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::Consumer as _;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::Metadata;

use super::client_config;

/// One topic as `franz topics` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: i32,
    /// The high watermark of each partition, in partition order.
    pub end_offsets: Vec<i64>,
}

/// What start-up did with one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicStatus {
    pub name: String,
    pub partitions: i32,
    pub created: bool,
}

/// How long to wait for a broker before saying it cannot be reached.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(10);

/// Fetches cluster metadata (one topic, or all), failing with a message that names the address.
pub async fn metadata(bootstrap: &str, topic: Option<&str>, timeout: Duration) -> anyhow::Result<Metadata> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let consumer: super::PlainConsumer = client_config(&bootstrap)
            .set("allow.auto.create.topics", "false")
            .create_with_context(super::Quiet)
            .context("cannot create a Kafka client")?;
        consumer.fetch_metadata(topic.as_deref(), timeout).map_err(|error| {
            anyhow!(
                "cannot reach a Kafka broker at {bootstrap} within {}s ({error}); start one with `franz up` or pass --bootstrap HOST:PORT",
                timeout.as_secs()
            )
        })
    })
    .await
    .context("the metadata task failed")?
}

/// Creates the topics that do not exist yet with `partitions` each. When all exist, nothing is created, so this
/// also works against brokers or accounts that may not create topics.
pub async fn ensure_topics(
    bootstrap: &str,
    names: &[&str],
    partitions: i32,
    replication: i32,
) -> anyhow::Result<Vec<TopicStatus>> {
    ensure_topics_keeping(bootstrap, names, partitions, replication, &[]).await
}

/// [`ensure_topics`], creating the topics named in `forever` with no retention (`retention.ms` and
/// `retention.bytes` -1): their records are a history that must never expire. A topic that exists already keeps
/// the settings it was created with.
pub async fn ensure_topics_keeping(
    bootstrap: &str,
    names: &[&str],
    partitions: i32,
    replication: i32,
    forever: &[&str],
) -> anyhow::Result<Vec<TopicStatus>> {
    ensure_topics_with(bootstrap, names, partitions, replication, forever, &[]).await
}

/// [`ensure_topics_keeping`], creating the topics named in `compacted` with `cleanup.policy=compact` too, as maps
/// whose newest record per key is all that counts. A cluster that cannot compact (franz's embedded broker refuses
/// the setting with `INVALID_CONFIG`) gets them without it, and they keep every record, which is correct, only
/// larger; it is said once in the log.
pub async fn ensure_topics_with(
    bootstrap: &str,
    names: &[&str],
    partitions: i32,
    replication: i32,
    forever: &[&str],
    compacted: &[&str],
) -> anyhow::Result<Vec<TopicStatus>> {
    let mut described = describe(bootstrap, REACH_TIMEOUT).await?;
    let missing: Vec<&str> = names.iter().copied().filter(|name| !described.iter().any(|t| t.name == *name)).collect();
    let mut created = Vec::new();
    if !missing.is_empty() {
        let wanted = Retention { partitions, replication, forever, compacted };
        created = create(bootstrap, &missing, &wanted).await?;
        described = describe(bootstrap, REACH_TIMEOUT).await?;
    }
    names
        .iter()
        .map(|name| {
            let info = described
                .iter()
                .find(|t| t.name == *name)
                .ok_or_else(|| anyhow!("topic {name} was not created on {bootstrap}"))?;
            Ok(TopicStatus {
                name: info.name.clone(),
                partitions: info.partitions,
                created: created.contains(&info.name),
            })
        })
        .collect()
}

/// What topics are created with.
struct Retention<'a> {
    partitions: i32,
    replication: i32,
    /// Created with no retention.
    forever: &'a [&'a str],
    /// Created compacted, where the cluster can compact.
    compacted: &'a [&'a str],
}

/// Creates topics; one that appeared meanwhile is fine. A compacted topic the cluster refuses to compact is created
/// again without compaction. Returns the names it created.
async fn create(bootstrap: &str, names: &[&str], wanted: &Retention<'_>) -> anyhow::Result<Vec<String>> {
    let admin: AdminClient<super::Quiet> =
        client_config(bootstrap).create_with_context(super::Quiet).context("cannot create a Kafka admin client")?;
    let options = AdminOptions::new().operation_timeout(Some(REACH_TIMEOUT)).request_timeout(Some(REACH_TIMEOUT));
    let mut created = Vec::new();
    let mut uncompacted = Vec::new();
    let new: Vec<NewTopic<'_>> =
        names.iter().map(|name| new_topic(name, wanted, wanted.compacted.contains(name))).collect();
    let results =
        admin.create_topics(&new, &options).await.with_context(|| format!("cannot create topics on {bootstrap}"))?;
    for result in results {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, RDKafkaErrorCode::InvalidConfig)) if wanted.compacted.contains(&name.as_str()) => {
                uncompacted.push(name)
            }
            Err((name, code)) => return Err(anyhow!("cannot create topic {name} on {bootstrap}: {code}")),
        }
    }
    if !uncompacted.is_empty() {
        let names: Vec<&str> = uncompacted.iter().map(String::as_str).collect();
        tracing::info!(
            "the cluster at {bootstrap} cannot compact topics; created {} without compaction, keeping every record",
            names.join(", ")
        );
        let new: Vec<NewTopic<'_>> = names.iter().map(|name| new_topic(name, wanted, false)).collect();
        let results = admin
            .create_topics(&new, &options)
            .await
            .with_context(|| format!("cannot create topics on {bootstrap}"))?;
        for result in results {
            match result {
                Ok(name) => created.push(name),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(anyhow!("cannot create topic {name} on {bootstrap}: {code}")),
            }
        }
    }
    Ok(created)
}

/// The creation of `name`: with no retention if it is kept forever, and compacted if `compact`.
fn new_topic<'a>(name: &'a str, wanted: &Retention<'_>, compact: bool) -> NewTopic<'a> {
    let mut topic = NewTopic::new(name, wanted.partitions, TopicReplication::Fixed(wanted.replication));
    if wanted.forever.contains(&name) {
        topic = topic.set("retention.ms", "-1").set("retention.bytes", "-1");
    }
    if compact {
        topic = topic.set("cleanup.policy", "compact");
    }
    topic
}

/// Every non-internal topic with its partitions and end offsets, sorted by name.
pub async fn describe(bootstrap: &str, timeout: Duration) -> anyhow::Result<Vec<TopicInfo>> {
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: super::PlainConsumer =
            client_config(&bootstrap).create_with_context(super::Quiet).context("cannot create a Kafka client")?;
        let metadata = consumer
            .fetch_metadata(None, timeout)
            .map_err(|error| anyhow!("cannot reach a Kafka broker at {bootstrap} ({error}); is `franz up` running?"))?;
        let mut topics = Vec::new();
        for topic in metadata.topics().iter().filter(|t| !t.name().starts_with("__")) {
            let mut ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
            ids.sort_unstable();
            let mut end_offsets = Vec::new();
            for id in ids {
                let (_, high) = consumer
                    .fetch_watermarks(topic.name(), id, timeout)
                    .with_context(|| format!("cannot read the end offset of {}/{id}", topic.name()))?;
                end_offsets.push(high);
            }
            topics.push(TopicInfo {
                name: topic.name().to_owned(),
                partitions: topic.partitions().len() as i32,
                end_offsets,
            });
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    })
    .await
    .context("the describe task failed")?
}
