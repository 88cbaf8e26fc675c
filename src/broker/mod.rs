//! Where the topics live: starting (or finding) a Kafka-protocol broker and handing back one bootstrap address.
//!
//! Every kind ends as a [`Broker`] with a bootstrap address; nothing after start-up can tell the kinds apart.
//! This module runs no service.

pub mod container;

use anyhow::bail;
use tokio_util::sync::CancellationToken;

use crate::config::{BrokerKind, Config};
use crate::kafka::admin::{self, TopicStatus};

/// A broker franz is using, started by it or not.
pub enum Broker {
    /// franz's own broker, in-process; with `--ephemeral` its data lives in a temporary directory removed on stop.
    Embedded(franz_broker::EmbeddedBroker, Option<tempfile::TempDir>),
    /// A disposable Redpanda or Kafka container, removed by [`Broker::stop`] unless kept.
    Container(Box<container::Container>),
    /// An existing cluster franz only connects to.
    External { bootstrap: String },
}

impl Broker {
    /// Starts the broker the configuration asks for, or checks that the external one can be reached.
    /// A started broker runs until it is stopped, so services can still commit while they shut down. Starting a
    /// container can take minutes; cancelling `shutdown` meanwhile abandons it and removes what was created.
    pub async fn start(config: &Config, shutdown: &CancellationToken) -> anyhow::Result<Broker> {
        match config.broker {
            BrokerKind::Embedded => {
                let scratch = match config.ephemeral {
                    true => Some(tempfile::Builder::new().prefix("franz-").tempdir()?),
                    false => None,
                };
                let data_dir = scratch.as_ref().map_or_else(|| config.data_dir.clone(), |s| s.path().to_path_buf());
                let mut settings = franz_broker::Settings::new(config.listen, data_dir);
                settings.durability = config.embedded.durability.into();
                settings.log.retention_age = config.embedded.retention_age;
                settings.log.retention_bytes = config.embedded.retention_bytes;
                settings.log.segment_bytes = config.embedded.segment_bytes;
                Ok(Broker::Embedded(franz_broker::EmbeddedBroker::start(settings).await?, scratch))
            }
            BrokerKind::External => {
                admin::metadata(&config.bootstrap, None, admin::REACH_TIMEOUT).await?;
                Ok(Broker::External { bootstrap: config.bootstrap.clone() })
            }
            kind @ (BrokerKind::Redpanda | BrokerKind::Kafka) => {
                // The container's Kafka port is published on --listen's address and port (loopback by default),
                // so the default address keeps working and nothing is exposed beyond what --listen says.
                let mut host = config.listen;
                if host.port() == 0 {
                    host.set_port(std::net::TcpListener::bind((host.ip(), 0))?.local_addr()?.port());
                }
                let spec = container::ContainerSpec::new(kind, config.image_tag.as_deref(), host)?;
                let started = tokio::select! {
                    started = container::start(spec, config.keep) => started?,
                    _ = shutdown.cancelled() => bail!("interrupted while the {} container was starting", kind.name()),
                };
                if let Err(error) = admin::metadata(&started.spec.bootstrap(), None, admin::REACH_TIMEOUT).await {
                    started.stop().await;
                    return Err(error);
                }
                Ok(Broker::Container(Box::new(started)))
            }
        }
    }

    /// The address clients connect to.
    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Embedded(broker, _) => broker.address().to_string(),
            Broker::Container(container) => container.spec.bootstrap(),
            Broker::External { bootstrap } => bootstrap.clone(),
        }
    }

    /// One phrase for the ready line: what the broker is and where its data lives.
    pub fn describe(&self) -> &'static str {
        match self {
            Broker::Embedded(_, Some(_)) => "broker=embedded data=ephemeral",
            Broker::Embedded(_, None) => "broker=embedded",
            Broker::Container(container) => match container.spec.kind {
                BrokerKind::Redpanda => "broker=redpanda",
                _ => "broker=kafka",
            },
            Broker::External { .. } => "broker=external",
        }
    }

    /// Creates the topics that are missing, `partitions` each, and reports what each topic looks like.
    pub async fn ensure_topics(&self, names: &[&str], partitions: i32) -> anyhow::Result<Vec<TopicStatus>> {
        admin::ensure_topics(&self.bootstrap(), names, partitions, 1).await
    }

    /// Stops what franz started: removes a container (unless kept), shuts the embedded broker down.
    pub async fn stop(self) {
        match self {
            Broker::Container(container) => container.stop().await,
            Broker::Embedded(broker, scratch) => {
                broker.stop().await;
                drop(scratch);
            }
            Broker::External { .. } => {}
        }
    }
}
