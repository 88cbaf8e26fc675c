//! `franz produce`: publish each line of standard input as one record and wait for every acknowledgement.

use std::io::BufRead;

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;
use rdkafka::producer::future_producer::OwnedDeliveryResult;

use crate::cli::ProduceArgs;
use crate::config::Config;
use crate::kafka::{self, admin};

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
