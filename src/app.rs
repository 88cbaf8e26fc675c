//! `franz up`: start the broker, create the topics, run the services, and shut all of it down cleanly.
//!
//! This module owns the lifecycle: it holds the shutdown token and the set of service tasks, waits for SIGINT,
//! SIGTERM or a failing service, and then waits for every service to finish its in-flight work, for at most
//! [`SHUTDOWN_DEADLINE`] (a second signal ends the process at once). It contains no service logic and does no Kafka
//! I/O of its own beyond what `broker` does for it and the ticket store's identity check (`store::follow::identity`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::config::{Config, Service};
use crate::kafka::admin::TopicStatus;
use crate::metrics::Metrics;
use crate::ops::Ops;
use crate::services::{self, Context, Plan};
use crate::store::{self, Store};

/// A started franz: its broker and its running services.
pub struct Running {
    pub broker: Broker,
    pub topics: Vec<TopicStatus>,
    /// One line per configured service: its name and what it is doing (or how to enable it).
    pub services: Vec<(Service, String)>,
    /// Where the desk serves, when it runs.
    pub desk: Option<SocketAddr>,
    /// The ticket store, when akte or the desk runs.
    pub store: Option<Store>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served: the desk's address, or `metrics_listen`'s.
    pub ops_address: Option<SocketAddr>,
    /// What those endpoints read.
    pub ops: Arc<Ops>,
    pub shutdown: CancellationToken,
    /// Each running task with its name (a service, or the ticket store's follower).
    tasks: JoinSet<(String, anyhow::Result<()>)>,
    /// The names of the tasks in `tasks` that have not ended yet, to say which ones a late shutdown left behind.
    names: Vec<String>,
    /// Cancels `shutdown` when this is dropped without `wait` (a caller that bails out early), so that no
    /// service, and no thread the runtime would wait for, outlives it.
    _stop_on_drop: tokio_util::sync::DropGuard,
}

/// Where the ticket store lives: beside the embedded broker's data (so `--ephemeral` makes it temporary too),
/// else in the data dir.
fn store_path(broker: &Broker, config: &Config) -> PathBuf {
    let dir = match broker {
        Broker::Embedded(embedded, _) => embedded.data_dir().to_path_buf(),
        _ => config.data_dir.clone(),
    };
    dir.join("store").join("tickets.sqlite")
}

/// Starts the broker, the topics and the configured services. Returns once all of them are up. Cancelling
/// `shutdown` stops them (and, while a container is still starting, abandons it).
pub async fn start(config: &Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let broker = Broker::start(config, &shutdown).await?;
    let bootstrap = broker.bootstrap();
    let (kept, compacted, single) =
        (config.topics.kept_forever(), config.topics.compacted(), config.topics.single_partition());
    let spread: Vec<&str> = config.topics.all().into_iter().filter(|t| !single.contains(t)).collect();
    let mut topics = broker
        .ensure_topics(&spread, config.partitions, &kept, &compacted)
        .await
        .context("cannot create the topics")?;
    topics.extend(broker.ensure_topics(&single, 1, &kept, &compacted).await.context("cannot create the topics")?);
    for topic in topics.iter().filter(|t| t.partitions < config.partitions && !single.contains(&t.name.as_str())) {
        tracing::warn!(
            "topic {} has {} partitions, fewer than the configured {}; at most {} consumers of it can share the work",
            topic.name,
            topic.partitions,
            config.partitions,
            topic.partitions
        );
    }

    let mut tasks = JoinSet::new();
    let mut names = Vec::new();
    let metrics = Arc::new(Metrics::new(broker.probe().as_ref()));
    let store = match config.services.iter().any(|s| services::uses_store(*s, config)) {
        false => None,
        true => {
            let path = store_path(&broker, config);
            let identity = store::follow::identity(&bootstrap, &config.topics.events).await;
            let (store, writer) = store::open(&path, &identity)?;
            let follow = store::follow::run(writer, bootstrap.clone(), config.topics.events.clone(), shutdown.clone());
            Some((store, follow))
        }
    };
    let (store, follow) = store.unzip();
    let ops = Arc::new(Ops::new(
        metrics.clone(),
        bootstrap.clone(),
        config.topics.all().iter().map(|t| t.to_string()).collect(),
        groups(config),
        store.clone(),
        broker.info(),
    ));
    if let Some(follow) = follow {
        spawn(&mut tasks, &mut names, &ops, "ticket store".to_owned(), follow);
    }
    let ops_router = crate::ops::router(ops.clone());
    let context = Context {
        config,
        bootstrap,
        store: store.clone(),
        desk_dir: crate::people::dir(config),
        shutdown: shutdown.clone(),
        metrics,
        ops: ops_router.clone(),
    };
    let mut services = Vec::new();
    let mut desk = None;
    for service in &config.services {
        let plan = match services::plan(*service, &context).await {
            Ok(plan) => plan,
            Err(error) => {
                // Stop what started already before reporting why franz cannot start.
                shutdown.cancel();
                while tasks.join_next().await.is_some() {}
                broker.stop().await;
                return Err(error.context(format!("cannot start {}", service.name())));
            }
        };
        let status = match plan {
            Plan::Run { status, task, serves } => {
                spawn(&mut tasks, &mut names, &ops, service.name(), task);
                if *service == Service::Desk {
                    desk = serves;
                    if let Some(address) = desk {
                        ops.set_desk(crate::desk::url_for(address));
                    }
                }
                format!("running  {status}")
            }
            Plan::Off(reason) => format!("off      {reason}"),
        };
        services.push((*service, status));
    }
    let ops_address = match config.metrics_listen {
        Some(listen) => {
            let listener = match bind_ops(listen).await {
                Ok(listener) => listener,
                Err(error) => {
                    shutdown.cancel();
                    while tasks.join_next().await.is_some() {}
                    broker.stop().await;
                    return Err(error);
                }
            };
            let address = listener.local_addr()?;
            let stop = shutdown.clone();
            let serve = crate::desk::serve_limited(listener, ops_router, stop);
            spawn(&mut tasks, &mut names, &ops, "metrics".to_owned(), serve);
            Some(address)
        }
        None => {
            if desk.is_none() {
                tracing::info!(
                    "no /metrics, /healthz or /readyz: the desk does not run; set --metrics-listen ADDR to serve them"
                );
            }
            desk
        }
    };
    let _stop_on_drop = shutdown.clone().drop_guard();
    Ok(Running { broker, topics, services, desk, store, ops_address, ops, shutdown, tasks, names, _stop_on_drop })
}

