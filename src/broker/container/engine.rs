//! The Docker engine side of a container broker: connect (and agree on an API version), deal with what an earlier
//! franz left on the same address, pull, create, start, wait for the ready line, remove.
//!
//! It speaks to the engine through bollard. What to do in each case is decided by the plain functions of
//! `container.rs`; this module only carries it out and reports progress on standard error. It is tested against
//! a real engine with stand-in images by `cargo xtask containers`, not by `cargo test`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerSummaryStateEnum, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::{CONTAINER_PORT, ContainerSpec, DockerEndpoint, LABEL_HOST, LABEL_PORT, Previous, PullProgress, Verdict};

/// How long a started container may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a port published by a container that was just removed may take to be free again.
const PORT_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// A running broker container.
pub struct Container {
    docker: Docker,
    id: String,
    name: String,
    pub spec: ContainerSpec,
    /// Left running on exit: started with `--keep`, or a kept container this franz reused.
    keep: bool,
}

/// Checks for a Docker engine, deals with a container an earlier franz left on the same address, then starts the
/// container (pulling its image first if it is missing) and waits until its broker says it is ready. With `keep`,
/// the container outlives franz. Cancelling `shutdown` stops the start and removes what was created.
pub async fn start(spec: ContainerSpec, keep: bool, shutdown: &CancellationToken) -> anyhow::Result<Container> {
    let endpoint = DockerEndpoint::from_env(std::env::var("DOCKER_HOST").ok().as_deref())?;
    endpoint.check(Duration::from_secs(1)).await?;
    let docker = connect(&endpoint).await?;

    let (reused, removed) = settle_previous(&docker, &spec).await?;
    if let Some(reused) = reused {
        return Ok(Container { docker, id: reused.id, name: reused.name, spec, keep: true });
    }
    wait_until_free(&docker, &spec, removed).await?;

    let reference = spec.reference();
    tokio::select! {
        pulled = pull(&docker, &reference) => pulled?,
        _ = shutdown.cancelled() => bail!("interrupted while pulling {reference}"),
    }
    eprintln!("starting {reference} as {}", spec.container_name());
    let started = Instant::now();
    let id = create(&docker, &spec, keep).await?;
    let container = Container { docker, id, name: spec.container_name(), spec, keep };
    let ready = async {
        container
            .docker
            .start_container(&container.id, None)
            .await
            .with_context(|| format!("cannot start {reference}"))?;
        container.wait_ready(started).await
    };
    let outcome = tokio::select! {
        ready = ready => ready,
        _ = shutdown.cancelled() => Err(anyhow!("interrupted while the {} container was starting", container.spec.kind.name())),
    };
    match outcome {
        Ok(()) => {
            eprintln!("{reference} is ready after {:.1}s", started.elapsed().as_secs_f64());
            Ok(container)
        }
        Err(error) => {
            container.remove().await;
            Err(error)
        }
    }
}

