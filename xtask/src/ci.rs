//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.

use crate::{cargo, sh};

pub fn run() -> anyhow::Result<()> {
    sh(cargo().args(["fmt", "--all", "--", "--check"]))?;
    sh(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    sh(cargo().args(["test", "--workspace"]))?;
    crate::e2e::run(crate::e2e::Options::default())?;
    crate::interop::run()?;
    eprintln!("ci: all checks passed");
    Ok(())
}
