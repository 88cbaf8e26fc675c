//! `cargo xtask interop`: clients franz did not write, against franz's broker, across a restart.
//!
//! kcat (Debian's, on an older librdkafka), kafka-python (pure Python) and kafkajs (pure JavaScript) are installed
//! by `interop/install.sh`. For each, a fresh `franz broker` runs the client's check in phase `first` (metadata,
//! create a topic, produce, consume in a group, commit), is stopped and started again on the same data, and the
//! check runs in phase `second` (produce more, resume the group from its committed offsets).

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::sh;

/// A client's check: its name and the command that runs `check <phase> <bootstrap> <topic> <group>`.
fn clients() -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("kcat", vec!["bash".into(), "interop/kcat/check.sh".into()]),
        ("kafka-python", vec!["interop/.venv/bin/python".into(), "interop/python/check.py".into()]),
        ("kafkajs", vec!["node".into(), "interop/js/check.js".into()]),
    ]
}

pub fn run() -> anyhow::Result<()> {
    sh(Command::new("bash").arg("interop/install.sh"))?;
    let binary = crate::franz_binary()?;
    let mut failed = Vec::new();
    for (name, command) in clients() {
        let began = Instant::now();
        match check(&binary, name, &command) {
            Ok(()) => eprintln!("interop: {name} passed ({:.1}s)", began.elapsed().as_secs_f64()),
            Err(error) => {
                eprintln!("interop: {name} FAILED: {error:#}");
                failed.push(name);
            }
        }
    }
    if !failed.is_empty() {
        bail!("interop failed for {}", failed.join(", "));
    }
    eprintln!("interop: all clients passed");
    Ok(())
}

fn check(binary: &Path, name: &str, command: &[String]) -> anyhow::Result<()> {
    let scratch = std::env::temp_dir().join(format!("franz-interop-{name}-{}", std::process::id()));
    fs::create_dir_all(&scratch)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let bootstrap = format!("127.0.0.1:{port}");
    let (topic, group) = (format!("interop-{name}"), format!("interop-{name}-group"));
    let result = (|| {
        for phase in ["first", "second"] {
            let mut broker = Broker::start(binary, &scratch, port)?;
            let ran = Command::new(&command[0])
                .args(&command[1..])
                .args([phase, bootstrap.as_str(), topic.as_str(), group.as_str()])
                .status()
                .with_context(|| format!("cannot run {}", command.join(" ")))?;
            broker.stop()?;
            if !ran.success() {
                bail!("phase {phase} failed ({ran})");
            }
        }
        Ok(())
    })();
    if result.is_err() {
        eprintln!(
            "--- franz broker stderr ---\n{}",
            fs::read_to_string(scratch.join("broker.log")).unwrap_or_default()
        );
    } else {
        fs::remove_dir_all(&scratch).ok();
    }
    result
}

/// A `franz broker` process on the scratch directory's data.
struct Broker {
    child: Child,
}

impl Broker {
    fn start(binary: &Path, scratch: &Path, port: u16) -> anyhow::Result<Broker> {
        let data: PathBuf = scratch.join("data");
        fs::write(scratch.join("franz.toml"), "")?;
        let mut child = Command::new(binary)
            .arg("--config")
            .arg(scratch.join("franz.toml"))
            .args(["broker", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(fs::File::options().create(true).append(true).open(scratch.join("broker.log"))?)
            .spawn()
            .context("cannot start franz broker")?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut ready = String::new();
        stdout.read_line(&mut ready)?;
        if !ready.starts_with("ready ") {
            bail!("franz broker did not start");
        }
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Ok(Broker { child })
    }

    /// Stops the broker as a user would (SIGTERM) and waits for it.
    fn stop(&mut self) -> anyhow::Result<()> {
        sh(Command::new("kill").args(["-TERM", &self.child.id().to_string()]))?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("franz broker exited with {status}");
        }
        Ok(())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