/// The ops endpoints' own listener (`metrics_listen`), with an error that says what to do.
async fn bind_ops(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|error| {
        anyhow::anyhow!("cannot serve the metrics on {listen} ({error}); pass --metrics-listen with another address")
    })?;
    if listen.ip().is_unspecified() {
        tracing::warn!(
            "/metrics, /healthz and /readyz on {listen} answer anyone who reaches this machine, without a credential \
             (topic names, the broker's address, each service's last problem); bind them to loopback or a private \
             address unless a firewall guards the port"
        );
    }
    Ok(listener)
}

/// How long `franz broker` lets the requests to its endpoints finish at shutdown: they only read, and a client that
/// sends half a request must not hold the broker up.
const OPS_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// How long `franz up` may take to stop, from the first SIGINT or SIGTERM (or a failing service) to its exit.
/// With the cluster up, the services finish their work in flight and commit well within it; with the cluster gone
/// that work cannot finish, and waiting longer would not help. What was not committed is delivered again after the
/// next start (at-least-once allows it).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(15);

/// The part of [`SHUTDOWN_DEADLINE`] kept for the process itself after [`Running::wait`] returns: `main` gives the
/// runtime half of it to end what still runs on its blocking pool (a librdkafka call waiting for a gone cluster
/// never ends by itself), and the other half is the margin for dropping what is left and exiting (with only one
/// second in all, an attack measured 15.01 s from SIGTERM to exit).
pub const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Spawns a task under `name`, marking it running in `ops` until it ends.
fn spawn(
    tasks: &mut JoinSet<(String, anyhow::Result<()>)>,
    names: &mut Vec<String>,
    ops: &Arc<Ops>,
    name: String,
    task: impl Future<Output = anyhow::Result<()>> + Send + 'static,
) {
    names.push(name.clone());
    ops.set_running(&name, true);
    let ops = ops.clone();
    tasks.spawn(async move {
        let result = task.await;
        if let Err(error) = &result {
            ops.metrics.troubles.report(&name, format!("failed: {error:#}"));
        }
        ops.set_running(&name, false);
        (name, result)
    });
}