/// Connects to the engine and settles on the newest API version both sides speak, so an engine older than the
/// client (Debian's Docker 20.10 speaks 1.41, bollard 1.52) is still usable.
async fn connect(endpoint: &DockerEndpoint) -> anyhow::Result<Docker> {
    const TIMEOUT_SECS: u64 = 120;
    let docker = match endpoint {
        DockerEndpoint::Unix(path) => {
            Docker::connect_with_unix(&path.to_string_lossy(), TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        }
        DockerEndpoint::Tcp(address) => {
            Docker::connect_with_http(&format!("tcp://{address}"), TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        }
    }
    .with_context(|| format!("cannot connect to the Docker engine at {}", endpoint.describe()))?;
    docker.negotiate_version().await.with_context(|| {
        format!("the Docker engine at {} did not say which API version it speaks", endpoint.describe())
    })
}

/// Finds the containers an earlier franz started on this host address and port, and carries out [`super::judge`]
/// on each: removes stale ones (one line each), refuses to touch one in use, and returns a kept one to reuse, and
/// whether it removed any.
async fn settle_previous(docker: &Docker, spec: &ContainerSpec) -> anyhow::Result<(Option<Previous>, bool)> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_owned(),
            vec![format!("{LABEL_PORT}={}", spec.host.port()), format!("{LABEL_HOST}={}", spec.host.ip())],
        )])),
        ..Default::default()
    };
    let found = docker.list_containers(Some(options)).await.context("cannot list the Docker engine's containers")?;
    let (mut reuse, mut removed) = (None, false);
    for summary in found {
        let (Some(id), Some(labels)) = (summary.id.as_deref(), summary.labels.as_ref()) else { continue };
        let name = summary.names.as_ref().and_then(|names| names.first()).map_or(id, String::as_str);
        let running = summary.state == Some(ContainerSummaryStateEnum::RUNNING);
        let Some(previous) = Previous::from_labels(id, name, running, labels, is_running_franz) else { continue };
        match super::judge(spec, &previous) {
            Verdict::Refuse(message) => bail!(message),
            Verdict::Reuse => reuse = Some(previous),
            Verdict::Remove(why) => {
                docker
                    .remove_container(
                        &previous.id,
                        Some(RemoveContainerOptions { force: true, v: true, ..Default::default() }),
                    )
                    .await
                    .with_context(|| format!("cannot remove the stale container {}", previous.name))?;
                eprintln!("removed stale container {} ({}) from {}: {why}", previous.name, previous.image, spec.host);
                removed = true;
            }
        }
    }
    if let Some(previous) = &reuse {
        eprintln!(
            "reusing container {} ({}) on {}, left running with --keep; it keeps running after franz exits (remove it with `docker rm -f {}`)",
            previous.name, previous.image, spec.host, previous.name
        );
    }
    Ok((reuse, removed))
}

/// Whether `pid` is a franz process that still runs (on Linux, from /proc; elsewhere it cannot be known, and a
/// container whose franz is gone and one whose franz runs look alike, so both count as stale).
fn is_running_franz(pid: u32) -> bool {
    pid != std::process::id()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| super::is_running_franz(&stat))
}

/// Checks that the host address can be bound; after removing a stale container (whose published port is
/// released a moment later) it waits for that. When it stays taken, names what holds it: a container Docker knows
/// of, or another process.
async fn wait_until_free(docker: &Docker, spec: &ContainerSpec, just_removed: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + if just_removed { PORT_RELEASE_TIMEOUT } else { Duration::ZERO };
    loop {
        if std::net::TcpListener::bind(spec.host).is_ok() {
            return Ok(());
        }
        let holder = holder_of(docker, spec).await;
        if holder.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let holder = holder.as_ref().map(|(name, image)| (name.as_str(), image.as_str()));
        bail!(super::port_taken(spec.host, holder));
    }
}

/// The running container (name and image) that publishes a port on `spec`'s host port, on its address or on all.
async fn holder_of(docker: &Docker, spec: &ContainerSpec) -> Option<(String, String)> {
    let containers = docker.list_containers(None::<ListContainersOptions>).await.ok()?;
    let ip = spec.host.ip().to_string();
    containers.into_iter().find_map(|summary| {
        let publishes = summary.ports.iter().flatten().any(|port| {
            port.public_port == Some(spec.host.port())
                && port.ip.as_deref().is_none_or(|bound| bound == ip || bound == "0.0.0.0" || bound == "::")
        });
        let name = summary.names?.into_iter().next()?;
        publishes.then(|| (name.trim_start_matches('/').to_owned(), summary.image.unwrap_or_default()))
    })
}

