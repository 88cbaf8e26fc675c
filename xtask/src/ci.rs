//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.
//!
//! The container tests need a Docker engine. Where none can be had (no root to install and start one), they are
//! reported as not run and the last line says so instead of "all checks passed"; under CI (`CI=true`), where the
//! engine can always be started, not running them fails the run.

use crate::{cargo, sh};

pub fn run() -> anyhow::Result<()> {
    // What the tests need beyond the toolchain is installed while cargo checks and builds: the integration tests
    // check a live /metrics with promtool, drive the web desk in Chromium and take mail from Postfix and Dovecot, and
    // interop runs kcat, kafka-python and kafkajs. One after another, as apt takes one install at a time; their output goes to a log of its own.
    let installs = std::thread::spawn(install);
    sh(cargo().args(["fmt", "--all", "--", "--check"]))?;
    sh(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    sh(cargo().args(["test", "--workspace", "--no-run"]))?;
    installs.join().map_err(|_| anyhow::anyhow!("the installs ended abnormally"))??;
    // Four tests at a time on two cores: most of an integration test's time is waiting (for a broker, a mail server,
    // a fake Discord), and four halve the run (measured: 550 s with two, 280 s with four, on this 2-core machine).
    within(TESTS_DEADLINE, cargo().args(["test", "--workspace"]).env("RUST_TEST_THREADS", TEST_THREADS))?;
    // The benches' smoke runs: a debug build of a bench runs every phase on small sizes (see `SMOKE` in each), so a
    // bench that no longer compiles, hangs or fails is found here, not by the next person to measure.
    within(BENCH_SMOKE_DEADLINE, cargo().args(["test", "--benches"]))?;
    // The broker crate's example is its usage documentation: `cargo test` builds it but does not run it, so it runs
    // here, to the end (it fails by itself if it has not read its records back within 30 s).
    within(EXAMPLE_DEADLINE, cargo().args(["run", "-p", "franz-broker", "--example", "produce_and_read"]))?;
    crate::e2e::run(crate::e2e::Options::default())?;
    let containers = crate::containers::run()?;
    crate::interop::run()?;
    match containers {
        crate::containers::Outcome::Passed => eprintln!("ci: all checks passed"),
        crate::containers::Outcome::NotRun(reason) => {
            eprintln!("ci: every other check passed; the container tests were NOT run ({reason})")
        }
    }
    Ok(())
}

/// Where the background installs write their output.
const INSTALL_LOG: &str = "target/ci-install.log";

/// Runs the install scripts in turn, their output in [`INSTALL_LOG`]; an error names the script and the log.
fn install() -> anyhow::Result<()> {
    std::fs::create_dir_all("target")?;
    let log = std::fs::File::create(INSTALL_LOG)?;
    let scripts =
        ["scripts/install-promtool.sh", "scripts/install-chromium.sh", "interop/install.sh", "scripts/mail-servers.sh"];
    for script in scripts {
        eprintln!("$ bash {script} (in the background, output in {INSTALL_LOG})");
        // The mail servers' script installs Postfix and Dovecot only; each mail test starts its own set.
        let args: &[&str] = if script.starts_with("scripts/mail") { &["install"] } else { &[] };
        let status = std::process::Command::new("bash")
            .arg(script)
            .args(args)
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?)
            .status()?;
        if !status.success() {
            let tail = std::fs::read_to_string(INSTALL_LOG).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
            anyhow::bail!("bash {script} failed ({status}); the end of {INSTALL_LOG}:\n{}", tail.join("\n"));
        }
    }
    Ok(())
}

/// How many tests of one test binary run at once.
const TEST_THREADS: &str = "4";

/// How long the test run may take. It takes about 5 minutes on 2 cores (four tests at a time); a test that hangs
/// would otherwise hold CI for its whole 90 minutes. Each test waits on its own conditions with deadlines, and has a
/// deadline of its own (`tests/util.rs`); this is the backstop.
const TESTS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20 * 60);

/// How long the benches' smoke runs may take (about a minute with their build).
const BENCH_SMOKE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// How long the broker's example may take with its build: it runs in seconds, but `-p` resolves features for the
/// broker crate alone, so tokio and what depends on it are built again for it (rdkafka's C library is not).
const EXAMPLE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2 * 60);

/// Runs `command` as [`sh`] does, and ends it (with every process it started) once it runs past `deadline`.
fn within(deadline: std::time::Duration, command: &mut std::process::Command) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let line = format!("{command:?}");
    eprintln!("$ {line} (at most {} minutes)", deadline.as_secs() / 60);
    let mut child = command.process_group(0).spawn()?;
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "{line} failed ({status})");
            return Ok(());
        }
        if started.elapsed() > deadline {
            let _ = std::process::Command::new("kill").args(["-KILL", &format!("-{}", child.id())]).status();
            let _ = child.wait();
            anyhow::bail!(
                "{line} ran past {} minutes and was ended; the lines \"has been running for over 60 seconds\" above \
                 name the tests that hang",
                deadline.as_secs() / 60
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
