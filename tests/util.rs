//! Shared helpers: an in-process broker with fresh topics, producing test records, reading outputs, waiting on
//! conditions with a timeout, and a deadline for each test ([`Deadline`]), which every [`Harness`] holds.

use std::future::Future;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use franz::config::Topics;
use franz::kafka::{self, admin, consumer_config, partitions_at};
use franz_broker::{EmbeddedBroker, Settings};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Message as _, OwnedMessage};
use rdkafka::producer::FutureRecord;

/// How long any single condition may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The longest one test may run. Every wait has its own timeout ([`PATIENCE`]), but a test can still hang where
/// nothing waits with one (a blocked runtime, a lock); this ends the run then, in minutes rather than at CI's 90.
pub const TEST_DEADLINE: Duration = Duration::from_secs(5 * 60);

/// The deadline of the test that made it: unless its thread ends within [`TEST_DEADLINE`], the test binary ends with
/// a line that names the test, failing the run. libtest names each test's thread after the test, and runs the whole
/// test on it, the shutdown of its runtime included: the deadline is kept by the thread (a thread-local value that
/// is dropped when the thread ends), so a test that hangs after its body, in its runtime's shutdown (a client's
/// drop that never returns), is ended too. It once hung a fresh-clone CI run that way, past a deadline kept by the
/// harness and dropped with it.
pub struct Deadline;

thread_local! {
    static DEADLINE: std::cell::RefCell<Option<std::sync::mpsc::Sender<()>>> = const { std::cell::RefCell::new(None) };
}

impl Deadline {
    pub fn start() -> Deadline {
        let test = std::thread::current().name().unwrap_or("a test").to_owned();
        let (done, watched) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            // Dropping the sender ends the wait with `Disconnected`: the test finished, passed or not.
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = watched.recv_timeout(TEST_DEADLINE) {
                eprintln!("\n{test} ran past its deadline of {TEST_DEADLINE:?}: ending the test run\n");
                std::process::exit(101);
            }
        });
        // A second harness in one test replaces the first's deadline with a fresh one.
        DEADLINE.with(|deadline| *deadline.borrow_mut() = Some(done));
        Deadline
    }
}

/// A produce refusal that clients do not retry (Kafka error code 29).
pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;

/// A broker with franz's topics, named uniquely for this test.
pub struct Harness {
    pub broker: EmbeddedBroker,
    _data: tempfile::TempDir,
    pub bootstrap: String,
    pub topics: Topics,
    pub partitions: i32,
    /// Dropped last: the broker's stop counts too.
    _deadline: Deadline,
}

impl Harness {
    pub async fn new(partitions: i32) -> Harness {
        // Logs go to the test's captured output, so a failing test shows what the services said.
        let filter =
            tracing_subscriber::EnvFilter::try_from_env("FRANZ_LOG").unwrap_or_else(|_| "info,librdkafka=warn".into());
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        let deadline = Deadline::start();
        let data = tempfile::tempdir().unwrap();
        let settings = Settings::new("127.0.0.1:0".parse().unwrap(), data.path().to_path_buf());
        let broker = EmbeddedBroker::start(settings).await.expect("the broker starts");
        let bootstrap = broker.address().to_string();
        let run = uuid::Uuid::new_v4().simple().to_string();
        let topics = Topics {
            intake: format!("intake-{run}"),
            tickets: format!("tickets-{run}"),
            dead_letters: format!("dlq-{run}"),
            errors: format!("errors-{run}"),
            commands: format!("commands-{run}"),
            events: format!("events-{run}"),
            cards: format!("cards-{run}"),
            files: format!("files-{run}"),
        };
        admin::ensure_topics_keeping(&bootstrap, &topics.all(), partitions, 1, &topics.kept_forever())
            .await
            .expect("topics are created");
        Harness { broker, _data: data, bootstrap, topics, partitions, _deadline: deadline }
    }

