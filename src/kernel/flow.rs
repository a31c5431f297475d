//! The flow-log counting table of a namespace (`plan::flowlogs`): loaded with the
//! namespace or by an edit, and listed with its counters every interval by the collector.
//! The `_here` functions work in the calling thread's network namespace (call them from
//! `netns::run_in`).

use super::netns;
use crate::plan::flowlogs::{Counting, TABLE};
use crate::reconcile::FlowLogChange;
use anyhow::{Context, Result, bail};
use std::process::{Command, Stdio};

/// Loads the counting table, in place of one that is there, in one transaction.
pub fn install_here(c: Counting) -> Result<()> {
    // `table` of an existing table adds nothing, so the `delete` can't fail.
    let script = format!(
        "table inet {TABLE}\ndelete table inet {TABLE}\n{}",
        c.ruleset()
    );
    super::nft::feed_nft(&["-f", "-"], script.as_bytes(), "the flow-log table")
}

/// Deletes the counting table, if any.
pub fn delete_here() -> Result<()> {
    let script = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
    super::nft::feed_nft(&["-f", "-"], script.as_bytes(), "the flow-log table")
}

/// Whether the counting table is there.
pub fn present_here() -> Result<bool> {
    Ok(Command::new("nft")
        .args(["list", "table", "inet", TABLE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("run nft list table")?
        .success())
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

/// Makes namespace `ns` count (or stop counting) as an edit says.
pub fn change(ns: &str, change: &FlowLogChange) -> Result<()> {
    let handle = netns::open(ns)?;
    netns::run_in(&handle, || match change {
        FlowLogChange::Install(c) => install_here(*c),
        FlowLogChange::Delete => delete_here(),
    })
    .with_context(|| format!("change the flow-log table of {ns}"))
}
