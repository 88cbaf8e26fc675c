//! `franz tail`: print a topic's records as JSON lines (made safe for a terminal) until the limit or the idle
//! timeout.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::{Offset, Timestamp};
use serde_json::{Value, json};

use crate::cli::TailArgs;
use crate::config::Config;
use crate::kafka::{self, admin, consumer_config, partitions_at};

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
