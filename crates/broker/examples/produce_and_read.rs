//! The broker as a library, end to end: start it on a free port in a temporary directory, create a topic with
//! rdkafka's admin client, produce a few records with a `FutureProducer`, read them back with a `StreamConsumer`
//! in a consumer group (committing what it read), print them, and stop the broker.
//!
//! Run it with `cargo run -p franz-broker --example produce_and_read`. It gives up with an error if it has not read
//! every record back within [`DEADLINE`], so it always ends on its own (CI runs it).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, bail};
use franz_broker::{EmbeddedBroker, Settings};
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// How long producing and reading back may take, all together.
const DEADLINE: Duration = Duration::from_secs(30);

const TOPIC: &str = "greetings";

const RECORDS: [(&str, &str); 6] =
    [("en", "hello"), ("de", "hallo"), ("fr", "bonjour"), ("es", "hola"), ("it", "ciao"), ("fi", "moi")];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The data directory is removed when `data` is dropped; give a directory of your own to keep the topics and
    // committed offsets across runs.
    let data = tempfile::tempdir()?;
    let broker = EmbeddedBroker::start(Settings::new("127.0.0.1:0".parse()?, data.path().to_path_buf())).await?;
    let bootstrap = broker.address().to_string();
    println!("broker listening on {bootstrap}, data in {}", data.path().display());

    // The clients live inside `produce_and_read`, so they are closed (the consumer leaving its group) while the
    // broker still runs, whether they finished or ran out of time.
    let outcome = tokio::time::timeout(DEADLINE, produce_and_read(&bootstrap)).await;
    broker.stop().await;
    match outcome {
        Ok(result) => result,
        Err(_) => bail!("did not read every record back within {}s", DEADLINE.as_secs()),
    }
}

async fn produce_and_read(bootstrap: &str) -> anyhow::Result<()> {
    let admin: AdminClient<_> = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    // One node, so a replication factor of 1; three partitions, so the keys spread over them.
    let created =
        admin.create_topics(&[NewTopic::new(TOPIC, 3, TopicReplication::Fixed(1))], &AdminOptions::new()).await?;
    for result in created {
        let name = result.map_err(|(name, code)| anyhow::anyhow!("cannot create topic {name}: {code}"))?;
        println!("created topic {name} with 3 partitions");
    }

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    for (key, value) in RECORDS {
        let delivery = producer
            .send(FutureRecord::to(TOPIC).key(key).payload(value), Duration::from_secs(5))
            .await
            .map_err(|(error, _)| error)
            .with_context(|| format!("cannot produce {key}={value}"))?;
        println!("produced {key}={value} to partition {} at offset {}", delivery.partition, delivery.offset);
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "example-readers")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[TOPIC])?;
    let mut unread: BTreeSet<&str> = RECORDS.iter().map(|(key, _)| *key).collect();
    while !unread.is_empty() {
        let message = consumer.recv().await?;
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
        println!("read {key}={value} from partition {} at offset {}", message.partition(), message.offset());
        unread.remove(key.as_str());
    }
    // The group's offsets are kept by the broker (and on disk): a consumer of the same group started later would
    // begin after these records.
    consumer.commit_consumer_state(CommitMode::Sync)?;
    println!("read all {} records and committed the group's offsets", RECORDS.len());
    Ok(())
}