/// Each franz consumer group of an enabled service, with the topics it reads: what `/metrics` reports lag for.
fn groups(config: &Config) -> Vec<(String, Vec<String>)> {
    let topics = &config.topics;
    let mut groups = Vec::new();
    for service in &config.services {
        match service {
            Service::Aufbereitung => {
                groups.push((services::aufbereitung::GROUP.to_owned(), vec![topics.intake.clone()]));
            }
            Service::Absturz => groups
                .push((services::absturz::GROUP.to_owned(), vec![topics.errors.clone(), topics.dead_letters.clone()])),
            Service::Akte => {
                groups.push((services::akte::GROUP.to_owned(), vec![topics.commands.clone()]));
                groups.push((services::akte::INTAKE_GROUP.to_owned(), vec![topics.tickets.clone()]));
            }
            Service::Kummerkasten | Service::Desk | Service::Briefkasten => {}
        }
    }
    groups
}

impl Running {
    /// The lines `franz up` prints once ready: the `ready` line, the topics, the services.
    pub fn summary(&self) -> String {
        let mut out = format!("ready bootstrap={} {}\n", self.broker.bootstrap(), self.broker.describe());
        if let Broker::Embedded(broker, scratch) = &self.broker {
            match scratch {
                Some(_) => out.push_str("data: a temporary directory, removed when franz stops (--ephemeral)\n"),
                None => out.push_str(&format!("data: {}\n", broker.data_dir().display())),
            }
        }
        out.push_str("\ntopic                          partitions\n");
        for topic in &self.topics {
            let created = if topic.created { "" } else { "  (existed)" };
            out.push_str(&format!("{:<30} {}{created}\n", topic.name, topic.partitions));
        }
        if let Some(address) = self.ops_address {
            out.push_str(&format!("metrics: {}/metrics\n", crate::desk::url_for(address)));
        }
        out.push_str("\nservice        status\n");
        for (service, status) in &self.services {
            out.push_str(&format!("{:<14} {status}\n", service.name()));
        }
        out
    }

    /// Waits until shutdown is requested or a service fails, then stops every service and waits for them, for at
    /// most [`SHUTDOWN_DEADLINE`] less [`EXIT_GRACE`]. Returns the first service failure, if any, or says which
    /// tasks were still running when the deadline passed (they are abandoned: their uncommitted input is
    /// delivered again later).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut failure = None;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                joined = self.tasks.join_next() => match joined {
                    None => break,
                    Some(result) => {
                        forget(&mut self.names, &result);
                        if let Some(error) = task_failure(result) {
                            failure = Some(error);
                            break;
                        }
                    }
                },
            }
        }
        self.shutdown.cancel();
        // Every wait below is bounded by this one deadline: with the cluster gone, a service's commit, a consumer's
        // close and a container's removal can each wait for ever.
        let deadline = tokio::time::Instant::now() + (SHUTDOWN_DEADLINE - EXIT_GRACE);
        loop {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(None) => break,
                Ok(Some(result)) => {
                    forget(&mut self.names, &result);
                    if let Some(error) = task_failure(result) {
                        failure.get_or_insert(error);
                    }
                }
                Err(_) => {
                    let late = anyhow::anyhow!(
                        "stopped after {} s without waiting longer for {} (the cluster does not answer?); what they \
                         had not committed is delivered again after the next start",
                        (SHUTDOWN_DEADLINE - EXIT_GRACE).as_secs(),
                        self.names.join(", ")
                    );
                    // The tasks are aborted when `tasks` is dropped; a librdkafka call they left on the blocking pool
                    // is abandoned by `main`. The clients and the broker are not waited for either: the deadline has
                    // passed (a container left behind is removed by the next start).
                    return Err(failure.map_or(late, |failure| failure.context(late_note(&self.names))));
                }
            }
        }
        if tokio::time::timeout_at(deadline, self.ops.release_clients()).await.is_err() {
            tracing::warn!("the metrics' Kafka clients did not close within the shutdown deadline; left behind");
        }
        if tokio::time::timeout_at(deadline, self.broker.stop()).await.is_err() {
            tracing::warn!("the broker did not stop within the shutdown deadline; left behind");
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Says which tasks a late shutdown left behind, beside the failure that started it.
fn late_note(names: &[String]) -> String {
    format!("then stopped without waiting longer for {}", names.join(", "))
}

/// Drops an ended task's name from the ones still running.
fn forget(names: &mut Vec<String>, result: &Result<(String, anyhow::Result<()>), tokio::task::JoinError>) {
    if let Ok((name, _)) = result
        && let Some(at) = names.iter().position(|n| n == name)
    {
        names.remove(at);
    }
}

fn task_failure(result: Result<(String, anyhow::Result<()>), tokio::task::JoinError>) -> Option<anyhow::Error> {
    match result {
        Ok((_, Ok(()))) => None,
        Ok((name, Err(error))) => Some(error.context(format!("{name} failed"))),
        Err(join) => Some(anyhow::anyhow!("a service task ended abnormally: {join}")),
    }
}

/// `franz up`: start, print the summary, run until Ctrl-C or SIGTERM.
pub async fn up(config: Config, out: &mut impl Write) -> anyhow::Result<()> {
    // Signals are watched from the start: a Ctrl-C while a container image is pulled must still clean up.
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone())?;
    let running = start(&config, shutdown).await?;
    write!(out, "{}", running.summary())?;
    out.flush()?;
    let result = running.wait().await;
    if result.is_ok() {
        tracing::info!("franz stopped cleanly");
    }
    result
}

