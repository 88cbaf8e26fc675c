//! `cargo xtask bench`: the benchmarks, built in release mode. Each prints its own report.

use crate::{cargo, sh};

pub fn run(name: &str) -> anyhow::Result<()> {
    sh(cargo().args(["bench", "--bench", name]))
}
