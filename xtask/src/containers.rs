//! `cargo xtask containers`: `franz up --broker redpanda|kafka` against a real Docker engine, with stand-in images.
//!
//! No image registry can be reached where CI runs, so the Redpanda and Kafka images themselves never run here.
//! This task builds stand-ins under the exact names and tags franz pins, from franz's own binary (a root file
//! system with franz, its shared libraries, a static busybox and `docker/standin.sh`, which runs `franz broker`
//! configured from what franz passes the real image and then prints that image's ready line), so that everything
//! franz does with Docker runs for real. It does not test the images, and it replaces no real image already here.
//! An engine is started with `docker/engine.sh` where this user may; where none can be had, the tests are
//! reported as not run, never as passed.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use crate::e2e::{self, Franz, signal_and_wait};
use crate::sh;

/// The tag of a stand-in under the Redpanda name that never prints its ready line, to interrupt a start-up.
const NEVER_READY_TAG: &str = "franz-standin-never-ready";
/// A tag no registry has, for the failed pull.
const MISSING_TAG: &str = "franz-standin-missing";
/// The label franz puts on its containers with the port they are published on (`LABEL_PORT` in franz).
const LABEL_PORT: &str = "dev.franz.port";

/// Whether the container tests ran.
#[derive(Debug)]
pub enum Outcome {
    Passed,
    /// No engine could be had here; the reason says why.
    NotRun(String),
}

type Check = fn(&Franz, &Images) -> anyhow::Result<()>;

/// Each check, named after the behaviour it proves.
const CHECKS: [(&str, Check); 11] = [
    ("e2e_passes_against_the_redpanda_container", |_, _| e2e_against("redpanda")),
    ("e2e_passes_against_the_kafka_container", |_, _| e2e_against("kafka")),
    (
        "a_container_left_by_sigkill_is_removed_by_the_next_start",
        a_container_left_by_sigkill_is_removed_by_the_next_start,
    ),
    ("a_container_left_with_keep_is_reused_by_the_next_start", a_container_left_with_keep_is_reused_by_the_next_start),
    ("a_kept_container_of_another_image_is_left_alone", a_kept_container_of_another_image_is_left_alone),
    ("a_container_whose_franz_runs_is_not_touched", a_container_whose_franz_runs_is_not_touched),
    ("sigterm_during_start_up_removes_the_container", |franz, images| {
        interrupting_the_start_removes_the_container(franz, images, "TERM")
    }),
    ("ctrl_c_during_start_up_removes_the_container", |franz, images| {
        interrupting_the_start_removes_the_container(franz, images, "INT")
    }),
    ("a_port_held_by_another_container_names_it", a_port_held_by_another_container_names_it),
    ("a_port_held_by_another_process_says_so", a_port_held_by_another_process_says_so),
    ("a_failed_pull_says_what_to_do_instead", a_failed_pull_says_what_to_do_instead),
];

/// Runs the checks; `NotRun` when no Docker engine can be had here. Under CI (`CI=true`) that is a failure: CI
/// runs as root, where `docker/engine.sh` can always install and start one, so not running would hide a breakage.
pub fn run() -> anyhow::Result<Outcome> {
    let began = Instant::now();
    let engine = Command::new("bash").arg("docker/engine.sh").stderr(Stdio::piped()).output()?;
    let stderr = String::from_utf8_lossy(&engine.stderr);
    eprint!("{stderr}");
    if !engine.status.success() {
        let reason = stderr.lines().last().unwrap_or("docker/engine.sh failed").to_owned();
        eprintln!("container tests: not run ({reason})");
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            bail!("container tests: not run ({reason}); CI must run them");
        }
        return Ok(Outcome::NotRun(reason));
    }
    let franz = Franz::new("containers")?;
    let images = Images::build(&franz)?;
    eprintln!("containers: engine and stand-in images ready after {:.1}s", began.elapsed().as_secs_f64());
    let mut failed = Vec::new();
    for (name, check) in CHECKS {
        let started = Instant::now();
        match check(&franz, &images) {
            Ok(()) => eprintln!("containers: {name} passed ({:.1}s)", started.elapsed().as_secs_f64()),
            Err(error) => {
                eprintln!("containers: {name} FAILED: {error:#}\n--- the last franz up's stderr ---\n{}", franz.log());
                failed.push(name);
            }
        }
    }
    eprintln!("containers: took {:.1}s", began.elapsed().as_secs_f64());
    eprintln!("containers: {} passed, {} failed", CHECKS.len() - failed.len(), failed.len());
    if !failed.is_empty() {
        bail!("container checks failed: {}", failed.join(", "));
    }
    fs::remove_dir_all(&franz.scratch).ok();
    Ok(Outcome::Passed)
}

/// The image references the checks use.
struct Images {
    /// Under the Redpanda name, never ready.
    never_ready: String,
}