/// Pulls `reference` unless the engine already has it, printing progress every two seconds. A failed pull says
/// what failed and what to do instead ([`super::pull_failure`]).
async fn pull(docker: &Docker, reference: &str) -> anyhow::Result<()> {
    if docker.inspect_image(reference).await.is_ok() {
        return Ok(());
    }
    let (image, tag) = reference.rsplit_once(':').context("an image reference has a tag")?;
    eprintln!("pulling {reference}; the first start can take minutes");
    let options =
        CreateImageOptions { from_image: Some(image.to_owned()), tag: Some(tag.to_owned()), ..Default::default() };
    let mut stream = docker.create_image(Some(options), None, None);
    let mut progress = PullProgress::default();
    let mut shown = Instant::now();
    while let Some(info) = stream.next().await {
        let info = info.map_err(|error| {
            let message = match &error {
                bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
                other => other.to_string(),
            };
            anyhow!(super::pull_failure(reference, &message))
        })?;
        if let Some(error) = info.error_detail.as_ref().and_then(|e| e.message.clone()) {
            bail!(super::pull_failure(reference, &error));
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

/// Creates the container, labelled as franz's, with its port published on the host address only.
async fn create(docker: &Docker, spec: &ContainerSpec, keep: bool) -> anyhow::Result<String> {
    let name = spec.container_name();
    let body = ContainerCreateBody {
        image: Some(spec.reference()),
        cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
        env: Some(spec.env.iter().map(|(key, value)| format!("{key}={value}")).collect()),
        labels: Some(spec.labels(keep, std::process::id())),
        exposed_ports: Some(vec![format!("{CONTAINER_PORT}/tcp")]),
        host_config: Some(HostConfig { port_bindings: Some(spec.port_bindings()), ..Default::default() }),
        ..Default::default()
    };
    let options = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
    match docker.create_container(Some(options), body).await {
        Ok(created) => Ok(created.id),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => bail!(
            "a container named {name} exists and was not started by franz; remove or rename it (`docker rm -f {name}`)"
        ),
        Err(error) => Err(error).with_context(|| format!("cannot create the container {name}")),
    }
}

impl Container {
    /// Follows the container's output until its ready line, printing the elapsed time every 10 s. Fails when the
    /// container exits first (with its last lines) or after [`READY_TIMEOUT`].
    async fn wait_ready(&self, started: Instant) -> anyhow::Result<()> {
        let options = LogsOptions { follow: true, stdout: true, stderr: true, ..Default::default() };
        let mut logs = self.docker.logs(&self.id, Some(options));
        let mut seen = String::new();
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(10), Duration::from_secs(10));
        let deadline = tokio::time::sleep(READY_TIMEOUT);
        tokio::pin!(deadline);
        let reference = self.spec.reference();
        loop {
            tokio::select! {
                chunk = logs.next() => match chunk {
                    Some(Ok(output)) => {
                        seen.push_str(&output.to_string());
                        if seen.contains(&self.spec.ready_message) {
                            return Ok(());
                        }
                        // Only the tail matters: the ready line, or the last lines to show if the container exits.
                        if seen.len() > 64 * 1024 {
                            seen.drain(..seen.len() - 16 * 1024);
                        }
                    }
                    Some(Err(error)) => return Err(error).with_context(|| format!("cannot read the output of {}", self.name)),
                    None => {
                        let last: Vec<&str> = seen.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect();
                        bail!("the container {} ({reference}) exited before it was ready; its last lines:\n{}", self.name, last.join("\n"));
                    }
                },
                _ = ticker.tick() => eprintln!("still starting {reference} ({}s)", started.elapsed().as_secs()),
                _ = &mut deadline => bail!(
                    "{reference} did not print {:?} within {READY_TIMEOUT:?}; see `docker logs {}`",
                    self.spec.ready_message, self.name
                ),
            }
        }
    }

    /// Removes the container and its anonymous volumes; a failure is logged with the command that finishes it.
    async fn remove(&self) {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        if let Err(error) = self.docker.remove_container(&self.id, Some(options)).await {
            tracing::error!(%error, "could not remove container {}; remove it with `docker rm -f {}`", self.name, self.name);
        }
    }

    /// Removes the container, unless it is kept: then says how to reach and remove it.
    pub async fn stop(self) {
        if self.keep {
            eprintln!(
                "container {} keeps running: reconnect with `franz up --bootstrap {}`, remove it with `docker rm -f {}`",
                self.name,
                self.spec.bootstrap(),
                self.name
            );
            return;
        }
        self.remove().await;
    }
}
