//! `cargo xtask bench mail`: tickets by email against real mail servers (Postfix and Dovecot from
//! `scripts/mail-servers.sh`, which needs root).
//!
//! 5,000 mails of about 4 KiB each are put into the support mailbox (IMAP APPEND, before franz starts); then
//! `franz up --ephemeral --only briefkasten,aufbereitung,akte` starts on it, and the bench reports the time from
//! its start until every mail is fetched and published (the intake topic holds 5,000 records: the target
//! is at least 200 mails/s; timed from the process's start, broker start-up included), until every one is a ticket (5,000 `created` events), and whether every mail is then
//! marked read. Then the reply latency: one public reply at a time, published on the commands topic as the desk
//! publishes it, timed from its publication until the mail is a file in the customer's Maildir (Dovecot has
//! stored it), p50, p99 and the slowest of 200 (target: p99 under 2 s). And franz's peak RSS.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use franz::schema::lifecycle::{Action, Actor, ActorSource, Command as TicketCommand};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;

/// A debug build of a bench is its smoke run (`cargo test --benches`, which CI runs): the same phases on small
/// sizes, to prove the bench still runs to its end. Its figures mean nothing; `cargo xtask bench` builds for release.
const SMOKE: bool = cfg!(debug_assertions);
const MAILS: usize = if SMOKE { 200 } else { 5_000 };
/// The size of each mail's text.
const MAIL_BYTES: usize = 4_000;
const REPLIES: usize = if SMOKE { 5 } else { 200 };
/// How long any one phase may take before the bench gives up.
const PATIENCE: Duration = Duration::from_secs(600);
const PASSWORD: &str = "secret";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name)
}

/// Starts a set of mail servers: what the script printed, or `None` where they cannot be had (not root).
fn mail_servers() -> anyhow::Result<Option<std::collections::HashMap<String, String>>> {
    let output = Command::new("bash")
        .arg(script("mail-servers.sh"))
        .arg("start")
        .env("FRANZ_MAIL_WATCH_PID", std::process::id().to_string())
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => {}
        Some(3) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            anyhow::bail!("the mail servers cannot be had here, and CI needs them: {stderr}")
        }
        Some(3) => {
            eprintln!("not run: the mail servers cannot be had here: {stderr}");
            return Ok(None);
        }
        _ => anyhow::bail!("scripts/mail-servers.sh start failed ({}): {stderr}", output.status),
    }
    Ok(Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect(),
    ))
}

/// Runs `scripts/mail-client.py`; its output.
fn client(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("python3").arg(script("mail-client.py")).args(args).stdin(Stdio::null()).output()?;
    anyhow::ensure!(output.status.success(), "mail-client.py {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8(output.stdout)?)
}

/// The records of `topic`, summed over its partitions; 0 while it does not exist.
fn records(consumer: &BaseConsumer, topic: &str) -> i64 {
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) else { return 0 };
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    (0..partitions)
        .filter_map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(5)).ok())
        .map(|(low, high)| high - low)
        .sum()
}

