//! `cargo xtask props`: the property tests (every test named `props_*`) with many more cases than a normal run.

use crate::{cargo, sh};

pub fn run(cases: u32) -> anyhow::Result<()> {
    sh(cargo().env("PROPTEST_CASES", cases.to_string()).args(["test", "--release", "--lib", "props_"]))
}
