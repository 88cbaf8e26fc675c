//! `cargo xtask crash [ROUNDS]`: the crash test with more kills than the test suite runs.
//!
//! The test itself is `tests/crash.rs`; this task runs only it, with `FRANZ_CRASH_ROUNDS`, and shows its report.

use crate::{cargo, sh};

pub fn run(rounds: u32) -> anyhow::Result<()> {
    sh(cargo()
        .args(["test", "--test", "integration", "crash::", "--", "--nocapture"])
        .env("FRANZ_CRASH_ROUNDS", rounds.to_string()))
}
