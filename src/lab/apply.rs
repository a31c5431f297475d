//! `vpclab apply`: a running lab becomes what its edited file says, by making only the
//! difference. The edited file goes through the same validation as `up`, `reconcile` says
//! what changes (for people) and what that takes in the kernel (the delta), and this
//! module carries it out in an order that never needs something not yet made: processes
//! of what goes away stop, the kernel changes (`kernel::edit`), new services start, the
//! supervisor reloads DNS and metadata.
//!
//! The new file is recorded as the lab's desired state *before* the kernel changes, with a
//! mark that an apply is under way. An apply killed half-way leaves that mark; the next
//! `apply` or `repair` sees it and converges the kernel to the recorded file (`repair`),
//! and `down` removes everything as always (namespaces are found by their lab's prefix,
//! processes from the state file, where each is recorded as soon as it exists).

use super::state::{self, State};
use super::up::checkpoint;
use super::{Running, apply_runtime, control, hosts, running};
use crate::kernel::{self, netns, process};
use crate::plan::{self, Plan};
use crate::reconcile::{self, Change, Kind, Op, PlanDelta, Refusal};
use crate::services;
use crate::topology::{self, Allocations, Lab, Loaded};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::time::{Duration, Instant};

/// What an apply did (or, with `dry_run`, would do).
#[derive(Debug, Serialize)]
pub struct Applied {
    pub lab: String,
    pub changes: Vec<Change>,
    /// How many changes were made: 0 for a dry run or when nothing changed.
    pub applied: usize,
    /// Kernel objects created, deleted or rewritten.
    pub kernel_writes: usize,
    pub ms: u64,
    #[serde(skip)]
    pub dry_run: bool,
}

