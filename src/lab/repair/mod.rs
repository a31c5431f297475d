//! `vpclab repair`: a running lab becomes again what its state file says, whatever broke
//! it: a namespace deleted by hand, a flushed nftables table, a link, address or route
//! removed, a killed service, database server or supervisor, an `apply` killed half-way.
//!
//! The kernel is repaired as an edit is applied, from the other side: `kernel::observe`
//! reads what the kernel holds into the plan's own types, and the difference between
//! that and the desired plan is an ordinary `reconcile::delta`, written by
//! `kernel::edit`. A lab that is whole gives an empty delta, so repairing it writes
//! nothing. Processes are then compared with what the lab runs: every host's services,
//! the database servers (a dead primary of a Multi-AZ database is the health monitor's
//! to fail over; repair waits for it), and the supervisor's pair.
//!
//! The order matters: namespaces an unfinished apply left behind go first, then the
//! programs stranded in a namespace whose name was deleted (they keep the old namespace,
//! and with it both ends of its veth pairs, alive), then the kernel, then the programs.

use super::state::{self, Phase};
use super::{control, running, status, supervisor};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::time::{Duration, Instant};

/// One thing found wrong, and what was done about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fix {
    pub found: String,
    pub fixed: String,
}

/// What a repair did.
#[derive(Debug, Serialize)]
pub struct Repaired {
    pub lab: String,
    pub fixes: Vec<Fix>,
    /// Kernel objects created, deleted or rewritten: 0 when the kernel was whole.
    pub kernel_writes: usize,
    /// The lab as `status` sees it afterwards.
    pub healthy: bool,
    pub problems: Vec<String>,
    pub ms: u64,
}

/// How long a database server may take to come back (crash recovery included), and a
/// failover by the health monitor to happen.
pub(super) const DATABASE_PATIENCE: Duration = Duration::from_secs(30);

/// Repairs the running lab `name` (the only one, or `handson`, when `None`).
pub fn repair(name: Option<&str>) -> Result<Repaired> {
    let started = Instant::now();
    let lab = running(name)?.lab.name;
    let _one_at_a_time = crate::kernel::lock::exclusive(&state::changes_lock(&lab))?;
    // Read once the lock is held: what an earlier repair did is part of it.
    let r = running(Some(&lab))?;
    if r.state.phase == Phase::Creating {
        bail!(
            "`up` of lab `{lab}` did not finish, so there is no complete lab to repair\n  hint: `sudo vpclab down {lab}` removes what it made; then `up` again"
        );
    }
    let mut fixes = Vec::new();
    remove_leftover_namespaces(&r, &mut fixes)?;
    stop_stranded(&r, &mut fixes)?;
    stop_unwanted(&r, &mut fixes)?;

    let check = check_kernel(&r)?;
    let kernel_writes = check.kernel_writes();
    if kernel_writes > 0 {
        fix_kernel(&check)?;
        fixes.extend(check.fixes());
    }

    // A lab brought up without services (`up --no-services`) runs no programs at all.
    let services_on = r.state.processes.iter().any(|p| p.node == supervisor::NODE);
    if services_on {
        repair_supervisor(&r, &check.observed.missing_namespaces, &mut fixes)?;
        repair_host_files(&r, &mut fixes)?;
        repair_mount_template(&r, &mut fixes)?;
        repair_services(&r, &mut fixes)?;
        if !r.state.runtime.databases_off {
            repair_databases(&lab, &mut fixes)?;
        }
    }
    if r.state.applying {
        super::apply::finish(&r.lab.name, &r.lab, &r.plan)?;
        fixes.push(Fix {
            found: format!(
                "an apply of {} did not finish (its lab file was recorded, not all of it made)",
                r.state.source
            ),
            fixed: "made the rest and cleared its mark".into(),
        });
    }
    if services_on && !fixes.is_empty() {
        control::request(&lab, &control::Request::Reload, Duration::from_secs(5))
            .context("reload the supervisor's DNS records and instance metadata")?;
    }

    let after = status::status(&running(Some(&lab))?);
    Ok(Repaired {
        lab,
        fixes,
        kernel_writes,
        healthy: after.healthy,
        problems: after.problems,
        ms: started.elapsed().as_millis() as u64,
    })
}

/// What `repair` prints: one line per fix, then the outcome.
pub fn render(r: &Repaired) -> String {
    let mut o = String::new();
    for f in &r.fixes {
        o.push_str(&format!("{}: {}\n", f.found, f.fixed));
    }
    if r.fixes.is_empty() && r.healthy {
        o.push_str("no changes\n");
    } else if !r.fixes.is_empty() {
        o.push_str(&format!(
            "\nrepaired {} problem{} of lab {} in {} ms ({} kernel write{})\n",
            r.fixes.len(),
            plural(r.fixes.len()),
            r.lab,
            r.ms,
            r.kernel_writes,
            plural(r.kernel_writes)
        ));
    }
    for p in &r.problems {
        o.push_str(&format!("still wrong: {p}\n"));
    }
    o
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

mod kernel_side;
mod programs;
#[cfg(test)]
mod tests;

pub use kernel_side::kernel_problems;
use kernel_side::*;
use programs::*;
