//! Disposable Redpanda or Apache Kafka containers for `--broker redpanda|kafka`: what they look like and what to do
//! with one that franz finds already there.
//!
//! Everything here is plain data and decisions, tested without Docker: the [`ContainerSpec`] (image, pinned tag,
//! published port, advertised listener, readiness line, the labels franz puts on what it starts), where the engine
//! is ([`DockerEndpoint`]), what to do with a container an earlier franz left on the same address ([`judge`]), and
//! how a failed pull is explained. Talking to the engine is `engine.rs`, the only part that needs one.

mod engine;

pub use engine::{Container, start};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail};
use bollard::models::{CreateImageInfo, PortBinding, PortMap};

use crate::config::BrokerKind;

/// The Redpanda image and the tag `--broker redpanda` runs unless `--image-tag` says otherwise.
pub const REDPANDA_IMAGE: (&str, &str) = ("docker.redpanda.com/redpandadata/redpanda", "v25.3.9");
/// The Apache Kafka image (GraalVM native build, KRaft mode) and its pinned tag.
pub const KAFKA_IMAGE: (&str, &str) = ("apache/kafka-native", "4.1.1");
/// The Kafka listener inside the container.
const CONTAINER_PORT: u16 = 9092;

/// The labels franz puts on every container it starts, so that a later franz can find it: which kind and image
/// it runs, the host address and port it is published on, whether it was started with `--keep`, and the franz
/// process that started it.
pub const LABEL_KIND: &str = "dev.franz.kind";
pub const LABEL_IMAGE: &str = "dev.franz.image";
pub const LABEL_HOST: &str = "dev.franz.host";
pub const LABEL_PORT: &str = "dev.franz.port";
pub const LABEL_KEEP: &str = "dev.franz.keep";
pub const LABEL_PID: &str = "dev.franz.pid";

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

    /// `image:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.image, self.tag)
    }

    /// The container's name: its kind and the address it is published on, e.g. `franz-redpanda-127.0.0.1-9092`,
    /// so `docker ps` says what it is and two franz on different addresses do not collide.
    pub fn container_name(&self) -> String {
        let ip: String = self
            .host
            .ip()
            .to_string()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' })
            .collect();
        format!("franz-{}-{ip}-{}", self.kind.name(), self.host.port())
    }

    /// The labels of a container started from this spec by the franz process `pid`.
    pub fn labels(&self, keep: bool, pid: u32) -> HashMap<String, String> {
        [
            (LABEL_KIND, self.kind.name().to_owned()),
            (LABEL_IMAGE, self.reference()),
            (LABEL_HOST, self.host.ip().to_string()),
            (LABEL_PORT, self.host.port().to_string()),
            (LABEL_KEEP, keep.to_string()),
            (LABEL_PID, pid.to_string()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
    }
}

/// A container that an earlier franz started on the same host address and port, as its labels describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    pub id: String,
    pub name: String,
    /// The `image:tag` it was started from (its label, which survives a re-tag of the image).
    pub image: String,
    pub running: bool,
    /// Started with `--keep`: left running on purpose.
    pub keep: bool,
    /// The franz process that started it, when that process still runs.
    pub live_owner: Option<u32>,
}

impl Previous {
    /// Reads a container's labels; `None` when they are not franz's (a container franz did not start).
    pub fn from_labels(
        id: &str,
        name: &str,
        running: bool,
        labels: &HashMap<String, String>,
        is_running_franz: impl Fn(u32) -> bool,
    ) -> Option<Previous> {
        let image = labels.get(LABEL_IMAGE)?.clone();
        let pid = labels.get(LABEL_PID).and_then(|pid| pid.parse().ok());
        Some(Previous {
            id: id.to_owned(),
            name: name.trim_start_matches('/').to_owned(),
            image,
            running,
            keep: labels.get(LABEL_KEEP).is_some_and(|keep| keep == "true"),
            live_owner: pid.filter(|&pid| is_running_franz(pid)),
        })
    }
}

/// What to do with a [`Previous`] container before starting a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Left running with `--keep`, from the same image: use it instead of starting another.
    Reuse,
    /// Stale: remove it, for the reason given (printed in one line).
    Remove(&'static str),
    /// In use, or kept but of another image: franz must not touch it. The message says what holds the address
    /// and what the user can do.
    Refuse(String),
}