    /// franz's configuration against this broker and its topics, with its data in `data`, running `services`; a
    /// test sets what else it needs with struct update syntax (`Config { desk: …, ..harness.config(…) }`). No limit
    /// on open tickets per submitter: most tests open many from one person (the limit's tests set one).
    pub fn config(&self, data: &Path, services: &[franz::config::Service]) -> franz::config::Config {
        franz::config::Config {
            broker: franz::config::BrokerKind::External,
            bootstrap: self.bootstrap.clone(),
            data_dir: data.to_path_buf(),
            partitions: self.partitions,
            services: services.to_vec(),
            topics: self.topics.clone(),
            open_tickets_max: 0,
            ..franz::config::Config::default()
        }
    }

    /// Stops the broker, runs `while_down`, then starts the broker again on the same address and data.
    pub async fn with_broker_down<T>(self, while_down: impl Future<Output = T>) -> (Harness, T) {
        let Harness { broker, _data, bootstrap, topics, partitions, _deadline } = self;
        let address = broker.address();
        broker.stop().await;
        // The address is held while the broker is down, every connection closed at once: a broker of a test running
        // beside this one, listening on a port the system picks, could otherwise be given this one, and this test's
        // clients would reach another cluster (seen in a fresh-clone CI run: a ticket "published" while down).
        let held = tokio::net::TcpListener::bind(address).await.expect("the stopped broker's address is free");
        let holding = tokio::spawn(async move {
            loop {
                if let Ok((connection, _)) = held.accept().await {
                    drop(connection);
                }
            }
        });
        let output = while_down.await;
        holding.abort();
        let _ = holding.await;
        let settings = Settings::new(address, _data.path().to_path_buf());
        let broker = EmbeddedBroker::start(settings).await.expect("the broker starts again on its address");
        (Harness { broker, _data, bootstrap, topics, partitions, _deadline }, output)
    }

    /// Publishes records (partition, value) to a topic, with key `key-{partition}`, and waits for every ack.
    pub async fn produce(&self, topic: &str, records: &[(i32, Vec<u8>)]) {
        let producer = kafka::producer(&self.bootstrap).unwrap();
        let mut pending = Vec::new();
        for (partition, value) in records {
            let key = format!("key-{partition}");
            let record = FutureRecord::to(topic).partition(*partition).key(&key).payload(value.as_slice());
            pending.push(producer.send_result(record).map_err(|(e, _)| e).expect("the record is queued"));
        }
        for delivery in pending {
            delivery.await.unwrap().expect("the broker acknowledges the record");
        }
    }

    /// The sum of a topic's end offsets: how many records it holds.
    pub async fn count(&self, topic: &str) -> i64 {
        let topics = admin::describe(&self.bootstrap, Duration::from_secs(10)).await.unwrap();
        topics.iter().find(|t| t.name == topic).map(|t| t.end_offsets.iter().sum()).unwrap_or(0)
    }

    /// Waits until `topic` holds at least `n` records, then reads all of them.
    pub async fn read(&self, topic: &str, n: i64) -> Vec<OwnedMessage> {
        wait_until(&format!("{n} records on {topic}"), || async { self.count(topic).await >= n }).await;
        let total = self.count(topic).await;
        // A reader commits nothing: it only looks.
        let consumer: StreamConsumer = consumer_config(&self.bootstrap)
            .set("group.id", "reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.assign(&partitions_at(topic, self.partitions, rdkafka::Offset::Beginning)).unwrap();
        let mut messages = Vec::new();
        while (messages.len() as i64) < total {
            let message = tokio::time::timeout(PATIENCE, consumer.recv()).await.expect("records arrive").unwrap();
            messages.push(message.detach());
        }
        close(consumer).await;
        messages
    }

    /// Reads `n` records of `topic` and parses each value as JSON.
    pub async fn read_json(&self, topic: &str, n: i64) -> Vec<serde_json::Value> {
        self.read(topic, n).await.iter().map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap()).collect()
    }
}

/// Closes a consumer on the blocking pool. Closing a consumer of a group waits for the broker with no time limit;
/// on a runtime worker it would stall the tasks queued behind it, the in-process broker's among them.
pub async fn close<C: rdkafka::consumer::ConsumerContext + 'static>(consumer: StreamConsumer<C>) {
    tokio::task::spawn_blocking(move || drop(consumer)).await.expect("the consumer closes");
}

