//! Where the topics live: starting (or finding) a Kafka-protocol broker and handing back one bootstrap address.
//!
//! Every kind ends as a [`Broker`] with a bootstrap address; nothing after start-up can tell the kinds apart.
//! Topic creation goes through here because the interim embedded stand-in cannot serve CreateTopics. This module
//! runs no service.

pub mod mock;

use crate::config::{BrokerKind, Config};
use crate::kafka::admin::{self, TopicStatus};
use anyhow::bail;

/// A broker franz is using, started by it or not.
pub enum Broker {
    /// The in-process stand-in for the embedded broker (rdkafka's mock cluster behind `--listen`).
    Embedded(mock::MockBroker),
    /// An existing cluster franz only connects to.
    External { bootstrap: String },
}

impl Broker {
    /// Starts the broker the configuration asks for, or checks that the external one can be reached.
    /// A started broker runs until it is dropped, so services can still commit while they shut down.
    pub async fn start(config: &Config) -> anyhow::Result<Broker> {
        match config.broker {
            BrokerKind::Embedded => Ok(Broker::Embedded(mock::MockBroker::start(config.listen).await?)),
            BrokerKind::External => {
                admin::metadata(&config.bootstrap, None, admin::REACH_TIMEOUT).await?;
                Ok(Broker::External { bootstrap: config.bootstrap.clone() })
            }
            kind @ (BrokerKind::Redpanda | BrokerKind::Kafka) => bail!(
                "--broker {} is not available yet; run with --broker embedded, or start the container yourself and pass --bootstrap HOST:PORT",
                kind.name()
            ),
        }
    }

    /// The address clients connect to.
    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Embedded(mock) => mock.address().to_string(),
            Broker::External { bootstrap } => bootstrap.clone(),
        }
    }

    /// One phrase for the ready line: what the broker is and where its data lives.
    pub fn describe(&self) -> &'static str {
        match self {
            Broker::Embedded(_) => "broker=embedded data=memory-only",
            Broker::External { .. } => "broker=external",
        }
    }

    /// Creates the topics that are missing, `partitions` each, and reports what each topic looks like.
    pub async fn ensure_topics(&self, names: &[&str], partitions: i32) -> anyhow::Result<Vec<TopicStatus>> {
        match self {
            Broker::Embedded(mock) => mock.ensure_topics(names, partitions),
            Broker::External { bootstrap } => admin::ensure_topics(bootstrap, names, partitions, 1).await,
        }
    }
}
