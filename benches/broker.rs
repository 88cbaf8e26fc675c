//! `cargo xtask bench broker`: franz's embedded broker next to librdkafka's MockCluster, in one run.
//!
//! franz runs as its own process (the release binary, `franz broker`), so its peak RSS is its own; the
//! MockCluster runs in this process, as librdkafka offers it. Produce: 1,000,000 records of 200 bytes from one
//! idempotent `acks=all` producer, timed from the first send to the last acknowledgement; the brokers take turns,
//! three runs each, and the median counts. Consume: one group
//! member reading the whole backlog, timed from its first record to its last (the group join is reported
//! apart; `fetch.queue.backoff.ms` is 10 ms for both, see `consume`). Then franz is filled to 1 GiB, restarted (start-up timed from spawn to its ready line and to its first
//! metadata answer), and its whole backlog is consumed again.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};

const RECORD_BYTES: usize = 200;
/// A debug build of a bench is its smoke run (`cargo test --benches`, which CI runs): the same phases on small
/// sizes, to prove the bench still runs to its end. Its figures mean nothing; `cargo xtask bench` builds for release.
const SMOKE: bool = cfg!(debug_assertions);
const PRODUCED: usize = if SMOKE { 10_000 } else { 1_000_000 };
/// Produce runs per broker, taken in turns.
const ROUNDS: usize = if SMOKE { 1 } else { 3 };
const RETAINED_BYTES: u64 = if SMOKE { 4 << 20 } else { 1 << 30 };
const PARTITIONS: i32 = 4;
const TOPIC: &str = "bench";

struct Started {
    child: Child,
    to_ready: Duration,
}

fn start_franz(data: &Path, port: u16) -> anyhow::Result<Started> {
    let began = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_franz"))
        .args(["broker", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data)
        .env("FRANZ_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    anyhow::ensure!(line.starts_with("ready "), "franz broker did not start: {line:?}");
    let to_ready = began.elapsed();
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    Ok(Started { child, to_ready })
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            total += if path.is_dir() { dir_bytes(&path) } else { entry.metadata().map(|m| m.len()).unwrap_or(0) };
        }
    }
    total
}

/// Produces `count` records (or, with `until`, until it says stop) and returns records per second.
async fn produce(bootstrap: &str, count: usize, mut until: impl FnMut() -> bool) -> anyhow::Result<(usize, f64)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "60000")
        .create()?;
    let payload = vec![b'x'; RECORD_BYTES];
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let began = Instant::now();
    let mut sent = 0;
    while sent < count && !until() {
        let record = FutureRecord::<(), _>::to(TOPIC).partition((sent % PARTITIONS as usize) as i32).payload(&payload);
        match producer.send_result(record) {
            Ok(delivery) => {
                in_flight.push(delivery);
                sent += 1;
            }
            Err((error, _)) => {
                anyhow::ensure!(!in_flight.is_empty(), "cannot queue a record: {error}");
                in_flight.next().await;
            }
        }
        while in_flight.len() >= 200_000 {
            let delivered = in_flight.next().await.expect("not empty");
            anyhow::ensure!(matches!(delivered, Ok(Ok(_))), "a record was not acknowledged: {delivered:?}");
        }
    }
    while let Some(delivered) = in_flight.next().await {
        anyhow::ensure!(matches!(delivered, Ok(Ok(_))), "a record was not acknowledged: {delivered:?}");
    }
    Ok((sent, sent as f64 / began.elapsed().as_secs_f64()))
}

struct Consumed {
    records: usize,
    join: Duration,
    per_second: f64,
}

/// One group member reads `expected` records; the rate is timed from its first record to its last.
fn consume(bootstrap: &str, expected: usize) -> anyhow::Result<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        // librdkafka stops fetching a partition for a whole second (the default) whenever its local queue is
        // full, which makes a backlog read measure that pause rather than the broker. Same setting for both.
        .set("fetch.queue.backoff.ms", "10")
        .create()?;
    consumer.subscribe(&[TOPIC])?;
    let began = Instant::now();
    let mut first = None;
    let mut records = 0;
    while records < expected {
        anyhow::ensure!(began.elapsed() < Duration::from_secs(600), "only {records} of {expected} records arrived");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                first.get_or_insert_with(Instant::now);
                records += 1;
            }
            Some(Err(error)) => anyhow::bail!("consume failed: {error}"),
            None => {}
        }
    }
    let first = first.expect("records arrived");
    Ok(Consumed { records, join: first - began, per_second: records as f64 / first.elapsed().as_secs_f64() })
}

