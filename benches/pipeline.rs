//! `cargo xtask bench pipeline`: aufbereitung's throughput and latency next to a pass-through baseline.
//!
//! Both run in this one process against the same in-process broker, with the same client settings and the same
//! at-least-once relay; the baseline only skips the transformation. Throughput: a backlog of 200,000 valid intake
//! records, timed from service start until every output is acknowledged. Latency: a live stream at a fixed rate,
//! from the moment a record is produced until its output is read back.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use franz::config::Topics;
use franz::kafka::relay::{self, Output, RetryPolicy};
use franz::kafka::{self, CommitOnRevoke, client_config, consumer_config, group_consumer};
use franz::services::aufbereitung;
use franz_broker::{EmbeddedBroker, Settings};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

/// A debug build of a bench is its smoke run (`cargo test --benches`, which CI runs): the same phases on small
/// sizes, to prove the bench still runs to its end. Its figures mean nothing; `cargo xtask bench` builds for release.
const SMOKE: bool = cfg!(debug_assertions);
const BACKLOG: usize = if SMOKE { 2_000 } else { 200_000 };
const LIVE: usize = if SMOKE { 500 } else { 20_000 };
const LIVE_PER_MS: usize = 5; // 5,000 records a second
/// Spread over several partitions, as a real deployment would be.
const PARTITIONS: i32 = 16;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    PassThrough,
    Aufbereitung,
}

struct Figures {
    per_second: f64,
    drain: Duration,
    p50: Duration,
    p99: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if SMOKE {
        eprintln!("smoke run (a debug build): every phase on small sizes; its figures mean nothing");
    }
    let data = tempfile::tempdir()?;
    let broker = EmbeddedBroker::start(Settings::new("127.0.0.1:0".parse()?, data.path().to_path_buf())).await?;
    let bootstrap = broker.address().to_string();
    let baseline = measure(&bootstrap, Kind::PassThrough).await?;
    let pipeline = measure(&bootstrap, Kind::Aufbereitung).await?;