/// Decides what to do with a container an earlier franz started on `spec`'s address. A container whose franz still
/// runs is never touched; one left with `--keep` is reused when it runs the same image, and otherwise left alone;
/// any other is what a franz killed with SIGKILL (or a power cut) left behind, and is removed.
pub fn judge(spec: &ContainerSpec, previous: &Previous) -> Verdict {
    let (host, name, image) = (spec.host, &previous.name, &previous.image);
    if let Some(pid) = previous.live_owner {
        return Verdict::Refuse(format!(
            "{host} is in use by container {name} ({image}) of a franz that is running (pid {pid}); stop that franz, or pass --listen with another port"
        ));
    }
    match (previous.keep, previous.running) {
        (true, true) if *image == spec.reference() => Verdict::Reuse,
        (true, true) => Verdict::Refuse(format!(
            "{host} is held by container {name} ({image}), left running with --keep; remove it with `docker rm -f {name}`, or pass --listen with another port"
        )),
        (true, false) => Verdict::Remove("it was left with --keep and has stopped"),
        (false, _) => Verdict::Remove("the franz that started it did not stop cleanly"),
    }
}

/// Whether a process's `/proc/PID/stat` line (`PID (COMM) STATE …`) is a franz that runs: a zombie (killed, not
/// yet reaped by its parent) or a dead one is gone.
pub fn is_running_franz(stat: &str) -> bool {
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { return false };
    let state = stat.get(close + 1..).and_then(|rest| rest.split_whitespace().next());
    stat.get(open + 1..close) == Some("franz") && state.is_some_and(|state| state != "Z" && state != "X")
}

/// Why `host` cannot be bound, naming what holds it when that is known: a container (by name and image) or,
/// when Docker knows of none, another process.
pub fn port_taken(host: SocketAddr, holder: Option<(&str, &str)>) -> String {
    let who = match holder {
        Some((name, image)) => format!("container {} ({image})", name.trim_start_matches('/')),
        None => "another process".to_owned(),
    };
    format!("{host} is held by {who}; stop it, or pass --listen with another port")
}

/// A failed pull of `reference`, explained from Docker's `message`: what failed, in words, and what the user
/// can do instead. Docker's own text is kept at the end, for a search.
pub fn pull_failure(reference: &str, message: &str) -> String {
    let registry = registry_of(reference);
    let lower = message.to_ascii_lowercase();
    let what = if [
        "no such host",
        "dial tcp",
        "i/o timeout",
        "connection refused",
        "network is unreachable",
        "tls handshake timeout",
        "timeout exceeded",
    ]
    .iter()
    .any(|sign| lower.contains(sign))
    {
        format!("the registry {registry} cannot be reached from here")
    } else if ["manifest unknown", "not found", "does not exist"].iter().any(|sign| lower.contains(sign)) {
        format!("the registry {registry} has no such image or tag (check --image-tag)")
    } else if ["unauthorized", "denied", "authentication required"].iter().any(|sign| lower.contains(sign)) {
        format!("the registry {registry} refused access")
    } else {
        format!("the pull from {registry} failed")
    };
    let said = message.lines().next().unwrap_or_default().trim();
    format!(
        "cannot pull {reference}: {what}; run with --broker embedded, or bring the image in another way (`docker pull {reference}` where the registry is reachable, or `docker load` of a saved copy) and start franz again (Docker said: {said})"
    )
}