/// Why an edit can't be applied: AWS would refuse it in place.
#[derive(Debug)]
pub struct Refused(pub Vec<Refusal>);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} change{} can't be made to a running lab (nothing was changed):",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        )?;
        for r in &self.0 {
            writeln!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Refused {}

/// Applies `loaded` (an edited lab file, already validated) to the running lab of the same
/// name.
pub fn apply(loaded: &Loaded, dry_run: bool) -> Result<Applied> {
    let started = Instant::now();
    let name = loaded.lab.name.clone();
    if State::load(&name)?.is_none() {
        bail!(
            "lab `{name}` is not up, so there is nothing to change\n  hint: `sudo vpclab up {}` brings it up from this file",
            loaded.source.label()
        );
    }
    // A dry run changes nothing, so it needs no turn (nor root, which the lock file needs).
    let _one_at_a_time = match dry_run {
        true => None,
        false => Some(crate::kernel::lock::exclusive(&state::changes_lock(&name))?),
    };
    let now = running(Some(&name))?;
    if now.state.applying && !dry_run {
        bail!(
            "an earlier apply to lab `{name}` did not finish\n  hint: `sudo vpclab repair {name}` finishes it; then run this apply again"
        );
    }
    // Validated again with the addresses the running objects hold, so they keep them.
    let (file_lab, diags) = topology::check_keeping(
        &loaded.text,
        &loaded.source,
        Some(&name),
        &now.state.allocations,
    );
    let file_lab = file_lab.with_context(|| {
        format!(
            "{} does not fit the running lab's addresses:\n{}",
            loaded.source.label(),
            diags.render(&loaded.source.label())
        )
    })?;
    let diff = reconcile::changes(&now.file_lab, &file_lab);
    if !diff.refusals.is_empty() {
        return Err(Refused(diff.refusals).into());
    }
    // A database pair is built by `up` (template, replication, accounts); making or
    // removing one in a running lab is not something vpclab does yet.
    if let Some(c) = diff
        .changes
        .iter()
        .find(|c| c.kind == Kind::Database && c.op != Op::Change)
    {
        bail!(
            "{c}: vpclab creates and deletes databases only with the whole lab; nothing was changed\n  hint: `sudo vpclab down {name}` and `sudo vpclab up` with the edited file"
        );
    }
    let new_lab = apply_runtime(file_lab.clone(), &now.state.runtime);
    let new_plan = plan::compile(&new_lab);
    let delta = reconcile::delta(&now.plan, &new_plan);
    let kernel_writes = delta.kernel_writes(&new_plan);
    let mut out = Applied {
        lab: name.clone(),
        applied: 0,
        kernel_writes,
        ms: 0,
        dry_run,
        changes: diff.changes,
    };
    if dry_run || (out.changes.is_empty() && delta.is_empty() && loaded.text == now.state.yaml) {
        out.ms = started.elapsed().as_millis() as u64;
        return Ok(out);
    }

    // The desired state first, marked as under way, with every namespace the new plan has:
    // a crash from here on leaves a lab that `repair` completes and `down` removes.
    State::modify(&name, |st| {
        st.yaml = loaded.text.clone();
        st.source = loaded.source.label();
        st.applying = true;
        st.allocations = Allocations::of(&file_lab);
        for ns in &new_plan.namespaces {
            if !st.namespaces.contains(&ns.name) {
                st.namespaces.push(ns.name.clone());
            }
        }
        Ok(())
    })?;
    checkpoint("apply:recorded")?;
    carry_out(&now, &new_lab, &new_plan, &delta).with_context(|| {
        format!(
            "apply to lab `{name}` stopped half-way\n  hint: `sudo vpclab repair {name}` completes it from the recorded file"
        )
    })?;
    finish(&name, &new_lab, &new_plan)?;

    out.applied = out.changes.len();
    out.ms = started.elapsed().as_millis() as u64;
    Ok(out)
}

/// Makes the running lab `now` into `new_plan`, given the delta between them.
fn carry_out(now: &Running, new_lab: &Lab, new_plan: &Plan, delta: &PlanDelta) -> Result<()> {
    let name = &now.lab.name;
    let dir = state::dir(name);

    // Programs of what goes away stop before their namespace does, by pid.
    let mut failures = Vec::new();
    let leaving: Vec<u64> = delta
        .remove_namespaces
        .iter()
        .filter_map(|ns| netns::inode(ns))
        .collect();
    process::stop_all(&netns::pids_in(&leaving), &mut failures);
    // A program whose services changed stops, and starts again below if it still has one
    // to serve (nginx for http when https goes away): its configuration changed.
    let stopping: Vec<(String, String)> = delta
        .change_hosts
        .iter()
        .flat_map(|h| {
            h.stop
                .iter()
                .chain(&h.start)
                .map(|s| (h.node.clone(), process_name(*s)))
        })
        .collect();
    let pids: Vec<i32> = now
        .state
        .processes
        .iter()
        .filter(|p| stopping.contains(&(p.node.clone(), p.what.clone())))
        .map(|p| p.pid)
        .collect();
    process::stop_all(&pids, &mut failures);
    if !failures.is_empty() {
        bail!("stop programs: {}", failures.join("; "));
    }
    let removed_nodes: Vec<String> = now
        .plan
        .namespaces
        .iter()
        .filter(|n| delta.remove_namespaces.contains(&n.name))
        .map(|n| n.node.clone())
        .collect();
    State::modify(name, |st| {
        st.processes.retain(|p| {
            !removed_nodes.contains(&p.node)
                && !stopping.contains(&(p.node.clone(), p.what.clone()))
        });
        Ok(())
    })?;
    checkpoint("apply:stopped")?;

    kernel::edit::apply(&now.plan, new_plan, delta).context("change the kernel")?;
    checkpoint("apply:kernel")?;

    // Hosts whose files changed get them rewritten; new hosts get theirs on first use.
    for h in &delta.change_hosts {
        if h.files_changed
            && let Some(host) = new_plan.host(&h.node)
        {
            hosts::rewrite_host_files(host, &dir)?;
        }
    }
    services::key_pairs(new_lab, &dir)?;
    let starting: Vec<&str> = delta
        .add_hosts
        .iter()
        .map(String::as_str)
        .chain(
            delta
                .change_hosts
                .iter()
                .filter(|h| !h.start.is_empty() || !h.stop.is_empty())
                .map(|h| h.node.as_str()),
        )
        .collect();
    if !starting.is_empty() {
        let already: Vec<(String, String)> = State::load(name)?
            .map(|st| {
                st.processes
                    .iter()
                    .map(|p| (p.node.clone(), p.what.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let template = hosts::template_of(name, new_plan)?;
        hosts::start_services(
            new_lab,
            new_plan,
            &dir,
            &|n| starting.contains(&n),
            &already,
            &template,
            &mut |ps| hosts::record_started(name, ps),
        )?;
    }
    checkpoint("apply:services")?;
    if delta.dns_changed
        || !delta.change_hosts.is_empty()
        || !delta.add_hosts.is_empty()
        || delta.flow_logs_changed()
    {
        control::request(name, &control::Request::Reload, Duration::from_secs(5))
            .context("reload the supervisor's DNS records, instance metadata and flow logs")?;
    }
    Ok(())
}

/// Marks an apply of `lab` done, the lab now being `now` with plan `plan` (`repair` calls it
/// too, for an apply that was killed): namespaces and runtime records of what went away go.
pub(super) fn finish(lab: &str, now: &Lab, plan: &Plan) -> Result<()> {
    State::modify(lab, |st| {
        st.applying = false;
        st.namespaces
            .retain(|n| plan.namespaces.iter().any(|p| &p.name == n));
        st.runtime.stopped.retain(|i| now.instance(i).is_some());
        st.runtime
            .public_ips
            .retain(|i, _| now.instance(i).is_some());
        Ok(())
    })?;
    Ok(())
}

/// The name a service's process is recorded under in the state file.
fn process_name(s: crate::topology::Service) -> String {
    match s {
        crate::topology::Service::Ssh => "sshd".into(),
        crate::topology::Service::Http | crate::topology::Service::Https => "nginx".into(),
    }
}

/// The listing `apply` prints: one line per AWS object, then what was done.
pub fn render(a: &Applied) -> String {
    let mut o = String::new();
    for c in &a.changes {
        o.push_str(&format!("{c}\n"));
    }
    if a.changes.is_empty() {
        o.push_str("no changes\n");
    } else if a.dry_run {
        o.push_str(&format!(
            "\ndry run: {} change{} to make, {} kernel write{}; nothing was changed\n",
            a.changes.len(),
            if a.changes.len() == 1 { "" } else { "s" },
            a.kernel_writes,
            if a.kernel_writes == 1 { "" } else { "s" }
        ));
    } else {
        o.push_str(&format!(
            "\napplied {} change{} in {} ms\n",
            a.applied,
            if a.applied == 1 { "" } else { "s" },
            a.ms
        ));
    }
    o
}
