//! The flow-log counting table in the calling thread's network namespace (call these from
//! `netns::run_in`): installed once, then listed with its counters every interval.

use crate::plan::flowlogs::TABLE;
use anyhow::{Context, Result, bail};
use std::process::{Command, Stdio};

/// Installs the counting table unless it is there already: a supervisor that takes over
/// keeps the counters its predecessor's table holds.
pub fn ensure_here(ruleset: &str) -> Result<()> {
    let present = Command::new("nft")
        .args(["list", "table", "inet", TABLE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("run nft list table")?
        .success();
    if present {
        return Ok(());
    }
    super::nft::feed_nft(&["-f", "-"], ruleset.as_bytes(), "the flow-log table")
}

/// The counting table with every set's elements and counters, as `nft -j` lists it.
pub fn list_here() -> Result<String> {
    let out = Command::new("nft")
        .args(["-j", "list", "table", "inet", TABLE])
        .output()
        .context("run nft list table")?;
    if !out.status.success() {
        bail!(
            "nft list table inet {TABLE}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