impl Images {
    /// Builds the stand-ins from franz's binary: the pinned Redpanda and Kafka references (unless a real image is
    /// already there, which is then used as it is) and the never-ready tag.
    fn build(franz: &Franz) -> anyhow::Result<Images> {
        let redpanda = pinned("REDPANDA_IMAGE")?;
        let kafka = pinned("KAFKA_IMAGE")?;
        let never_ready = format!("{}:{NEVER_READY_TAG}", redpanda.rsplit_once(':').context("a tag")?.0);
        let rootfs = franz.scratch.join("rootfs.tar");
        root_filesystem(franz.binary(), &franz.scratch.join("rootfs"), &rootfs)?;
        for (kind, reference, never) in
            [("redpanda", &redpanda, false), ("kafka", &kafka, false), ("redpanda", &never_ready, true)]
        {
            let label =
                docker(&["image", "inspect", "--format", "{{index .Config.Labels \"dev.franz.standin\"}}", reference]);
            if label.as_ref().is_ok_and(|label| label != "true") {
                eprintln!("containers: {reference} is a real image; it is used as it is, not replaced by a stand-in");
                continue;
            }
            let mut import = Command::new("docker");
            import
                .arg("import")
                .args(["--change", &format!(r#"ENTRYPOINT ["/bin/sh", "/standin.sh", "{kind}"]"#)])
                .args(["--change", "LABEL dev.franz.standin=true"]);
            if never {
                import.args(["--change", "ENV STANDIN_NEVER_READY=1"]);
            }
            sh(import.arg(&rootfs).arg(reference).stdout(Stdio::null()))?;
        }
        Ok(Images { never_ready })
    }
}

/// `image:tag` of one of franz's pinned images (`REDPANDA_IMAGE`, `KAFKA_IMAGE`), read from its one definition.
fn pinned(constant: &str) -> anyhow::Result<String> {
    let path = "src/broker/container.rs";
    let source = fs::read_to_string(path)?;
    let prefix = format!("pub const {constant}: (&str, &str) = (");
    let line = source
        .lines()
        .find(|line| line.starts_with(&prefix))
        .with_context(|| format!("{constant} is not in {path}"))?;
    let quoted: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
    let [image, tag] = quoted[..] else { bail!("cannot read {constant} from {path}: {line}") };
    Ok(format!("{image}:{tag}"))
}

/// The stand-in's root file system as a tar file: franz (without debug information, a sixth of its size), the
/// shared libraries it and busybox load, busybox with its applets, the entrypoint script and a /tmp.
fn root_filesystem(binary: &Path, root: &Path, tar: &Path) -> anyhow::Result<()> {
    if root.exists() {
        fs::remove_dir_all(root)?;
    }
    fs::create_dir_all(root.join("bin"))?;
    fs::create_dir_all(root.join("tmp"))?;
    sh(Command::new("chmod").arg("1777").arg(root.join("tmp")))?;
    let stripped = Command::new("strip").arg("-o").arg(root.join("franz")).arg(binary).status();
    if !stripped.is_ok_and(|status| status.success()) {
        fs::copy(binary, root.join("franz"))?;
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).context("busybox is missing (docker/engine.sh installs it)")?;
    let applets = Command::new("/bin/busybox").arg("--list").output()?;
    for applet in String::from_utf8(applets.stdout)?.lines().filter(|applet| *applet != "busybox") {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
    }
    fs::copy("docker/standin.sh", root.join("standin.sh"))?;
    for program in [binary, Path::new("/bin/busybox")] {
        // ldd fails on a static program, which needs nothing.
        let ldd = Command::new("ldd").arg(program).output()?;
        for library in String::from_utf8_lossy(&ldd.stdout).split_whitespace().filter(|word| word.starts_with('/')) {
            let inside = root.join(library.trim_start_matches('/'));
            fs::create_dir_all(inside.parent().context("a library is in a directory")?)?;
            fs::copy(library, &inside).with_context(|| format!("cannot copy {library}"))?;
        }
    }
    sh(Command::new("tar").arg("-C").arg(root).arg("-cf").arg(tar).arg("."))
}

fn e2e_against(kind: &str) -> anyhow::Result<()> {
    e2e::run(e2e::Options { bless: false, broker: Some(kind.to_owned()) })
}

/// The regression of issue 17: after `kill -9` of franz the container kept the port, and the next start failed
/// with "127.0.0.1:9092 is not free" without saying that franz's own container held it.
fn a_container_left_by_sigkill_is_removed_by_the_next_start(franz: &Franz, _: &Images) -> anyhow::Result<()> {
    let (port, _cleanup) = Cleanup::port()?;
    let listen = format!("127.0.0.1:{port}");
    let args = ["up", "--broker", "kafka", "--listen", &listen];
    let mut first = franz.start_up(&args, &[])?;
    let left = containers_on(port)?;
    ensure!(left.len() == 1, "one container should run for franz, found {left:?}");
    let status = signal_and_wait(&mut first.child, "KILL")?;
    ensure!(!status.success(), "franz killed with SIGKILL exited with {status}");
    ensure!(running(&left[0])?, "the container should outlive a franz killed with SIGKILL");

    let mut second = franz.start_up(&args, &[])?;
    let name = format!("franz-kafka-127.0.0.1-{port}");
    let log = franz.log();
    ensure!(log.contains(&format!("removed stale container {name} (apache/kafka-native:")), "{log}");
    let now = containers_on(port)?;
    ensure!(now.len() == 1 && now[0] != left[0], "a new container should replace the stale one: {left:?} then {now:?}");
    second.stop()?;
    ensure!(containers_on(port)?.is_empty(), "franz up should remove its container when it stops");
    Ok(())
}

/// `--keep` leaves the container running; the next start on the same address reuses it (the data is still
/// there) and leaves it running too. The port is published on the loopback address only.
fn a_container_left_with_keep_is_reused_by_the_next_start(franz: &Franz, _: &Images) -> anyhow::Result<()> {
    let (port, _cleanup) = Cleanup::port()?;
    let listen = format!("127.0.0.1:{port}");
    let name = format!("franz-redpanda-127.0.0.1-{port}");
    let mut first = franz.start_up(&["up", "--broker", "redpanda", "--keep", "--listen", &listen], &[])?;
    let published = docker(&["port", &name])?;
    ensure!(published == format!("9092/tcp -> 127.0.0.1:{port}"), "published only on loopback, got {published:?}");
    let marker = franz.scratch.join("marker.txt");
    fs::write(&marker, "kept\n")?;
    franz.output(&["produce", "kept-marker", "--bootstrap", &first.bootstrap], Some(fs::File::open(&marker)?))?;
    first.stop()?;
    let log = franz.log();
    ensure!(log.contains(&format!("container {name} keeps running")), "{log}");
    ensure!(running(&name)?, "a container started with --keep should outlive franz");

    let mut second = franz.start_up(&["up", "--broker", "redpanda", "--listen", &listen], &[])?;
    let log = franz.log();
    ensure!(log.contains(&format!("reusing container {name}")), "{log}");
    let tail = ["tail", "kept-marker", "--from-beginning", "--limit", "1", "--timeout", "10", "--bootstrap"];
    let record = franz.output(&[&tail[..], &[second.bootstrap.as_str()]].concat(), None)?;
    ensure!(record.contains(r#""value":"kept""#), "the reused broker should still have the record: {record}");
    second.stop()?;
    ensure!(running(&name)?, "a reused kept container should still run after franz stops");
    Ok(())
}

/// A container kept with `--keep` belongs to the user: another broker on its address does not remove it.
fn a_kept_container_of_another_image_is_left_alone(franz: &Franz, _: &Images) -> anyhow::Result<()> {
    let (port, _cleanup) = Cleanup::port()?;
    let listen = format!("127.0.0.1:{port}");
    let kept = format!("franz-redpanda-127.0.0.1-{port}");
    franz.start_up(&["up", "--broker", "redpanda", "--keep", "--listen", &listen], &[])?.stop()?;
    let stderr = franz.failure(&["up", "--broker", "kafka", "--listen", &listen])?;
    let expected = format!("is held by container {kept} (docker.redpanda.com/redpandadata/redpanda:");
    ensure!(stderr.contains(&expected) && stderr.contains(&format!("`docker rm -f {kept}`")), "{stderr}");
    ensure!(running(&kept)?, "the kept container should still run");
    ensure!(containers_on(port)?.len() == 1, "franz should have created no container");
    Ok(())
}

/// Two franz on one address: the second names the first and leaves its container alone.
fn a_container_whose_franz_runs_is_not_touched(franz: &Franz, _: &Images) -> anyhow::Result<()> {
    let (port, _cleanup) = Cleanup::port()?;
    let listen = format!("127.0.0.1:{port}");
    let mut first = franz.start_up(&["up", "--broker", "kafka", "--listen", &listen], &[])?;
    let stderr = franz.failure(&["up", "--broker", "kafka", "--listen", &listen])?;
    let pid = first.child.id();
    ensure!(stderr.contains(&format!("of a franz that is running (pid {pid})")), "{stderr}");
    ensure!(containers_on(port)?.len() == 1, "the first franz's container should be untouched");
    first.stop()?;
    ensure!(containers_on(port)?.is_empty(), "franz up should remove its container when it stops");
    Ok(())
}

/// SIGTERM or SIGINT (Ctrl-C) while the container starts: franz stops at once and removes what it created.
fn interrupting_the_start_removes_the_container(franz: &Franz, images: &Images, signal: &str) -> anyhow::Result<()> {
    let (port, _cleanup) = Cleanup::port()?;
    let listen = format!("127.0.0.1:{port}");
    let tag = images.never_ready.rsplit_once(':').context("a tag")?.1;
    let mut child = franz.spawn_up(&["up", "--broker", "redpanda", "--image-tag", tag, "--listen", &listen], &[])?;
    let name = format!("franz-redpanda-127.0.0.1-{port}");
    wait_until("the never-ready container to run its entrypoint", Duration::from_secs(30), || {
        if let Some(status) = child.try_wait()? {
            bail!("franz up exited ({status}) before it was interrupted");
        }
        Ok(docker(&["logs", &name]).is_ok_and(|logs| logs.contains("never ready")))
    })?;
    let status = signal_and_wait(&mut child, signal)?;
    let log = franz.log();
    ensure!(!status.success(), "an interrupted start-up is not a success; franz exited with {status}\n{log}");
    ensure!(log.contains("interrupted while the redpanda container was starting"), "{log}");
    ensure!(containers_on(port)?.is_empty(), "the container should be removed when the start-up is interrupted");
    Ok(())
}

fn a_port_held_by_another_container_names_it(franz: &Franz, images: &Images) -> anyhow::Result<()> {
    let (port, _cleanup) = Cleanup::port()?;
    let holder = Cleanup::holder(port);
    let publish = format!("127.0.0.1:{port}:9092");
    let entrypoint = ["--entrypoint", "/bin/sh", &images.never_ready, "-c", "exec tail -f /dev/null"];
    docker(&[&["run", "-d", "--name", &holder, "-p", &publish][..], &entrypoint[..]].concat())?;
    let stderr = franz.failure(&["up", "--broker", "redpanda", "--listen", &format!("127.0.0.1:{port}")])?;
    ensure!(stderr.contains(&format!("127.0.0.1:{port} is held by container {holder}")), "{stderr}");
    ensure!(containers_on(port)?.is_empty(), "franz should have created no container");
    Ok(())
}

fn a_port_held_by_another_process_says_so(franz: &Franz, _: &Images) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let stderr = franz.failure(&["up", "--broker", "kafka", "--listen", &format!("127.0.0.1:{port}")])?;
    ensure!(stderr.contains(&format!("127.0.0.1:{port} is held by another process")), "{stderr}");
    ensure!(containers_on(port)?.is_empty(), "franz should have created no container");
    Ok(())
}

/// Here no registry can be reached; where one can, the tag does not exist. Either way franz says what failed and
/// what to do instead, rather than Docker's raw text.
fn a_failed_pull_says_what_to_do_instead(franz: &Franz, _: &Images) -> anyhow::Result<()> {
    let (port, _cleanup) = Cleanup::port()?;
    let listen = format!("127.0.0.1:{port}");
    let stderr = franz.failure(&["up", "--broker", "kafka", "--image-tag", MISSING_TAG, "--listen", &listen])?;
    let reference = format!("apache/kafka-native:{MISSING_TAG}");
    for expected in [format!("cannot pull {reference}: "), "--broker embedded".into(), "docker load".into()] {
        ensure!(stderr.contains(&expected), "expected {expected:?} in:\n{stderr}");
    }
    ensure!(containers_on(port)?.is_empty(), "franz should have created no container");
    Ok(())
}

/// Removes, when dropped, every container on its port: franz's (by label) and a holder made by a check.
struct Cleanup(u16);

impl Cleanup {
    /// A port that was free just now, and its cleanup.
    fn port() -> anyhow::Result<(u16, Cleanup)> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Ok((port, Cleanup(port)))
    }

    fn holder(port: u16) -> String {
        format!("franz-xtask-holder-{port}")
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut ids = containers_on(self.0).unwrap_or_default();
        ids.push(Cleanup::holder(self.0));
        Command::new("docker").args(["rm", "-f"]).args(&ids).output().ok();
    }
}

/// `docker ARGS`, its standard output trimmed; fails with its standard error.
fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("docker").args(args).output().context("cannot run docker")?;
    ensure!(
        output.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// The ids of the containers, running or not, that franz labelled with `port`.
fn containers_on(port: u16) -> anyhow::Result<Vec<String>> {
    let ids = docker(&["ps", "-aq", "--filter", &format!("label={LABEL_PORT}={port}")])?;
    Ok(ids.lines().map(str::to_owned).collect())
}

fn running(container: &str) -> anyhow::Result<bool> {
    Ok(docker(&["inspect", "--format", "{{.State.Running}}", container])? == "true")
}

/// Polls `condition` every 50 ms until it holds, failing after `timeout`.
fn wait_until(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !condition()? {
        ensure!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