/// Polls `condition` until it holds; fails the test after [`PATIENCE`], naming what it waited for.
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !condition().await {
        assert!(start.elapsed() < PATIENCE, "timed out after {PATIENCE:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A valid historical intake record.
pub fn valid(message: &str) -> Vec<u8> {
    serde_json::json!({"message": message, "username": "pontatot", "timestamp": "2026-02-24T08:32:23.255Z"})
        .to_string()
        .into_bytes()
}

/// The `franz` binary with a clean environment, the harness's topics, and no developer config; its data (the ticket
/// store, the desk's staff list) in `dir/data`, never in the machine's own data dir, where a store of another
/// franz or of another test would be found (a test may name another with `FRANZ_DATA_DIR`).
pub fn franz(dir: &std::path::Path, harness: Option<&Harness>) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_franz"));
    command.current_dir(dir).arg("--config").arg(dir.join("franz.toml"));
    for (name, _) in std::env::vars() {
        if name.starts_with("FRANZ_") || name.starts_with("DISCORD_") || name == "KAFKA_BROKER" || name == "DOCKER_HOST"
        {
            command.env_remove(name);
        }
    }
    command.env("FRANZ_DATA_DIR", dir.join("data"));
    if let Some(harness) = harness {
        let topics = &harness.topics;
        command
            .env("FRANZ_TOPIC_INTAKE", &topics.intake)
            .env("FRANZ_TOPIC_TICKETS", &topics.tickets)
            .env("FRANZ_TOPIC_DEAD_LETTERS", &topics.dead_letters)
            .env("FRANZ_TOPIC_ERRORS", &topics.errors)
            .env("FRANZ_TOPIC_COMMANDS", &topics.commands)
            .env("FRANZ_TOPIC_EVENTS", &topics.events)
            .env("FRANZ_TOPIC_CARDS", &topics.cards)
            .env("FRANZ_TOPIC_FILES", &topics.files);
    }
    command
}

/// A scratch directory with an empty franz.toml, for `franz --config`.
pub fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("franz.toml"), "").unwrap();
    dir
}

/// A `franz up` (or `franz broker`) process whose standard error goes to a file the test can read.
pub struct Up {
    pub child: Child,
    pub log: std::path::PathBuf,
}

impl Up {
    /// Starts `franz up --bootstrap <the harness> <args>`.
    pub fn start(dir: &Path, name: &str, harness: &Harness, args: &[&str]) -> Up {
        let mut command = franz(dir, Some(harness));
        command.args(["up", "--bootstrap", &harness.bootstrap]).args(args);
        Up::spawn(dir, name, command)
    }

    /// [`Up::start`] with these environment variables set as well.
    pub fn start_with_env(dir: &Path, name: &str, harness: &Harness, args: &[&str], env: &[(&str, String)]) -> Up {
        let mut command = franz(dir, Some(harness));
        command.args(["up", "--bootstrap", &harness.bootstrap]).args(args);
        command.envs(env.iter().map(|(name, value)| (name, value)));
        Up::spawn(dir, name, command)
    }

    /// Starts `franz up --ephemeral --listen 127.0.0.1:0 <args>`: its own embedded broker, data removed on exit.
    pub fn embedded(dir: &Path, name: &str, args: &[&str]) -> Up {
        let mut command = franz(dir, None);
        command.args(["up", "--ephemeral", "--listen", "127.0.0.1:0"]).args(args);
        Up::spawn(dir, name, command)
    }

    /// Starts `franz broker --ephemeral --listen <listen> <args>`: the embedded broker alone, data removed on exit.
    pub fn broker_alone(dir: &Path, name: &str, listen: &str, args: &[&str]) -> Up {
        let mut command = franz(dir, None);
        command.args(["broker", "--ephemeral", "--listen", listen]).args(args);
        Up::spawn(dir, name, command)
    }

    /// Runs `command` with its log in `dir/name.log`.
    fn spawn(dir: &Path, name: &str, mut command: Command) -> Up {
        let log = dir.join(format!("{name}.log"));
        let child = command.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
        Up { child, log }
    }