/// The registry host of an image reference: its first part when that looks like a host, else Docker Hub.
fn registry_of(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first,
        _ => "Docker Hub (registry-1.docker.io)",
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

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

    fn previous(spec: &ContainerSpec, keep: bool, running: bool, live_owner: Option<u32>) -> Previous {
        let labels = spec.labels(keep, 4242);
        Previous::from_labels("abc123", "/franz-redpanda-127.0.0.1-9092", running, &labels, |pid| {
            live_owner == Some(pid)
        })
        .unwrap()
    }

    #[test]
    fn containers_are_named_and_labelled_after_their_kind_and_address() {
        let spec = ContainerSpec::new(BrokerKind::Redpanda, None, loopback(9092)).unwrap();
        assert_eq!(spec.container_name(), "franz-redpanda-127.0.0.1-9092");
        let v6 = ContainerSpec::new(BrokerKind::Kafka, None, "[::1]:19092".parse().unwrap()).unwrap();
        assert_eq!(v6.container_name(), "franz-kafka---1-19092");
        let labels = spec.labels(true, 7);
        assert_eq!(labels[LABEL_PORT], "9092");
        assert_eq!(labels[LABEL_HOST], "127.0.0.1");
        assert_eq!(labels[LABEL_KEEP], "true");
        assert_eq!(labels[LABEL_PID], "7");
        assert_eq!(labels[LABEL_IMAGE], format!("{}:{}", REDPANDA_IMAGE.0, REDPANDA_IMAGE.1));
        assert_eq!(labels[LABEL_KIND], "redpanda");
    }

    #[test]
    fn a_container_left_by_a_killed_franz_is_removed() {
        let spec = ContainerSpec::new(BrokerKind::Redpanda, None, loopback(9092)).unwrap();
        let left = previous(&spec, false, true, None);
        assert_eq!(left.name, "franz-redpanda-127.0.0.1-9092");
        assert!(matches!(judge(&spec, &left), Verdict::Remove(why) if why.contains("did not stop cleanly")));
        let stopped_keep = previous(&spec, true, false, None);
        assert!(matches!(judge(&spec, &stopped_keep), Verdict::Remove(why) if why.contains("stopped")));
    }

    #[test]
    fn a_kept_container_of_the_same_image_is_reused_and_of_another_image_left_alone() {
        let spec = ContainerSpec::new(BrokerKind::Redpanda, None, loopback(9092)).unwrap();
        assert_eq!(judge(&spec, &previous(&spec, true, true, None)), Verdict::Reuse);
        let other = ContainerSpec::new(BrokerKind::Redpanda, Some("v24.3.6"), loopback(9092)).unwrap();
        let Verdict::Refuse(message) = judge(&other, &previous(&spec, true, true, None)) else { panic!() };
        assert!(
            message.contains("left running with --keep")
                && message.contains("docker rm -f franz-redpanda-127.0.0.1-9092"),
            "{message}"
        );
    }

    #[test]
    fn a_container_whose_franz_still_runs_is_never_touched() {
        let spec = ContainerSpec::new(BrokerKind::Kafka, None, loopback(9092)).unwrap();
        for keep in [false, true] {
            let Verdict::Refuse(message) = judge(&spec, &previous(&spec, keep, true, Some(4242))) else { panic!() };
            assert!(message.contains("pid 4242") && message.contains("--listen"), "{message}");
        }
    }

    #[test]
    fn containers_without_franz_labels_are_not_franz_s() {
        let labels = HashMap::from([("maintainer".to_owned(), "someone".to_owned())]);
        assert_eq!(Previous::from_labels("id", "/other", true, &labels, |_| false), None);
    }

    #[test]
    fn only_a_live_franz_process_owns_its_container() {
        assert!(is_running_franz("4242 (franz) S 1 4242 4242 0 -1 4194560"));
        assert!(!is_running_franz("4242 (franz) Z 1 4242 4242 0 -1 4194560"), "a zombie is gone");
        assert!(!is_running_franz("4242 (bash) S 1 4242 4242 0 -1 4194560"), "the pid was reused by another program");
        assert!(!is_running_franz("4242 (franz (x)) S 1"));
        assert!(!is_running_franz(""));
    }

    #[test]
    fn a_taken_port_names_its_holder_when_known() {
        let message = port_taken(loopback(9092), Some(("/some-db", "postgres:16")));
        assert_eq!(
            message,
            "127.0.0.1:9092 is held by container some-db (postgres:16); stop it, or pass --listen with another port"
        );
        assert!(port_taken(loopback(9092), None).contains("held by another process"));
    }

    #[test]
    fn pull_failures_say_what_failed_and_what_to_do() {
        let unreachable = pull_failure(
            "docker.redpanda.com/redpandadata/redpanda:v25.3.9",
            r#"Get "https://docker.redpanda.com/v2/": dial tcp: lookup docker.redpanda.com on 10.0.0.53:53: no such host"#,
        );
        assert!(unreachable.contains("the registry docker.redpanda.com cannot be reached"), "{unreachable}");
        for advice in
            ["--broker embedded", "docker load", "docker pull docker.redpanda.com/redpandadata/redpanda:v25.3.9"]
        {
            assert!(unreachable.contains(advice), "{unreachable}");
        }
        let missing = pull_failure(
            "apache/kafka-native:9.9.9",
            "manifest for apache/kafka-native:9.9.9 not found: manifest unknown",
        );
        assert!(
            missing.contains("Docker Hub (registry-1.docker.io) has no such image or tag (check --image-tag)"),
            "{missing}"
        );
        let denied = pull_failure("localhost:5000/kafka:1", "unauthorized: authentication required");
        assert!(denied.contains("the registry localhost:5000 refused access"), "{denied}");
        let other = pull_failure("apache/kafka-native:4.1.1", "something else\nsecond line");
        assert!(
            other.contains("the pull from Docker Hub") && other.ends_with("(Docker said: something else)"),
            "{other}"
        );
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
