//! Disposable Redpanda or Apache Kafka containers, started through testcontainers, for `--broker redpanda|kafka`.
//!
//! What a container looks like (image, pinned tag, ports, advertised listener, readiness) is a plain
//! [`ContainerSpec`], tested without Docker. Finding the Docker engine is a plain check that fails within a second.
//! Only [`start`] talks to Docker, and it is the part that cannot be tested where no engine runs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use bollard::models::{CreateImageInfo, PortBinding, PortMap};
use futures::StreamExt as _;
use testcontainers::core::{IntoContainerPort as _, WaitFor};
use testcontainers::runners::AsyncRunner as _;
use testcontainers::{ContainerAsync, GenericImage, ImageExt as _, ReuseDirective};

use crate::config::BrokerKind;

/// The Redpanda image and the tag `--broker redpanda` runs unless `--image-tag` says otherwise.
pub const REDPANDA_IMAGE: (&str, &str) = ("docker.redpanda.com/redpandadata/redpanda", "v25.3.9");
/// The Apache Kafka image (GraalVM native build, KRaft mode) and its pinned tag.
pub const KAFKA_IMAGE: (&str, &str) = ("apache/kafka-native", "4.1.1");
/// The Kafka listener inside the container.
const CONTAINER_PORT: u16 = 9092;
/// How long a container may take to pull and start before franz gives up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(600);

/// Everything that decides how a broker container is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub kind: BrokerKind,
    pub image: String,
    pub tag: String,
    /// The host address (from `--listen`, loopback by default) where the container's Kafka listener is
    /// published. Docker publishes on every interface unless told an address, which bypasses host firewalls.
    pub host: SocketAddr,
    pub env: Vec<(String, String)>,
    pub cmd: Vec<String>,
    /// The log line that says the broker is ready.
    pub ready_message: String,
}

impl ContainerSpec {
    /// The container for `kind` (redpanda or kafka), published on the host at `host` only.
    pub fn new(kind: BrokerKind, tag: Option<&str>, host: SocketAddr) -> anyhow::Result<ContainerSpec> {
        if host.ip().is_unspecified() {
            bail!(
                "a container broker is published on one host address, not on all of them ({host}); pass --listen with a specific address such as 127.0.0.1:{}",
                host.port()
            );
        }
        let advertised = format!("PLAINTEXT://{host}");
        let listen = format!("PLAINTEXT://0.0.0.0:{CONTAINER_PORT}");
        let owned = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (image, default_tag, env, cmd, ready) = match kind {
            BrokerKind::Redpanda => (
                REDPANDA_IMAGE.0,
                REDPANDA_IMAGE.1,
                Vec::new(),
                [
                    "redpanda",
                    "start",
                    "--mode",
                    "dev-container",
                    "--smp",
                    "1",
                    "--kafka-addr",
                    &listen,
                    "--advertise-kafka-addr",
                    &advertised,
                ]
                .map(String::from)
                .to_vec(),
                "Successfully started Redpanda!",
            ),
            BrokerKind::Kafka => (
                KAFKA_IMAGE.0,
                KAFKA_IMAGE.1,
                owned(&[
                    ("KAFKA_NODE_ID", "1"),
                    ("KAFKA_PROCESS_ROLES", "broker,controller"),
                    ("KAFKA_LISTENERS", &format!("{listen},CONTROLLER://0.0.0.0:9093")),
                    ("KAFKA_ADVERTISED_LISTENERS", &advertised),
                    ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER"),
                    ("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"),
                    ("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093"),
                    ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1"),
                    ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1"),
                    ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1"),
                    ("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0"),
                ]),
                Vec::new(),
                "Kafka Server started",
            ),
            other => bail!("{} is not a container broker", other.name()),
        };
        let tag = tag.unwrap_or(default_tag);
        if tag.is_empty() || tag == "latest" {
            bail!("image tag {tag:?} is not pinned; pass a version such as {default_tag}");
        }
        Ok(ContainerSpec {
            kind,
            image: image.to_owned(),
            tag: tag.to_owned(),
            host,
            env,
            cmd,
            ready_message: ready.to_owned(),
        })
    }

    /// The bootstrap address clients use.
    pub fn bootstrap(&self) -> String {
        self.host.to_string()
    }

    /// The port publication Docker gets: the container's Kafka port on the host address only.
    pub fn port_bindings(&self) -> PortMap {
        let binding =
            PortBinding { host_ip: Some(self.host.ip().to_string()), host_port: Some(self.host.port().to_string()) };
        PortMap::from([(format!("{CONTAINER_PORT}/tcp"), Some(vec![binding]))])
    }
}

