//! The short-lived subcommands: `ticket`, `tail`, `produce`, `topics` and `config`.
//!
//! Each connects to a running broker, does one thing, prints for people and scripts (data on stdout, progress
//! and problems on stderr), and returns. None of them starts a broker or a service; that is `app`'s job.

use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::{Offset, Timestamp};
use serde_json::{Value, json};

use crate::cli::{ProduceArgs, TailArgs, TicketArgs};
use crate::config::Config;
use crate::intake::{self, Submission};
use crate::kafka::{self, admin, consumer_config, partitions_at};

/// `franz ticket`: publish one ticket as the Discord bot does and print its id.
pub async fn ticket(config: &Config, args: TicketArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let record = intake::record(Submission {
        message: args.message,
        username: args.user,
        user_id: args.user_id,
        ..Submission::default()
    })?;
    admin::metadata(&config.bootstrap, None, admin::REACH_TIMEOUT).await?;
    let producer = kafka::producer(&config.bootstrap)?;
    let receipt = intake::publish_record(&producer, &config.topics.intake, &record).await?;
    writeln!(out, "{}", receipt.ticket_id)?;
    tracing::info!(
        partition = receipt.partition,
        offset = receipt.offset,
        "ticket published to {}",
        config.topics.intake
    );
    Ok(())
}

/// `franz tail`: print records as JSON lines until the limit or the idle timeout.
pub async fn tail(config: &Config, args: TailArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let metadata = admin::metadata(&config.bootstrap, Some(&args.topic), admin::REACH_TIMEOUT).await?;
    let partitions = match metadata.topics().first() {
        Some(topic) if topic.error().is_none() && !topic.partitions().is_empty() => topic.partitions().len() as i32,
        _ => bail!("topic {} does not exist on {}; `franz topics` lists the topics", args.topic, config.bootstrap),
    };
    // librdkafka's consumer needs a group id even for assigned partitions; tail never joins it or commits.
    let consumer: StreamConsumer<kafka::Quiet> = consumer_config(&config.bootstrap)
        .set("enable.auto.commit", "false")
        .set("group.id", format!("franz-tail-{}", uuid::Uuid::new_v4()))
        .create_with_context(kafka::Quiet)
        .context("cannot create a Kafka consumer")?;
    let start = if args.from_beginning { Offset::Beginning } else { Offset::End };
    consumer.assign(&partitions_at(&args.topic, partitions, start))?;

    let idle = args.timeout.map(Duration::from_secs_f64);
    let mut seen = 0u64;
    while args.limit.is_none_or(|limit| seen < limit) {
        let message = match idle {
            Some(idle) => match tokio::time::timeout(idle, consumer.recv()).await {
                Ok(message) => message?,
                Err(_) => break,
            },
            None => consumer.recv().await?,
        };
        // Records are anyone's text: shown, never acted on by the terminal (the line is the same JSON to a program).
        writeln!(out, "{}", crate::terminal::terminal_json(&record_json(&message)))?;
        out.flush()?;
        seen += 1;
    }
    if let Some(limit) = args.limit.filter(|limit| seen < *limit) {
        bail!("timed out: {seen} of {limit} records arrived on {}", args.topic);
    }
    Ok(())
}

/// One record as `franz tail` prints it. The value is embedded as JSON when it is JSON, as a string when it is
/// other text, and as base64 (`value_b64`) when it is not UTF-8.
fn record_json(message: &impl rdkafka::message::Message) -> Value {
    let mut line = json!({
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "key": message.key().map(String::from_utf8_lossy),
    });
    if let Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) = message.timestamp() {
        line["timestamp_ms"] = ms.into();
    }
    match message.payload() {
        None => line["value"] = Value::Null,
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => line["value"] = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())),
            Err(_) => line["value_b64"] = base64::engine::general_purpose::STANDARD.encode(bytes).into(),
        },
    }
    line
}

/// `franz produce`: publish each line of `input` as one record and wait for every acknowledgement.
pub async fn produce(config: &Config, args: ProduceArgs, input: impl BufRead) -> anyhow::Result<u64> {
    admin::metadata(&config.bootstrap, None, admin::REACH_TIMEOUT).await?;
    let producer = kafka::producer(&config.bootstrap)?;
    let mut pending = FuturesUnordered::new();
    let (mut published, mut failures) = (0u64, 0u64);
    let mut settle = |result: Option<Result<OwnedDeliveryResult, _>>| match result {
        Some(Ok(Ok(_))) => published += 1,
        Some(Ok(Err((error, _)))) => {
            failures += 1;
            tracing::error!(%error, "a record was not acknowledged");
        }
        Some(Err(_canceled)) => failures += 1,
        None => {}
    };
    for line in input.lines() {
        let line = line.context("cannot read standard input")?;
        let mut record = FutureRecord::<str, str>::to(&args.topic).payload(&line);
        if let Some(key) = &args.key {
            record = record.key(key);
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => break pending.push(delivery),
                // The producer's queue is full: wait for an acknowledgement to make room.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), again)) => {
                    record = again;
                    settle(pending.next().await);
                }
                Err((error, _)) => bail!("cannot publish to {}: {error}", args.topic),
            }
        }
    }
    while !pending.is_empty() {
        settle(pending.next().await);
    }
    if failures > 0 {
        bail!("{failures} records were not acknowledged by {} ({published} were)", config.bootstrap);
    }
    eprintln!("published {published} records to {}", args.topic);
    Ok(published)
}

/// `franz topics`: a table of topics, partitions and end offsets.
pub async fn topics(config: &Config, out: &mut impl Write) -> anyhow::Result<()> {
    let topics = admin::describe(&config.bootstrap, admin::REACH_TIMEOUT).await?;
    writeln!(out, "{:<30} {:>10} {:>12}  end offsets by partition", "topic", "partitions", "records")?;
    for topic in topics {
        let total: i64 = topic.end_offsets.iter().sum();
        let offsets: Vec<String> = topic.end_offsets.iter().map(i64::to_string).collect();
        writeln!(out, "{:<30} {:>10} {:>12}  {}", topic.name, topic.partitions, total, offsets.join(" "))?;
    }
    Ok(())
}
