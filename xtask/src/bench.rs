//! `cargo xtask bench`: the benchmarks, built in release mode. Each prints its own report.

use crate::{cargo, sh};

pub fn pipeline() -> anyhow::Result<()> {
    sh(cargo().args(["bench", "--bench", "pipeline"]))
}