/// Waits until `topic` holds `count` records; the time that took from `since`.
fn until_records(consumer: &BaseConsumer, topic: &str, count: usize, since: Instant) -> anyhow::Result<Duration> {
    loop {
        if records(consumer, topic) >= count as i64 {
            return Ok(since.elapsed());
        }
        anyhow::ensure!(since.elapsed() < PATIENCE, "{topic} did not reach {count} records within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The ticket ids of the first `count` `created` events.
fn ticket_ids(bootstrap: &str, topic: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let consumer: BaseConsumer = franz::kafka::client_config(bootstrap)
        .set("group.id", "bench-mail")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    let started = Instant::now();
    let mut ids = Vec::new();
    while ids.len() < count {
        anyhow::ensure!(started.elapsed() < PATIENCE, "only {} tickets read from {topic}", ids.len());
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let event: serde_json::Value = serde_json::from_slice(message?.payload().unwrap_or_default())?;
        if event["type"] == "created" {
            ids.push(event["ticket_id"].as_str().unwrap_or_default().to_owned());
        }
    }
    Ok(ids)
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((q * samples.len() as f64) as usize).min(samples.len() - 1)].as_secs_f64() * 1000.0;
    (at(0.5), at(0.99), samples.last().map_or(0.0, |max| max.as_secs_f64() * 1000.0))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if SMOKE {
        eprintln!("smoke run (a debug build): every phase on small sizes; its figures mean nothing");
    }
    let Some(servers) = mail_servers()? else { return Ok(()) };
    let get = |key: &str| servers.get(key).cloned().ok_or_else(|| anyhow::anyhow!("mail-servers.sh printed no {key}"));
    let (imap, smtp, dir) = (get("FRANZ_MAIL_IMAP")?, get("FRANZ_MAIL_SMTP")?, get("FRANZ_MAIL_DIR")?);
    let stop = get("FRANZ_MAIL_STOP")?;
    let result = run(&imap, &smtp, Path::new(&dir)).await;
    let _ = Command::new("bash").args(["-c", &stop]).status();
    result
}

async fn run(imap: &str, smtp: &str, dir: &Path) -> anyhow::Result<()> {
    eprintln!("putting {MAILS} mails of about {MAIL_BYTES} bytes into support@franz.test's INBOX");
    let appended = Instant::now();
    client(&[
        "append-many",
        imap,
        "support@franz.test",
        PASSWORD,
        &MAILS.to_string(),
        "bench",
        &MAIL_BYTES.to_string(),
    ])?;
    eprintln!("  put in {:.1} s", appended.elapsed().as_secs_f64());

    let scratch = tempfile::tempdir()?;
    std::fs::write(scratch.path().join("franz.toml"), "")?;
    let log = scratch.path().join("up.log");
    let spawned = Instant::now();
    let mut up = Command::new(env!("CARGO_BIN_EXE_franz"))
        .args(["up", "--ephemeral", "--only", "briefkasten,aufbereitung,akte"])
        .env("FRANZ_DATA_DIR", scratch.path())
        .env("FRANZ_CONFIG", scratch.path().join("franz.toml"))
        .env("FRANZ_LOG", "info")
        .env("FRANZ_MAIL_IMAP_URL", format!("imap://{imap}/INBOX"))
        .env("FRANZ_MAIL_USER", "support@franz.test")
        .env("FRANZ_MAIL_PASSWORD", PASSWORD)
        .env("FRANZ_MAIL_SMTP_URL", format!("smtp://{smtp}"))
        .env("FRANZ_MAIL_FROM", "Support <support@franz.test>")
        .env("FRANZ_MAIL_ACKNOWLEDGE", "false")
        // Every mail comes from one customer: each is its own ticket only without a limit on open ones.
        .env("FRANZ_OPEN_TICKETS_MAX", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log)?))
        .spawn()?;
    let measured = measure(&mut up, spawned, imap, dir).await;
    let rss = common::peak_rss_mib(up.id());
    let _ = Command::new("kill").args(["-TERM", &up.id().to_string()]).status();
    let _ = up.wait();
    match measured {
        Ok(()) => {
            println!("  franz peak RSS      {rss:.0} MiB");
            Ok(())
        }
        Err(error) => {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("franz's log, last lines:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            Err(error)
        }
    }
}

async fn measure(up: &mut std::process::Child, spawned: Instant, imap: &str, dir: &Path) -> anyhow::Result<()> {
    let mut stdout = BufReader::new(up.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?);
    let mut ready = String::new();
    stdout.read_line(&mut ready)?;
    println!("  franz up ready      {:.2} s after it was started", spawned.elapsed().as_secs_f64());
    let bootstrap = ready
        .split_whitespace()
        .find_map(|word| word.strip_prefix("bootstrap="))
        .ok_or_else(|| anyhow::anyhow!("franz up printed no ready line: {ready:?}"))?
        .to_owned();
    // Keep draining: a closed pipe would end franz at its next line.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let topics = franz::config::Topics::default();
    let watch: BaseConsumer = franz::kafka::client_config(&bootstrap).create()?;
    // From the start of the process, which includes starting the broker: franz reads mail before it is ready.
    let published = until_records(&watch, &topics.intake, MAILS, spawned)?;
    let tickets = until_records(&watch, &topics.events, MAILS, spawned)?;
    let rate = MAILS as f64 / published.as_secs_f64();
    println!(
        "  mail to intake      {MAILS} mails fetched and published {:.2} s after the start: {rate:.0} mails/s (target >= 200)",
        published.as_secs_f64()
    );
    println!("  mail to ticket      {MAILS} tickets created {:.2} s after the start", tickets.as_secs_f64());
    let counted: serde_json::Value = serde_json::from_str(&client(&["count", imap, "support@franz.test", PASSWORD])?)?;
    anyhow::ensure!(counted["unseen"] == 0, "mails left unread after all became tickets: {counted}");
    println!("  marked read         {} of {} mails", counted["exists"], MAILS);

    let ids = ticket_ids(&bootstrap, &topics.events, REPLIES)?;
    let producer = franz::kafka::producer(&bootstrap)?;
    let partitions = franz::config::Config::default().partitions;
    let maildir = dir.join("mail/customer/Maildir/new");
    let mut latencies = Vec::with_capacity(REPLIES);
    for (n, ticket) in ids.iter().enumerate() {
        let before = files_in(&maildir);
        let command = TicketCommand {
            command_id: format!("bench-reply-{n}"),
            ticket_id: ticket.clone(),
            actor: Actor::staff(ActorSource::Web, "bench"),
            action: Action::Comment {
                body: format!("Reply {n}: try the export again now."),
                internal: false,
                via: None,
            },
        };
        let sent = Instant::now();
        franz::kafka::tickets::send_command(&producer, &topics.commands, partitions, &command).await?;
        while files_in(&maildir) <= before {
            anyhow::ensure!(sent.elapsed() < PATIENCE, "reply {n} did not reach the customer's Maildir");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(sent.elapsed());
    }
    let (p50, p99, max) = percentiles(latencies);
    println!(
        "  reply to mailbox    p50 {p50:.1} ms   p99 {p99:.1} ms   max {max:.1} ms   ({REPLIES} replies, one at a time; target p99 < 2000 ms)"
    );
    Ok(())
}
