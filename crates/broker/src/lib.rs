//! A durable, single-node Kafka-protocol broker that runs inside your process: start it in a test (or a program)
//! on `127.0.0.1:0`, point any Kafka client at [`EmbeddedBroker::address`], and stop it when done. No JVM, no
//! Docker, no ZooKeeper or KRaft: topics, produce and fetch, consumer groups with committed offsets, idempotent
//! producers and retention, kept in segment files in a directory of your choosing and (by default) fsynced before a
//! write is acknowledged, so what a client was told is written survives a restart, or a crash, of the broker.
//!
//! [`EmbeddedBroker::start`] takes [`Settings`], built by [`Settings::new`] from the address to listen on and the
//! data directory, with defaults for every other knob (limits, timeouts, retention, [`Durability`]);
//! [`EmbeddedBroker::address`] is the bootstrap address for clients, and [`EmbeddedBroker::stop`] lets in-flight
//! answers finish and fsyncs what was written. `examples/produce_and_read.rs` does it end to end with rdkafka.
//! [`SUPPORTED`] lists the Kafka APIs and versions the broker answers; what it does not do (replication,
//! transactions, compaction, authentication) is in the crate's README. It was written as the embedded broker of
//! franz, a ticketing pipeline, and knows nothing of it.
//!
//! Inside, the crate root assembles the parts and owns their lifetime: `server/` (admitting connections, reading
//! frames, dispatching them to handlers and writing the answers), `handlers/` (one function per Kafka API, a file per
//! family), `topics` (partitions and their visibility), `topic_config` (a topic's own settings, such as its
//! retention), `log/` (segment files), `producer_ids` (idempotent producers' ids), `flush` (group-committed
//! fsyncs), `groups/` (the consumer-group coordinator: membership and committed offsets) and `meter` (what it counts
//! about itself, for Prometheus); `apis` and `code` name the APIs and the Kafka error codes they all speak.
//! `ARCHITECTURE.md`, beside this crate, is its map.

#![warn(missing_docs)]

mod apis;
mod code;
mod flush;
mod groups;
mod handlers;
mod log;
mod meter;
mod producer_ids;
mod server;
mod topic_config;
mod topics;

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use apis::SUPPORTED;
pub use flush::Durability;
pub use log::LogConfig;

/// Everything that shapes the embedded broker.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where clients connect (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Where topics, logs and committed offsets live.
    pub data_dir: PathBuf,
    /// Segment size of every partition, and the broker-wide retention: what a topic created without its own
    /// `retention.ms` or `retention.bytes` keeps.
    pub log: LogConfig,
    /// When produced data counts as written.
    pub durability: Durability,
    /// Requests larger than this close the connection before anything is allocated for them.
    pub max_frame_bytes: usize,
    /// The largest record set one partition of a produce request may carry.
    pub max_batch_bytes: usize,
    /// At most this many connections: at the limit the least recently active one that is idle, half-way through
    /// sending a request or not reading its answers is closed to admit a new one, and if every one is busy the new
    /// one is closed at once.
    pub max_connections: usize,
    /// Partitions of a topic created on first use or without a count.
    pub default_partitions: i32,
    /// Whether asking for an unknown topic's metadata creates it (Kafka's `auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// How long a rebalance of an empty group waits for more members, so members started together share one.
    pub initial_rebalance_delay: Duration,
    /// What metadata tells clients to connect to (Kafka's advertised listener). `None`: the listen address, which
    /// must then not be unspecified (`0.0.0.0`), since clients cannot connect to that.
    pub advertise: Option<(String, u16)>,
    /// Most partitions of all topics together; each keeps its active segment file open. `None`: as many as the
    /// process's open-file limit allows next to `max_connections` (at most [`DEFAULT_MAX_PARTITIONS`]).
    pub max_partitions: Option<usize>,
    /// The most protocol metadata (all protocols together) a group member may bring, and the largest assignment
    /// a leader may hand a member, in bytes; the coordinator keeps both for as long as the member stays.
    pub max_member_metadata_bytes: usize,
    /// Members one consumer group may have (Kafka's `group.max.size`).
    pub max_group_members: usize,
    /// The protocol metadata of all members of one group together, and their assignments together, in bytes: what
    /// describing the group (or the leader's JoinGroup answer) carries.
    pub max_group_metadata_bytes: usize,
    /// Consumer groups (with members or committed offsets) the broker holds; a new one beyond is refused.
    pub max_groups: usize,
    /// How long a client may take to send a request once its first byte has arrived; a slower one is closed
    /// (its frame holds a connection slot and buffer permits meanwhile).
    pub frame_timeout: Duration,
    /// A connection with no new request and no answer pending for this long is closed (Kafka's
    /// `connections.max.idle.ms`).
    pub idle_timeout: Duration,
    /// Request bytes all connections together may be reading or dispatching at once (Kafka's
    /// `queued.max.request.bytes`); a connection takes room for a frame's bytes as they arrive, waiting when
    /// there is none, and a larger frame is refused like one over `max_frame_bytes`.
    pub max_inflight_request_bytes: usize,
    /// The largest request other than Produce. Decoding a request takes a few times its size in memory (an entry
    /// of a few bytes on the wire becomes a struct of tens), so requests that carry no records are kept small.
    pub max_request_bytes: usize,
    /// How long writing one answer may take once it is built; a client that does not read its answers for this
    /// long is closed, so it cannot hold the answer's memory and its connection slot forever.
    pub write_timeout: Duration,
    /// Bytes of built answers all connections together may hold before fetches read less: a fetch reads at most
    /// what is left (nothing, and waits like a long poll, when none is), so clients that do not read their answers
    /// cannot make the broker hold more record data than about this.
    pub max_answer_bytes: usize,
}