/// Where the Docker engine should be, from `DOCKER_HOST` or the default socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerEndpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl DockerEndpoint {
    pub fn from_env(docker_host: Option<&str>) -> anyhow::Result<DockerEndpoint> {
        match docker_host.map(str::trim).filter(|h| !h.is_empty()) {
            None => Ok(DockerEndpoint::Unix(PathBuf::from("/var/run/docker.sock"))),
            Some(host) => {
                if let Some(path) = host.strip_prefix("unix://") {
                    Ok(DockerEndpoint::Unix(PathBuf::from(path)))
                } else if let Some(address) = host.strip_prefix("tcp://") {
                    Ok(DockerEndpoint::Tcp(address.trim_end_matches('/').to_owned()))
                } else {
                    bail!("DOCKER_HOST={host:?} is neither unix://PATH nor tcp://HOST:PORT")
                }
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            DockerEndpoint::Unix(path) => format!("unix://{}", path.display()),
            DockerEndpoint::Tcp(address) => format!("tcp://{address} (from DOCKER_HOST)"),
        }
    }

    /// Connects once, within `timeout`, and fails with what was tried and what to do instead.
    pub async fn check(&self, timeout: Duration) -> anyhow::Result<()> {
        let attempt = async {
            match self {
                #[cfg(unix)]
                DockerEndpoint::Unix(path) => tokio::net::UnixStream::connect(path).await.map(drop),
                #[cfg(not(unix))]
                DockerEndpoint::Unix(_) => Err(std::io::Error::other("unix sockets are not supported here")),
                DockerEndpoint::Tcp(address) => tokio::net::TcpStream::connect(address).await.map(drop),
            }
        };
        let why = match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {timeout:?}"),
        };
        Err(anyhow!(
            "no Docker engine at {} ({why}); run with --broker embedded, or --bootstrap HOST:PORT for a broker you started",
            self.describe()
        ))
    }
}

/// Download progress of an image pull, per layer, summarized for a person.
#[derive(Debug, Default)]
pub struct PullProgress {
    /// Bytes downloaded and total bytes, by layer id.
    layers: BTreeMap<String, (i64, i64)>,
    done: BTreeSet<String>,
}

impl PullProgress {
    /// Takes one status line of Docker's pull stream into account.
    pub fn update(&mut self, info: &CreateImageInfo) {
        let Some(id) = info.id.clone() else { return };
        match info.status.as_deref() {
            Some("Downloading") => {
                let detail = info.progress_detail.as_ref();
                let current = detail.and_then(|d| d.current).unwrap_or(0);
                let total = detail.and_then(|d| d.total).unwrap_or(0);
                self.layers.insert(id, (current, total));
            }
            Some("Download complete" | "Pull complete" | "Already exists") => {
                let entry = self.layers.entry(id.clone()).or_default();
                entry.0 = entry.1;
                self.done.insert(id);
            }
            _ => {
                self.layers.entry(id).or_default();
            }
        }
    }

    /// E.g. `3 of 7 layers, 45.2 MB of 120.0 MB`.
    pub fn summary(&self) -> String {
        let (current, total) = self.layers.values().fold((0, 0), |(c, t), (lc, lt)| (c + lc, t + lt));
        let mb = |bytes: i64| bytes as f64 / 1_000_000.0;
        format!("{} of {} layers, {:.1} MB of {:.1} MB", self.done.len(), self.layers.len(), mb(current), mb(total))
    }
}

/// Pulls `image:tag` unless it is already there, printing progress every two seconds.
async fn pull(image: &str, tag: &str) -> anyhow::Result<()> {
    let docker = bollard::Docker::connect_with_defaults().context("cannot connect to the Docker engine")?;
    let reference = format!("{image}:{tag}");
    if docker.inspect_image(&reference).await.is_ok() {
        return Ok(());
    }
    eprintln!("pulling {reference}; the first start can take minutes");
    let options = bollard::query_parameters::CreateImageOptionsBuilder::default().from_image(image).tag(tag).build();
    let mut stream = docker.create_image(Some(options), None, None);
    let mut progress = PullProgress::default();
    let mut shown = Instant::now();
    while let Some(info) = stream.next().await {
        let info = info.with_context(|| format!("cannot pull {reference}"))?;
        if let Some(error) = info.error_detail.as_ref().and_then(|e| e.message.clone()) {
            bail!("cannot pull {reference}: {error}");
        }
        progress.update(&info);
        if shown.elapsed() >= Duration::from_secs(2) {
            eprintln!("pulling {reference}: {}", progress.summary());
            shown = Instant::now();
        }
    }
    eprintln!("pulled {reference}: {}", progress.summary());
    Ok(())
}

