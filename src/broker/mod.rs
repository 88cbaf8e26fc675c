//! Where the topics live: starting (or finding) a Kafka-protocol broker and handing back one bootstrap address.
//!
//! Every kind ends as a [`Broker`] with a bootstrap address; nothing after start-up can tell the kinds apart.
//! This module runs no service.

pub mod container;

use tokio_util::sync::CancellationToken;

use crate::config::{BrokerKind, Config};
use crate::kafka::admin::{self, TopicStatus};

/// The embedded broker's settings from franz's configuration.
fn embedded_settings(config: &Config, data_dir: std::path::PathBuf) -> anyhow::Result<franz_broker::Settings> {
    let embedded = &config.embedded;
    let size = |value: u64, shift: u32| usize::try_from(value << shift).unwrap_or(usize::MAX);
    let mut settings = franz_broker::Settings::new(config.listen, data_dir);
    settings.durability = embedded.durability.into();
    settings.log.retention_age = embedded.retention_age;
    settings.log.retention_bytes = embedded.retention_bytes;
    settings.log.segment_bytes = embedded.segment_bytes;
    settings.advertise = match &config.advertise {
        Some(address) => {
            let (host, port) = address.rsplit_once(':').expect("checked when the configuration was read");
            Some((host.trim_start_matches('[').trim_end_matches(']').to_string(), port.parse()?))
        }
        None => None,
    };
    settings.max_connections = size(embedded.max_connections, 0);
    settings.max_partitions = (embedded.max_partitions > 0).then(|| size(embedded.max_partitions, 0));
    settings.frame_timeout = std::time::Duration::from_secs(embedded.frame_timeout_secs);
    settings.idle_timeout = std::time::Duration::from_secs(embedded.idle_timeout_secs);
    settings.write_timeout = std::time::Duration::from_secs(embedded.write_timeout_secs);
    settings.max_frame_bytes = size(embedded.max_frame_mb, 20);
    settings.max_request_bytes = size(embedded.max_request_mb, 20);
    settings.max_batch_bytes = size(embedded.max_batch_mb, 20);
    settings.max_inflight_request_bytes = size(embedded.max_inflight_mb, 20);
    settings.max_answer_bytes = size(embedded.max_answer_mb, 20);
    settings.max_group_members = size(embedded.max_group_members, 0);
    settings.max_groups = size(embedded.max_groups, 0);
    settings.max_member_metadata_bytes = size(embedded.max_member_metadata_kb, 10);
    settings.max_group_metadata_bytes = size(embedded.max_group_metadata_kb, 10);
    Ok(settings)
}

/// The embedded broker's start failure in franz's words: where a flag of franz would help, the message names it (the
/// broker's own message names its settings, which a franz user never sees).
fn with_flags(error: franz_broker::StartError) -> anyhow::Error {
    match error {
        franz_broker::StartError::AddressInUse { listen } => anyhow::anyhow!(
            "{listen} is already in use (another franz or Kafka?); stop it, pass --listen with another port, or use it with --bootstrap {listen}"
        ),
        franz_broker::StartError::NoAdvertisedAddress { listen } => anyhow::anyhow!(
            "listening on {listen} needs an advertised address: pass --advertise HOST:PORT with the address clients use to reach this machine"
        ),
        other => other.into(),
    }
}

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
                let settings = embedded_settings(config, data_dir)?;
                let embedded = franz_broker::EmbeddedBroker::start(settings).await.map_err(with_flags)?;
                Ok(Broker::Embedded(embedded, scratch))
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
                let started = container::start(spec, config.keep, shutdown).await?;
                let bootstrap = started.spec.bootstrap();
                let reached = tokio::select! {
                    reached = admin::metadata(&bootstrap, None, admin::REACH_TIMEOUT) => reached.map(drop),
                    _ = shutdown.cancelled() => Err(anyhow::anyhow!("interrupted while waiting for the {} broker", kind.name())),
                };
                if let Err(error) = reached {
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

    /// What `/readyz` says of the broker: its kind, and where clients outside this process reach it (the embedded
    /// broker's advertised address, else the bootstrap address).
    pub fn info(&self) -> crate::ops::BrokerInfo {
        let address = match self {
            Broker::Embedded(embedded, _) => embedded.advertised(),
            _ => self.bootstrap(),
        };
        crate::ops::BrokerInfo { kind: self.kind().to_owned(), address }
    }

    /// What reads the embedded broker's own metrics; other brokers have theirs elsewhere.
    pub fn probe(&self) -> Option<franz_broker::Probe> {
        match self {
            Broker::Embedded(embedded, _) => Some(embedded.probe()),
            _ => None,
        }
    }

    /// What the broker is, in a word or two: `embedded`, `embedded (ephemeral)`, `redpanda`, `kafka`, `external`.
    pub fn kind(&self) -> &'static str {
        match self {
            Broker::Embedded(_, Some(_)) => "embedded (ephemeral)",
            Broker::Embedded(_, None) => "embedded",
            Broker::Container(container) => match container.spec.kind {
                BrokerKind::Redpanda => "redpanda",
                _ => "kafka",
            },
            Broker::External { .. } => "external",
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

    /// Creates the topics that are missing, `partitions` each (those in `forever` with no retention, those in
    /// `compacted` compacted where the cluster can), and reports what each topic looks like.
    pub async fn ensure_topics(
        &self,
        names: &[&str],
        partitions: i32,
        forever: &[&str],
        compacted: &[&str],
    ) -> anyhow::Result<Vec<TopicStatus>> {
        admin::ensure_topics_with(&self.bootstrap(), names, partitions, 1, forever, compacted).await
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The broker crate words its start failures without franz's flags; franz puts them back where a flag helps.
    #[tokio::test]
    async fn a_taken_port_or_a_missing_advertised_address_names_franz_flags() {
        let data = tempfile::tempdir().unwrap();
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = held.local_addr().unwrap();
        let start =
            |listen| franz_broker::EmbeddedBroker::start(franz_broker::Settings::new(listen, data.path().into()));
        let taken = format!("{:#}", with_flags(start(listen).await.expect_err("the port is taken")));
        assert_eq!(
            taken,
            format!(
                "{listen} is already in use (another franz or Kafka?); stop it, pass --listen with another port, or use it with --bootstrap {listen}"
            )
        );
        let everywhere = "0.0.0.0:0".parse().unwrap();
        let unadvertised = format!("{:#}", with_flags(start(everywhere).await.expect_err("no advertised address")));
        assert!(unadvertised.contains("pass --advertise HOST:PORT"), "{unadvertised}");
        // Any other failure keeps the broker's own words, and what caused it.
        let file = data.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let settings = franz_broker::Settings::new("127.0.0.1:0".parse().unwrap(), file.join("data"));
        let unopened = format!("{:#}", with_flags(franz_broker::EmbeddedBroker::start(settings).await.unwrap_err()));
        assert!(
            unopened.starts_with("cannot open the broker's data in ") && unopened.contains("os error"),
            "{unopened}"
        );
    }
}