/// The partition limit when the open-file limit allows more.
pub const DEFAULT_MAX_PARTITIONS: usize = 10_000;

/// Open files kept aside for everything else the broker opens (offsets, snapshots, indexes, closed segments being
/// read, the listener, the runtime).
const FILE_RESERVE: usize = 128;

impl Settings {
    /// The defaults, for data in `data_dir` and clients on `listen`.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Settings {
        Settings {
            listen,
            data_dir,
            log: LogConfig::default(),
            durability: Durability::Fsync,
            max_frame_bytes: 100 << 20,
            max_batch_bytes: 16 << 20,
            max_connections: 1024,
            default_partitions: 1,
            auto_create_topics: true,
            initial_rebalance_delay: Duration::from_millis(100),
            advertise: None,
            max_partitions: None,
            max_member_metadata_bytes: 64 << 10,
            max_group_members: 1000,
            max_group_metadata_bytes: 4 << 20,
            max_groups: 10_000,
            frame_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(10 * 60),
            max_inflight_request_bytes: 256 << 20,
            max_request_bytes: 4 << 20,
            write_timeout: Duration::from_secs(30),
            max_answer_bytes: 512 << 20,
        }
    }
}

/// Why [`EmbeddedBroker::start`] failed. The messages name the broker's own settings, not any program's flags: a
/// program that has flags for them can match the variant and say which flag to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// [`Settings::listen`] is an unspecified address (such as `0.0.0.0`) and [`Settings::advertise`] is unset, so
    /// metadata would tell clients to connect to an address they cannot reach.
    #[error(
        "listening on {listen} needs an advertised address: set Settings::advertise to the host and port clients use to reach this machine"
    )]
    NoAdvertisedAddress {
        /// The listen address asked for.
        listen: SocketAddr,
    },
    /// Something else (another broker?) is listening on [`Settings::listen`].
    #[error("{listen} is already in use (another broker?)")]
    AddressInUse {
        /// The listen address asked for.
        listen: SocketAddr,
    },
    /// The listen address could not be bound for another reason (a host address this machine does not have, a
    /// privileged port).
    #[error("cannot listen on {listen}")]
    Listen {
        /// The listen address asked for.
        listen: SocketAddr,
        /// What binding it answered.
        #[source]
        source: io::Error,
    },
    /// The data directory holds more partitions than the process's open-file limit lets the broker open: it was
    /// written under a higher limit.
    #[error(
        "cannot open the broker's data in {}: the data holds more partitions than the open-file limit of {open_files} lets the broker open (each keeps one file open); raise the limit (ulimit -n, or LimitNOFILE= for a service) and start again",
        data_dir.display()
    )]
    OpenFileLimit {
        /// [`Settings::data_dir`].
        data_dir: PathBuf,
        /// The open-file limit in force.
        open_files: usize,
    },
    /// The data directory could not be created, read or recovered.
    #[error("cannot open the broker's data in {}", data_dir.display())]
    Data {
        /// [`Settings::data_dir`].
        data_dir: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
}