/// A running broker container.
pub struct Container {
    inner: ContainerAsync<GenericImage>,
    pub spec: ContainerSpec,
    keep: bool,
}

/// Checks for a Docker engine, then starts the container and waits until its broker is ready, printing progress
/// while the image is pulled. With `keep`, the container outlives franz.
pub async fn start(spec: ContainerSpec, keep: bool) -> anyhow::Result<Container> {
    let endpoint = DockerEndpoint::from_env(std::env::var("DOCKER_HOST").ok().as_deref())?;
    endpoint.check(Duration::from_secs(1)).await?;
    std::net::TcpListener::bind(spec.host)
        .map_err(|e| anyhow!("{} is not free ({e}); pass --listen with another port", spec.host))?;

    let name = format!("{}:{}", spec.image, spec.tag);
    pull(&spec.image, &spec.tag).await?;
    eprintln!("starting {name}");
    let mut request = GenericImage::new(&spec.image, &spec.tag)
        .with_wait_for(WaitFor::message_on_either_std(spec.ready_message.clone()))
        .with_mapped_port(spec.host.port(), CONTAINER_PORT.tcp())
        // testcontainers publishes a mapped port on every interface; this replaces its bindings with the one host
        // address (the modifier runs after testcontainers has set its own).
        .with_host_config_modifier({
            let bindings = spec.port_bindings();
            move |host_config| host_config.port_bindings = Some(bindings.clone())
        })
        .with_startup_timeout(STARTUP_TIMEOUT);
    for (key, value) in &spec.env {
        request = request.with_env_var(key, value);
    }
    if !spec.cmd.is_empty() {
        request = request.with_cmd(spec.cmd.clone());
    }
    if keep {
        request = request.with_reuse(ReuseDirective::Always);
    }
    let started = Instant::now();
    let starting = request.start();
    tokio::pin!(starting);
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(10), Duration::from_secs(10));
    let inner = loop {
        tokio::select! {
            result = &mut starting => break result.with_context(|| format!("cannot start {name}"))?,
            _ = ticker.tick() => eprintln!("still starting {name} ({}s)", started.elapsed().as_secs()),
        }
    };
    eprintln!("{name} is ready after {:.1}s", started.elapsed().as_secs_f64());
    Ok(Container { inner, spec, keep })
}