/// `franz broker`: only the embedded broker, until Ctrl-C or SIGTERM; no topics are created, no services run.
pub async fn broker(config: Config, out: &mut impl Write) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone())?;
    // Bound before the broker starts: a taken address must not leave clients a broker that is about to go.
    let ops_listener = match config.metrics_listen {
        Some(listen) if listen == config.listen && listen.port() != 0 => anyhow::bail!(
            "--metrics-listen {listen} is the broker's own --listen address; give the metrics another port"
        ),
        Some(listen) => Some(bind_ops(listen).await?),
        None => None,
    };
    let broker = Broker::start(&config, &shutdown).await?;
    let ops = match ops_listener {
        Some(listener) => Some(serve_broker_ops(&broker, listener, &shutdown)?),
        None => None,
    };
    writeln!(out, "ready bootstrap={} {}", broker.bootstrap(), broker.describe())?;
    if let Broker::Embedded(embedded, None) = &broker {
        writeln!(out, "data: {}", embedded.data_dir().display())?;
    }
    if let Some((address, ..)) = &ops {
        writeln!(out, "metrics: {}/metrics (and /healthz, /readyz)", crate::desk::url_for(*address))?;
    }
    out.flush()?;
    shutdown.cancelled().await;
    if let Some((_, ops, mut serving)) = ops {
        if tokio::time::timeout(OPS_DRAIN, &mut serving).await.is_err() {
            serving.abort();
        }
        // As `franz up` does: no client of the endpoints keeps calling a broker that stops.
        ops.release_clients().await;
    }
    broker.stop().await;
    tracing::info!("broker stopped cleanly");
    Ok(())
}

/// `franz broker`'s `/metrics`, `/healthz` and `/readyz`: the same endpoints as `franz up`'s, reading the broker's
/// own meter, with no topics to require, no services and no consumer groups. Serves until `shutdown`; returns the
/// address, what the endpoints read, and the serving task.
fn serve_broker_ops(
    broker: &Broker,
    listener: tokio::net::TcpListener,
    shutdown: &CancellationToken,
) -> anyhow::Result<(SocketAddr, Arc<Ops>, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    let address = listener.local_addr()?;
    let metrics = Arc::new(Metrics::broker_alone(broker.probe().as_ref()));
    let ops = Arc::new(Ops::new(metrics, broker.bootstrap(), Vec::new(), Vec::new(), None, broker.info()));
    let serving = tokio::spawn(crate::desk::serve_limited(listener, crate::ops::router(ops.clone()), shutdown.clone()));
    Ok((address, ops, serving))
}

/// The exit status after a second signal: 128 + SIGINT, what shells report for a process ended by Ctrl-C.
pub const EXIT_AT_ONCE: i32 = 130;

/// Cancels `token` on the first SIGINT or SIGTERM. Once shutdown has begun (by that signal, or by a failing
/// service), the next SIGINT or SIGTERM ends the process at once.
fn cancel_on_signals(token: CancellationToken) -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    tokio::spawn(async move {
        tokio::select! {
            which = signals.next() => tracing::info!(
                "{which}; shutting down (within {} s; a second signal stops at once)",
                SHUTDOWN_DEADLINE.as_secs()
            ),
            _ = token.cancelled() => {}
        }
        token.cancel();
        signals.next().await;
        // Asked twice: nothing may hold the process now, not even a destructor (dropping a librdkafka client waits
        // for a cluster that may be gone), so it ends here rather than by unwinding to `main`. What was in flight
        // is delivered again after the next start.
        tracing::warn!("second signal; exiting at once without finishing the work in flight");
        std::process::exit(EXIT_AT_ONCE);
    });
    Ok(())
}

/// SIGINT and SIGTERM, as one stream.
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            #[cfg(unix)]
            terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot listen for SIGTERM")?,
        })
    }

    /// Waits for the next SIGINT or SIGTERM and says which it was.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        let terminated = self.terminate.recv();
        #[cfg(not(unix))]
        let terminated = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "interrupted",
            _ = terminated => "terminated",
        }
    }
}