/// The broker's shared state, handed to every connection.
pub(crate) struct Core {
    settings: Settings,
    topics: Arc<topics::Topics>,
    groups: groups::Coordinator,
    flusher: flush::Flusher,
    producer_ids: producer_ids::ProducerIds,
    cluster_id: String,
    /// Host and port put in metadata: what clients should connect to.
    advertised: (String, i32),
    /// Error codes the next produce requests are refused with (a test seam for client error handling).
    refusals: Mutex<std::collections::VecDeque<i16>>,
    /// How many produce requests are still to be written but answered by closing the connection (a test seam
    /// for retries after a lost answer).
    lost_answers: std::sync::atomic::AtomicUsize,
    /// What connections share: the connection registry, request bytes in flight, and gauges for tests.
    network: server::Network,
    /// What the broker counts about itself, for metrics.
    meter: Arc<meter::Meter>,
}

/// Reads a running broker's gauges and hands its metrics to a Prometheus registry; it keeps the broker's shared
/// state, not its tasks.
#[derive(Clone)]
pub struct Probe(Arc<Core>);

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe").finish_non_exhaustive()
    }
}

impl Probe {
    /// Open client connections.
    pub fn connections(&self) -> usize {
        self.0.network.connections()
    }

    /// Partitions of all topics.
    pub fn partitions(&self) -> usize {
        self.0.topics.partition_count()
    }

    /// Registers the broker's metrics in `registry`: requests by API and error code with their latency, bytes in
    /// and out, fsync latency, connections (open, accepted, evicted, dropped) and log bytes per topic. Their names
    /// carry no prefix; register them in a sub-registry (`Registry::sub_registry_with_prefix`) to give them one.
    /// The gauges read when scraped show nothing once the broker has stopped.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.0.meter.register(registry, Arc::downgrade(&self.0));
    }
}