fn retained(bootstrap: &str) -> anyhow::Result<usize> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let mut total = 0;
    for partition in 0..PARTITIONS {
        let (low, high) = consumer.fetch_watermarks(TOPIC, partition, Duration::from_secs(10))?;
        total += (high - low) as usize;
    }
    Ok(total)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if SMOKE {
        eprintln!("smoke run (a debug build): every phase on small sizes; its figures mean nothing");
    }
    let data = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let bootstrap = format!("127.0.0.1:{port}");
    let mut franz = start_franz(data.path(), port)?;
    franz::kafka::admin::ensure_topics(&bootstrap, &[TOPIC], PARTITIONS, 1).await?;

    // Produce: the two brokers take turns, ROUNDS times each, and the median counts. One run of each is at the
    // mercy of whatever else the two cores do at that moment.
    let (mut franz_rates, mut mock_rates) = (Vec::new(), Vec::new());
    let mock = MockCluster::new(1)?;
    mock.create_topic(TOPIC, PARTITIONS, 1)?;
    for round in 1..=ROUNDS {
        eprintln!("round {round}/{ROUNDS}: producing {PRODUCED} records to the MockCluster, then to franz…");
        mock_rates.push(produce(&mock.bootstrap_servers(), PRODUCED, || false).await?.1);
        franz_rates.push(produce(&bootstrap, PRODUCED, || false).await?.1);
    }
    let (mock_produce, franz_produce) = (median(&mut mock_rates), median(&mut franz_rates));

    // Consume: the MockCluster reads what it kept, then goes, so the two never share the CPU while reading.
    let kept = retained(&mock.bootstrap_servers())?;
    eprintln!("consuming the MockCluster's backlog ({kept} records it kept)…");
    let mock_consume = consume(&mock.bootstrap_servers(), kept)?;
    drop(mock);
    eprintln!("consuming franz's first {PRODUCED} records…");
    let franz_first_consume = consume(&bootstrap, PRODUCED)?;

    eprintln!("filling franz to {} MiB…", RETAINED_BYTES >> 20);
    let dir = data.path().to_path_buf();
    let mut checked = 0usize;
    let (added, _) = produce(&bootstrap, usize::MAX, || {
        checked += 1;
        checked % 100_000 == 0 && dir_bytes(&dir) >= RETAINED_BYTES
    })
    .await?;
    let total = PRODUCED * ROUNDS + added;
    let on_disk = dir_bytes(data.path());
    let rss_filling = common::peak_rss_mib(franz.child.id());
    Command::new("kill").args(["-TERM", &franz.child.id().to_string()]).status()?;
    franz.child.wait()?;

    let began = Instant::now();
    let mut restarted = start_franz(data.path(), port)?;
    franz::kafka::admin::metadata(&bootstrap, None, Duration::from_secs(10)).await?;
    let to_metadata = began.elapsed();
    eprintln!("consuming franz's whole backlog ({total} records)…");
    let franz_consume = consume(&bootstrap, total)?;
    let rss_after = common::peak_rss_mib(restarted.child.id());
    restarted.child.kill()?;
    restarted.child.wait()?;

    println!(
        "\nbroker benchmark: {RECORD_BYTES}-byte records, {PARTITIONS} partitions, one idempotent acks=all producer"
    );
    println!("{:<44} {:>14} {:>14}", "", "franz", "MockCluster");
    println!(
        "{:<44} {:>14.0} {:>14.0}",
        format!("produce records/s (median of {ROUNDS}×{PRODUCED})"),
        franz_produce,
        mock_produce
    );
    let show = |rates: &[f64]| rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
    println!("{:<44} {:>14} {:>14}", "  (every run, sorted)", "", "");
    println!("    franz: {}\n    MockCluster: {}", show(&franz_rates), show(&mock_rates));
    println!(
        "{:<44} {:>14.0} {:>14.0}",
        "consume records/s (franz: first 1M / mock: all)", franz_first_consume.per_second, mock_consume.per_second
    );
    println!("{:<44} {:>14} {:>14}", "records consumed", franz_first_consume.records, mock_consume.records);
    println!(
        "{:<44} {:>13.0}ms {:>13.0}ms",
        "group join before the first record",
        franz_first_consume.join.as_secs_f64() * 1000.0,
        mock_consume.join.as_secs_f64() * 1000.0
    );
    println!("\nfranz with {:.0} MiB on disk ({total} records):", on_disk as f64 / 1048576.0);
    println!(
        "  start-up: {:.0} ms to the ready line, {:.0} ms to the first metadata answer",
        restarted.to_ready.as_secs_f64() * 1000.0,
        to_metadata.as_secs_f64() * 1000.0
    );
    println!(
        "  consume records/s over the whole backlog: {:.0} ({} records)",
        franz_consume.per_second, franz_consume.records
    );
    println!(
        "  peak RSS: {rss_filling:.1} MiB while producing and filling, {rss_after:.1} MiB after restart and full consume"
    );
    println!(
        "targets: produce >= MockCluster: {}; consume >= 1,000,000/s: {}; RSS < 100 MiB: {}; start-up < 300 ms: {}",
        verdict(franz_produce >= mock_produce),
        verdict(franz_consume.per_second >= 1_000_000.0),
        verdict(rss_filling.max(rss_after) < 100.0),
        verdict(restarted.to_ready < Duration::from_millis(300)),
    );
    Ok(())
}

fn median(rates: &mut [f64]) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}