impl Container {
    /// Removes the container, unless it was started with `keep`: then says how to reach and remove it.
    pub async fn stop(self) {
        let id = self.inner.id().to_owned();
        if self.keep {
            eprintln!(
                "container {id} keeps running: reconnect with `franz up --bootstrap {}`, remove it with `docker rm -f {id}`",
                self.spec.bootstrap()
            );
            return;
        }
        if let Err(error) = self.inner.rm().await {
            tracing::error!(%error, "could not remove container {id}; remove it with `docker rm -f {id}`");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Regression: run against a real Docker engine, the container's port was published on `0.0.0.0:9092` and
    /// `[::]:9092`, bypassing host firewalls such as ufw.
    #[test]
    fn containers_are_published_on_the_listen_address_only() {
        let spec = ContainerSpec::new(BrokerKind::Redpanda, None, loopback(19092)).unwrap();
        let bindings = spec.port_bindings();
        assert_eq!(bindings.len(), 1);
        let published = bindings["9092/tcp"].as_ref().unwrap();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(published[0].host_port.as_deref(), Some("19092"));
        let other = ContainerSpec::new(BrokerKind::Kafka, None, SocketAddr::from(([127, 0, 0, 2], 9092))).unwrap();
        assert_eq!(other.port_bindings()["9092/tcp"].as_ref().unwrap()[0].host_ip.as_deref(), Some("127.0.0.2"));
        assert_eq!(other.bootstrap(), "127.0.0.2:9092");
        let everywhere = ContainerSpec::new(BrokerKind::Kafka, None, SocketAddr::from(([0, 0, 0, 0], 9092)));
        assert!(everywhere.unwrap_err().to_string().contains("--listen"));
    }

    #[test]
    fn specs_pin_their_tags_and_advertise_the_mapped_host_port() {
        for kind in [BrokerKind::Redpanda, BrokerKind::Kafka] {
            let spec = ContainerSpec::new(kind, None, loopback(19092)).unwrap();
            assert!(spec.tag.chars().next().is_some_and(|c| c == 'v' || c.is_ascii_digit()), "{}", spec.tag);
            assert_eq!(spec.bootstrap(), "127.0.0.1:19092");
            let settings = format!("{:?} {:?}", spec.env, spec.cmd);
            assert!(settings.contains("PLAINTEXT://127.0.0.1:19092"), "advertises the host port: {settings}");
            assert!(settings.contains("0.0.0.0:9092"), "listens on the mapped container port: {settings}");
            assert!(!spec.ready_message.is_empty());
        }
        let kafka = ContainerSpec::new(BrokerKind::Kafka, None, loopback(1)).unwrap();
        assert_eq!((kafka.image.as_str(), kafka.tag.as_str()), KAFKA_IMAGE);
        assert!(kafka.env.iter().any(|(k, v)| k == "KAFKA_PROCESS_ROLES" && v == "broker,controller"), "KRaft mode");
    }

    #[test]
    fn image_tag_can_be_overridden_but_not_unpinned() {
        let spec = ContainerSpec::new(BrokerKind::Redpanda, Some("v24.3.6"), loopback(9092)).unwrap();
        assert_eq!(spec.tag, "v24.3.6");
        let error = ContainerSpec::new(BrokerKind::Redpanda, Some("latest"), loopback(9092)).unwrap_err();
        assert!(error.to_string().contains("not pinned"), "{error}");
        assert!(ContainerSpec::new(BrokerKind::Embedded, None, loopback(9092)).is_err());
    }

    #[test]
    fn pull_progress_sums_layers_and_counts_finished_ones() {
        let info = |id: &str, status: &str, current: Option<i64>, total: Option<i64>| CreateImageInfo {
            id: Some(id.into()),
            status: Some(status.into()),
            progress_detail: Some(bollard::models::ProgressDetail { current, total }),
            ..Default::default()
        };
        let mut progress = PullProgress::default();
        progress.update(&info("a", "Pulling fs layer", None, None));
        progress.update(&info("b", "Downloading", Some(2_000_000), Some(10_000_000)));
        progress.update(&info("a", "Downloading", Some(1_000_000), Some(4_000_000)));
        assert_eq!(progress.summary(), "0 of 2 layers, 3.0 MB of 14.0 MB");
        progress.update(&info("a", "Pull complete", None, None));
        assert_eq!(progress.summary(), "1 of 2 layers, 6.0 MB of 14.0 MB");
        progress.update(&CreateImageInfo { status: Some("Digest: sha256:…".into()), ..Default::default() });
        assert_eq!(progress.summary(), "1 of 2 layers, 6.0 MB of 14.0 MB");
    }

    #[test]
    fn docker_endpoint_comes_from_docker_host_or_the_default_socket() {
        assert_eq!(DockerEndpoint::from_env(None).unwrap(), DockerEndpoint::Unix("/var/run/docker.sock".into()));
        assert_eq!(
            DockerEndpoint::from_env(Some("unix:///run/user/1000/docker.sock")).unwrap(),
            DockerEndpoint::Unix("/run/user/1000/docker.sock".into())
        );
        assert_eq!(
            DockerEndpoint::from_env(Some("tcp://127.0.0.1:2375")).unwrap(),
            DockerEndpoint::Tcp("127.0.0.1:2375".into())
        );
        assert!(DockerEndpoint::from_env(Some("ssh://box")).is_err());
    }

    #[tokio::test]
    async fn missing_docker_socket_fails_within_a_second_naming_what_was_tried() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = DockerEndpoint::Unix(dir.path().join("docker.sock"));
        let started = Instant::now();
        let error = endpoint.check(Duration::from_secs(1)).await.unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(error.contains("no Docker engine at unix://") && error.contains("docker.sock"), "{error}");
        assert!(error.contains("--broker embedded") && error.contains("--bootstrap"), "{error}");
    }

    #[tokio::test]
    async fn refused_docker_connection_is_reported_with_docker_host() {
        // A port that was just free: nothing listens there, so the connection is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let endpoint = DockerEndpoint::from_env(Some(&format!("tcp://127.0.0.1:{port}"))).unwrap();
        let error = endpoint.check(Duration::from_secs(1)).await.unwrap_err().to_string();
        assert!(error.contains(&format!("tcp://127.0.0.1:{port} (from DOCKER_HOST)")), "{error}");
    }
}