/// A running embedded broker: it serves on its own tasks until [`EmbeddedBroker::stop`]. Dropping it without
/// stopping leaves those tasks running for as long as the runtime does.
pub struct EmbeddedBroker {
    address: SocketAddr,
    data_dir: PathBuf,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    core: Arc<Core>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("address", &self.address)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl EmbeddedBroker {
    /// Recovers the data in `settings.data_dir` (creating the directory if need be) and starts serving on
    /// `settings.listen`, on the current tokio runtime. Returns once the broker accepts connections.
    pub async fn start(settings: Settings) -> Result<EmbeddedBroker, StartError> {
        let started = Instant::now();
        let listen = settings.listen;
        if listen.ip().is_unspecified() && settings.advertise.is_none() {
            return Err(StartError::NoAdvertisedAddress { listen });
        }
        let listener = TcpListener::bind(listen).await.map_err(|source| match source.kind() {
            io::ErrorKind::AddrInUse => StartError::AddressInUse { listen },
            _ => StartError::Listen { listen, source },
        })?;
        let address = listener.local_addr().map_err(|source| StartError::Listen { listen, source })?;
        let data_dir = settings.data_dir.clone();
        let core = match tokio::task::spawn_blocking(move || open(settings, address)).await {
            Ok(opened) => Arc::new(opened?),
            // Opening panicked, or the runtime is shutting down under us.
            Err(failed) => return Err(StartError::Data { data_dir, source: io::Error::other(failed) }),
        };
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(server::serve(listener, core.clone(), shutdown.clone(), tracker.clone()));
        tracker.spawn(housekeeping(core.clone(), shutdown.clone()));
        tracing::info!(
            %address,
            data = %data_dir.display(),
            topics = core.topics.all().len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedded broker ready"
        );
        Ok(EmbeddedBroker { address, data_dir, shutdown, tracker, core })
    }

    /// The address clients connect to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Refuses the next `count` produce requests with Kafka error `code`, writing nothing: for tests of how
    /// clients handle a refusal.
    pub fn refuse_next_produces(&self, code: i16, count: usize) {
        self.core.refusals.lock().unwrap_or_else(|p| p.into_inner()).extend(std::iter::repeat_n(code, count));
    }

    /// Writes the next `count` produce requests but, instead of answering, closes the connection, as if the
    /// answer were lost on the way: for tests of idempotent retries.
    pub fn lose_next_produce_answers(&self, count: usize) {
        self.core.lost_answers.fetch_add(count, std::sync::atomic::Ordering::SeqCst);
    }

    /// Request bytes being read or dispatched right now, across all connections: for tests of
    /// `max_inflight_request_bytes`.
    #[doc(hidden)]
    pub fn inflight_request_bytes(&self) -> usize {
        self.core.network.inflight_request_bytes()
    }

    /// The most answers ever built (encoded, fetches read from the log) and not yet written, at the same time,
    /// across all connections: for tests that a client pipelining requests cannot make the broker hold their
    /// answers.
    #[doc(hidden)]
    pub fn answers_held_peak(&self) -> usize {
        self.core.network.answers_held_peak()
    }

    /// The most bytes of answers built and not yet written at once, across connections: for tests of
    /// `max_answer_bytes`.
    #[doc(hidden)]
    pub fn answer_bytes_peak(&self) -> usize {
        self.core.network.answer_bytes_peak()
    }

    /// Runs retention now, as the periodic task does, judging the age of segments as of `now` (a time in the future
    /// stands in for waiting): for tests of per-topic retention. Returns how many segments were deleted.
    #[doc(hidden)]
    pub fn enforce_retention(&self, now: SystemTime) -> usize {
        enforce_retention(&self.core, now)
    }

    /// Open connections: for tests of the connection limit and timeouts.
    #[doc(hidden)]
    pub fn connections(&self) -> usize {
        self.core.network.connections()
    }

    /// Open connections reading a request or with an answer pending: for tests of which connection makes room.
    #[doc(hidden)]
    pub fn busy_connections(&self) -> usize {
        self.core.network.busy_connections()
    }

    /// What metadata tells clients to connect to, as HOST:PORT (an IPv6 host in brackets):
    /// [`Settings::advertise`], else the address the broker listens on.
    pub fn advertised(&self) -> String {
        let (host, port) = &self.core.advertised;
        if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
    }

    /// A cheap handle that reads the broker's gauges while it runs, for metrics.
    pub fn probe(&self) -> Probe {
        Probe(self.core.clone())
    }

    /// Where the data lives.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops accepting, closes connections, and fsyncs everything written.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        let core = self.core;
        let _ = tokio::task::spawn_blocking(move || {
            for partition in core.topics.all_partitions() {
                if let Some(target) = partition.log().sync_target() {
                    let _ = target.file.sync_data();
                }
            }
        })
        .await;
    }
}

fn open(mut settings: Settings, address: SocketAddr) -> Result<Core, StartError> {
    let data_dir = settings.data_dir.clone();
    let failed = |source: io::Error| StartError::Data { data_dir: data_dir.clone(), source };
    fs::create_dir_all(&settings.data_dir).map_err(failed)?;
    // The logs hold everything clients wrote (for franz: every ticket, internal notes included): readable by the
    // broker's user only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&settings.data_dir, fs::Permissions::from_mode(0o700)).map_err(failed)?;
    }
    let open_files = raise_open_file_limit();
    let max_partitions = fit_to_open_files(&mut settings, open_files);
    let (topics, repaired) =
        topics::Topics::load(&settings.data_dir, settings.log.clone(), max_partitions).map_err(|error| {
            match error.raw_os_error() {
                // EMFILE: data written under a higher limit than this process has.
                Some(24) => StartError::OpenFileLimit { data_dir: data_dir.clone(), open_files },
                _ => failed(error),
            }
        })?;
    for repaired in repaired {
        tracing::warn!(
            topic = %repaired.topic,
            partition = repaired.partition,
            bytes = repaired.recovery.truncated_bytes,
            "cut an incomplete batch off the end of the log (written when the broker stopped abruptly; never acknowledged)"
        );
    }
    let limits = groups::Limits {
        max_member_metadata_bytes: settings.max_member_metadata_bytes,
        max_group_members: settings.max_group_members,
        max_group_metadata_bytes: settings.max_group_metadata_bytes,
        max_groups: settings.max_groups,
    };
    let groups = groups::Coordinator::open(
        &settings.data_dir.join("groups"),
        settings.initial_rebalance_delay,
        limits,
        |name| topics.get(name).map(|t| t.id),
        |name, index| topics.partition(name, index).map(|p| p.log().end_offset()),
    )
    .map_err(failed)?;
    // Epochs above 0 are bumps this broker granted (KIP-360) before it stopped; the producers' state in the logs
    // remembers them.
    let mut epochs = std::collections::HashMap::new();
    for partition in topics.all_partitions() {
        for (id, producer) in &partition.log().producers.by_id {
            let epoch = epochs.entry(*id).or_insert(0);
            *epoch = producer.epoch.max(*epoch);
        }
    }
    let producer_ids =
        producer_ids::ProducerIds::open(&settings.data_dir.join("producer-ids"), epochs).map_err(failed)?;
    let cluster_id = cluster_id(&settings.data_dir).map_err(failed)?;
    let topics = Arc::new(topics);
    let listed = topics.clone();
    let meter = Arc::new(meter::Meter::default());
    let flusher = flush::Flusher::start(settings.durability, meter.clone(), move || listed.all_partitions());
    let advertised = match &settings.advertise {
        Some((host, port)) => (host.clone(), i32::from(*port)),
        None => (address.ip().to_string(), i32::from(address.port())),
    };
    let network = server::Network::new(&settings);
    Ok(Core {
        advertised,
        settings,
        topics,
        groups,
        flusher,
        producer_ids,
        cluster_id,
        refusals: Mutex::default(),
        lost_answers: Default::default(),
        network,
        meter,
    })
}