    println!(
        "\npipeline benchmark: {BACKLOG} records backlog, {LIVE} live at {} records/s, {PARTITIONS} partitions",
        LIVE_PER_MS * 1000
    );
    println!("{:<14} {:>12} {:>10} {:>12} {:>12}", "", "records/s", "drain", "p50 latency", "p99 latency");
    for (name, f) in [("pass-through", &baseline), ("aufbereitung", &pipeline)] {
        println!(
            "{name:<14} {:>12.0} {:>9.2}s {:>10.2}ms {:>10.2}ms",
            f.per_second,
            f.drain.as_secs_f64(),
            ms(f.p50),
            ms(f.p99)
        );
    }
    println!(
        "aufbereitung throughput = {:.1}% of the pass-through baseline (target: at least 70%)",
        100.0 * pipeline.per_second / baseline.per_second
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn measure(bootstrap: &str, kind: Kind) -> anyhow::Result<Figures> {
    let name = if kind == Kind::PassThrough { "passthrough" } else { "aufbereitung" };
    let topics = Topics {
        intake: format!("{name}-in"),
        tickets: format!("{name}-out"),
        dead_letters: format!("{name}-dlq"),
        errors: format!("{name}-errors"),
        commands: format!("{name}-commands"),
        events: format!("{name}-events"),
        cards: format!("{name}-cards"),
        files: format!("{name}-files"),
    };
    franz::kafka::admin::ensure_topics(bootstrap, &topics.all(), PARTITIONS, 1).await?;
    let producer = kafka::producer(bootstrap)?;
    eprintln!("{name}: producing a backlog of {BACKLOG} records");
    let mut pending = Vec::with_capacity(BACKLOG);
    for i in 0..BACKLOG {
        pending.push(send(&producer, &topics.intake, i)?);
    }
    for delivery in pending {
        delivery.await?.map_err(|(e, _)| e)?;
    }

    let counter = std::sync::Arc::new(client_config(bootstrap).create::<rdkafka::consumer::BaseConsumer>()?);
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let service = tokio::spawn(run(kind, bootstrap.to_owned(), topics.clone(), shutdown.clone()));
    eprintln!("{name}: draining");
    loop {
        let done: i64 = end_offsets(&counter, &topics.tickets).await?.iter().sum();
        if done >= BACKLOG as i64 {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "{name}: only {done} outputs after 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = started.elapsed();

    eprintln!("{name}: live stream of {LIVE} records");
    // The reader starts exactly at the end of the backlog's outputs, so it reads only live outputs.
    let reader: StreamConsumer = consumer_config(bootstrap).set("group.id", "bench-reader").create()?;
    let mut start = rdkafka::TopicPartitionList::new();
    for (partition, end) in end_offsets(&counter, &topics.tickets).await?.into_iter().enumerate() {
        start.add_partition_offset(&topics.tickets, partition as i32, rdkafka::Offset::Offset(end))?;
    }
    reader.assign(&start)?;
    let writer = {
        let producer = producer.clone();
        let topic = topics.intake.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let mut sent = 0;
            while sent < LIVE {
                tick.tick().await;
                for _ in 0..LIVE_PER_MS {
                    drop(send(&producer, &topic, BACKLOG + sent));
                    sent += 1;
                }
            }
        })
    };
    let field = if kind == Kind::PassThrough { "timestamp" } else { "date" };
    let mut latencies = Vec::with_capacity(LIVE);
    while latencies.len() < LIVE {
        let message = tokio::time::timeout(Duration::from_secs(60), reader.recv()).await??;
        let value: serde_json::Value = serde_json::from_slice(message.payload().unwrap_or_default())?;
        let sent: DateTime<Utc> = value[field].as_str().unwrap_or_default().parse()?;
        latencies.push((Utc::now() - sent).to_std().unwrap_or_default());
    }
    writer.await?;
    shutdown.cancel();
    service.await??;
    latencies.sort();
    Ok(Figures {
        per_second: BACKLOG as f64 / drain.as_secs_f64(),
        drain,
        p50: latencies[latencies.len() / 2],
        p99: latencies[latencies.len() * 99 / 100],
    })
}

/// A valid intake record stamped with the moment it is produced (nanoseconds survive normalization).
fn send(producer: &kafka::Producer, topic: &str, i: usize) -> anyhow::Result<rdkafka::producer::DeliveryFuture> {
    let value = serde_json::json!({
        "message": format!("benchmark ticket number {i}: the coffee machine is broken again"),
        "username": format!("user{}", i % 1000),
        "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
    })
    .to_string();
    let key = format!("user{}", i % 1000);
    loop {
        match producer.send_result(FutureRecord::to(topic).key(&key).payload(&value)) {
            Ok(delivery) => return Ok(delivery),
            Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), _)) => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err((error, _)) => return Err(error.into()),
        }
    }
}

async fn run(kind: Kind, bootstrap: String, topics: Topics, shutdown: CancellationToken) -> anyhow::Result<()> {
    match kind {
        Kind::Aufbereitung => {
            aufbereitung::run(aufbereitung::Settings::new(bootstrap, topics), shutdown).await.map(drop)
        }
        Kind::PassThrough => {
            let consumer = group_consumer(&bootstrap, "bench-passthrough", CommitOnRevoke::default())?;
            consumer.subscribe(&[&topics.intake])?;
            let producer = kafka::producer(&bootstrap)?;
            let out = topics.tickets.clone();
            relay::run(
                consumer,
                &producer,
                &shutdown,
                &RetryPolicy::default(),
                &relay::Meter::default(),
                |message: &relay::Input<'_>| Output {
                    topic: out.clone(),
                    key: message.key.map(<[u8]>::to_vec),
                    payload: message.payload.to_vec(),
                    partition: None,
                },
            )
            .await?;
            Ok(())
        }
    }
}

/// The end offset of each partition, read with one long-lived client so that polling stays cheap.
async fn end_offsets(
    counter: &std::sync::Arc<rdkafka::consumer::BaseConsumer>,
    topic: &str,
) -> anyhow::Result<Vec<i64>> {
    let (counter, topic) = (counter.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        (0..PARTITIONS).map(|p| Ok(counter.fetch_watermarks(&topic, p, Duration::from_secs(10))?.1)).collect()
    })
    .await?
}