    /// The partitions this process owns now: its latest "assigned partitions" log line.
    pub fn owned(&self) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines().rev().find_map(|l| l.split("assigned partitions: ").nth(1)).map_or(0, |p| p.split(", ").count())
    }

    /// Stops it with SIGTERM and returns its log; fails the test unless it exits cleanly.
    pub fn terminate(mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "franz up did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(status.success(), "franz up exited with {status}:\n{log}");
        log
    }

    /// Kills it with SIGKILL, as a crash or a power cut would, and waits until it is gone.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A franz process that is killed if the test ends (or fails) before it exits.
pub struct Reaped(pub Up);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}

impl Reaped {
    /// Kills it with SIGKILL, as a crash or a power cut would, and waits until it is gone.
    pub fn kill(&mut self) {
        self.0.child.kill().unwrap();
        self.0.child.wait().unwrap();
    }

    /// Sends it the signal `name` (`TERM`, `INT`, …).
    pub fn signal(&self, name: &str) {
        let pid = self.0.child.id().to_string();
        assert!(std::process::Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap().success());
    }

    /// Stops it with SIGTERM and returns its log; fails the test unless it exits cleanly within 30 s.
    pub fn terminate(mut self) -> String {
        self.signal("TERM");
        let status = self.exit_within(Duration::from_secs(30));
        let log = self.0.log();
        let status = status.unwrap_or_else(|| panic!("franz up did not stop after SIGTERM:\n{log}"));
        assert!(status.success(), "franz up exited with {status}:\n{log}");
        log
    }

    /// Waits up to `limit` for the process to exit; its status, or `None` if it still runs.
    pub fn exit_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A franz started in-process for a test. If the test fails while it runs, dropping it stops franz's services
/// while the test's broker still runs: consumers dropped after the broker is gone would wait for it forever, and
/// the failure would become a hang.
pub struct Started(Option<franz::app::Running>);

impl Started {
    pub async fn start(config: &franz::config::Config) -> Started {
        let shutdown = tokio_util::sync::CancellationToken::new();
        Started(Some(franz::app::start(config, shutdown).await.expect("franz starts")))
    }

    /// Stops franz and returns how its services ended; fails the test if that takes longer than [`PATIENCE`].
    pub async fn stop(mut self) -> anyhow::Result<()> {
        stop(self.0.take().expect("running")).await
    }
}

impl std::ops::Deref for Started {
    type Target = franz::app::Running;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("running")
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(running) = self.0.take() {
            stop_from_drop(running);
        }
    }
}

/// Stops a running franz and returns how its services ended; fails the test, naming the wait, if stopping takes
/// longer than [`PATIENCE`].
pub async fn stop(running: franz::app::Running) -> anyhow::Result<()> {
    running.shutdown.cancel();
    tokio::time::timeout(PATIENCE, running.wait())
        .await
        .unwrap_or_else(|_| panic!("franz did not stop within {PATIENCE:?}"))
}

/// Stops a running franz from a `Drop`: a test that fails must stop franz while the broker still runs, since
/// consumers dropped with the broker gone would wait for it forever, and the failure would become a hang.
pub fn stop_from_drop(running: franz::app::Running) {
    running.shutdown.cancel();
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(30), running.wait()).await;
        })
    });
}

/// Runs `test` on a runtime with a single worker thread, on a thread of its own, and fails after `limit` if it has
/// not finished. With one worker, a service that blocks its thread on a broker running in the same process
/// deadlocks every time instead of now and then; no timer on that runtime could fire then, so the limit is kept
/// from outside it, and the test fails instead of hanging (the stuck thread is abandoned).
pub fn on_one_worker<F, Fut>(limit: Duration, test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let runner = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        runtime.block_on(test());
    });
    let deadline = Instant::now() + limit;
    while !runner.is_finished() {
        assert!(Instant::now() < deadline, "the test did not finish within {limit:?}: its runtime is blocked");
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Err(panic) = runner.join() {
        std::panic::resume_unwind(panic);
    }
}
