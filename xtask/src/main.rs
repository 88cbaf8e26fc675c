//! `cargo xtask`: the project's own tasks (ci, e2e, props, bench, crash, interop), in Rust so they run wherever cargo does.
//!
//! This file only parses the task name and its flags, moves to the project root and dispatches; each task is a
//! module of its own. Nothing here is part of the franz binary.

mod bench;
mod ci;
mod containers;
mod crash;
mod e2e;
mod interop;
mod layers;
mod props;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  ci                  format check, clippy (warnings denied), every test, e2e, interop, containers; what CI runs
  e2e [--bless] [--broker redpanda|kafka]
                      run the built franz binary as a user would and check its outputs against fixtures/e2e;
                      --bless rewrites the expected files from this run (review the diff before committing);
                      --broker runs the same checks against a container (needs a Docker engine)
  props [CASES]       the property tests with many cases (default 20000)
  bench pipeline      aufbereitung throughput and latency next to a pass-through baseline (release build)
  bench alerts        absturz in an alert storm against a rate-limited fake webhook (release build)
  bench broker        the embedded broker next to librdkafka's MockCluster: produce, consume, RSS, start-up
                      with 1 GiB retained (release build)
  bench desk          the ticket store and API with 1,000,000 tickets: rebuild rate, list/search/command latency
  bench mail          tickets by email against Postfix and Dovecot: 5,000 mails to tickets, reply latency (root)
  bench deadlines     akte's service-level scheduler with 1,000,000 tickets: 10,000 deadlines in one minute, RSS
  bench similar       the similar tickets of the ticket page on a store of 50,000 tickets: p50/p99 (release build)
  bench labels        the ticket page's suggested labels on 13,071 labelled tickets, a fifth held out:
                      precision and coverage at each agreement of the 5 nearest (release build)
  crash [ROUNDS]      kill -9 the broker while it takes acks=all writes, ROUNDS times (default 20), and check
                      that no acknowledged record is lost (the test suite runs 5)
  interop             kcat, kafka-python and kafkajs against the broker, across a restart (installs them
                      with interop/install.sh)
  containers          --broker redpanda|kafka against a real Docker engine with stand-in images built from
                      franz's own binary: e2e for both, stale and kept containers, signals during start-up,
                      taken ports, a failed pull (starts an engine with docker/engine.sh where it may)";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::env::set_current_dir(project_root()).context("cannot move to the project root")?;
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["ci"] => ci::run(),
        ["e2e", flags @ ..] => e2e::run(e2e::Options::parse(flags)?),
        ["props"] => props::run(20_000),
        ["props", cases] => props::run(cases.parse().context("CASES must be a whole number")?),
        ["bench", name @ ("pipeline" | "alerts" | "broker" | "desk" | "mail" | "deadlines" | "similar" | "labels")] => {
            bench::run(name)
        }
        ["crash"] => crash::run(20),
        ["crash", rounds] => crash::run(rounds.parse().context("ROUNDS must be a whole number")?),
        ["interop"] => interop::run(),
        // Asked for by name, tests that could not run are a failure, whatever CI says.
        ["containers"] => match containers::run()? {
            containers::Outcome::Passed => Ok(()),
            containers::Outcome::NotRun(reason) => bail!("container tests: not run ({reason})"),
        },
        ["help" | "--help" | "-h"] | [] => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown task {:?}\n\n{USAGE}", other.join(" ")),
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the project root").to_path_buf()
}

/// Runs a command to completion, failing with its command line if it fails.
pub fn sh(command: &mut Command) -> anyhow::Result<()> {
    let line = format!("{command:?}");
    eprintln!("$ {line}");
    let status = command.status().with_context(|| format!("cannot run {line}"))?;
    if !status.success() {
        bail!("{line} failed ({status})");
    }
    Ok(())
}

/// The franz debug binary, built first, wherever `CARGO_TARGET_DIR` puts it. It is built as the tests build it
/// (their dev-dependencies unify features, so a plain `cargo build --bin franz` would compile much of the tree a
/// second time); after the test step of `ci` this costs nothing.
pub fn franz_binary() -> anyhow::Result<PathBuf> {
    sh(cargo().args(["test", "--workspace", "--no-run"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    std::fs::canonicalize(target.join("debug/franz")).context("the franz binary was not built")
}

/// `cargo` as the one running this task.
pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}