/// Raises the soft limit of open files to the hard limit, as servers do, and returns the limit now in force.
fn raise_open_file_limit() -> usize {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => usize::try_from(limit).unwrap_or(usize::MAX),
        Err(error) => {
            tracing::warn!("cannot read or raise the open-file limit ({error}); assuming 1024");
            1024
        }
    }
}

/// Fits the connection and partition limits to `open_files`, so that neither clients nor topics can make the
/// broker run out of file handles (and then fail to start again): half of what is left after a reserve goes to
/// connections at most, the rest to partitions. Returns the partition limit.
fn fit_to_open_files(settings: &mut Settings, open_files: usize) -> usize {
    let budget = open_files.saturating_sub(FILE_RESERVE).max(2);
    if settings.max_connections > budget / 2 {
        tracing::warn!(
            requested = settings.max_connections,
            allowed = budget / 2,
            open_files,
            "the open-file limit allows fewer connections than configured; raise it (ulimit -n) to allow more"
        );
        settings.max_connections = budget / 2;
    }
    let room = budget - settings.max_connections;
    match settings.max_partitions {
        Some(wanted) if wanted > room => {
            tracing::warn!(
                requested = wanted,
                allowed = room,
                open_files,
                "the open-file limit allows fewer partitions than configured; raise it (ulimit -n) to allow more"
            );
            room
        }
        Some(wanted) => wanted,
        None => room.min(DEFAULT_MAX_PARTITIONS),
    }
}

/// A stable id for this data directory, created on first start.
fn cluster_id(dir: &Path) -> io::Result<String> {
    let path = dir.join("cluster-id");
    match fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            let id = format!("franz-{}", uuid::Uuid::new_v4().simple());
            fs::write(&path, &id)?;
            Ok(id)
        }
    }
}

/// Periodic work: group session expiry and rebalance deadlines (every 50 ms), retention (every 30 s).
async fn housekeeping(core: Arc<Core>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut last_retention = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        core.groups.tick();
        if last_retention.elapsed() >= Duration::from_secs(30) {
            last_retention = Instant::now();
            let core = core.clone();
            let _ = tokio::task::spawn_blocking(move || enforce_retention(&core, SystemTime::now())).await;
        }
    }
}

/// Deletes the segments every partition's retention lets go as of `now`: each partition's log is kept by its
/// topic's own `retention.ms` and `retention.bytes` where the topic was created with them, and by the broker-wide
/// settings otherwise (resolved when the log was opened, see `topics.rs`). Returns how many segments were deleted.
fn enforce_retention(core: &Core, now: SystemTime) -> usize {
    let mut total = 0;
    for partition in core.topics.all_partitions() {
        match partition.log().enforce_retention(now) {
            Ok(0) => {}
            Ok(deleted) => {
                total += deleted;
                tracing::info!(topic = %partition.topic, partition = partition.index, deleted, "retention deleted old segments");
            }
            Err(error) => {
                tracing::warn!(topic = %partition.topic, partition = partition.index, "retention failed: {error}")
            }
        }
    }
    total
}
