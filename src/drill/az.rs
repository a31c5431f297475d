//! An availability zone going down, and coming back: every node of the AZ loses its
//! link and its processes; the database fails over to the other AZ by itself (the
//! supervisor's health monitor notices); what lived only in that AZ is gone.

use crate::kernel::{self, netns};
use crate::lab::database::{self, Events};
use crate::lab::state::State;
use crate::lab::{Running, control, hosts, running, state};
use crate::plan::Role;
use crate::plan::network::HOST_IF;
use crate::probe;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Nodes (namespaces) that live in `az`.
fn nodes_in(r: &Running, az: &str) -> Vec<(String, Role)> {
    r.plan
        .namespaces
        .iter()
        .filter(|n| n.az.as_deref() == Some(az))
        .map(|n| (n.node.clone(), n.role))
        .collect()
}

fn check_az(r: &Running, az: &str) -> Result<()> {
    let azs: std::collections::BTreeSet<&str> =
        r.lab.subnets.iter().map(|s| s.az.as_str()).collect();
    if !azs.contains(az) {
        bail!(
            "lab `{}` has nothing in `{az}`\n  hint: its availability zones are {}",
            r.lab.name,
            azs.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// Takes `az` down. Returns the nodes that went down with it.
pub fn outage(lab: &str, az: &str) -> Result<Vec<String>> {
    let r = running(Some(lab))?;
    check_az(&r, az)?;
    if r.state.runtime.azs_down.contains(az) {
        bail!("{az} is already down\n  hint: `vpclab drill restore` brings it back");
    }
    let nodes = nodes_in(&r, az);
    let names: Vec<String> = nodes.iter().map(|n| n.0.clone()).collect();
    // Mark the AZ down first, so the health monitor doesn't restart a server there.
    State::modify(lab, |st| {
        st.runtime.azs_down.insert(az.to_string());
        Ok(())
    })?;
    let mut failures = Vec::new();
    for (node, _) in &nodes {
        let ns = crate::plan::namespace_name(lab, node);
        if let Some(inode) = netns::inode(&ns) {
            crate::kernel::process::stop_all(&netns::pids_in(&[inode]), &mut failures);
        }
        kernel::link_down(&ns, HOST_IF).with_context(|| format!("take {node}'s link down"))?;
    }
    State::modify(lab, |st| {
        st.processes.retain(|p| !names.contains(&p.node));
        Ok(())
    })?;
    Ok(names)
}

/// Brings AZs back (all that are down, or one): links and routes up, services started,
/// database servers rejoining as standbys.
pub fn restore(lab: &str, only: Option<&str>) -> Result<(Vec<String>, Vec<database::Event>)> {
    let r = running(Some(lab))?;
    let azs: Vec<String> = r
        .state
        .runtime
        .azs_down
        .iter()
        .filter(|a| only.is_none_or(|o| o == *a))
        .cloned()
        .collect();
    if azs.is_empty() {
        bail!("no availability zone of lab `{lab}` is down");
    }
    let dir = state::dir(lab);
    let mut back = Vec::new();
    let mut events = Vec::new();
    for az in &azs {
        for ns in r
            .plan
            .namespaces
            .iter()
            .filter(|n| n.az.as_deref() == Some(az.as_str()))
        {
            if r.state.runtime.stopped.contains(&ns.node) {
                continue; // stopped before the outage: stays stopped
            }
            kernel::restore_link(ns, HOST_IF)
                .with_context(|| format!("bring {}'s link back", ns.node))?;
            back.push(ns.node.clone());
        }
        State::modify(lab, |st| {
            st.runtime.azs_down.remove(az);
            Ok(())
        })?;
    }
    let now = running(Some(lab))?;
    let was_down = |n: &str| back.iter().any(|b| b == n);
    hosts::start_services(&now.lab, &now.plan, &dir, &was_down, &mut |p| {
        State::modify(lab, |st| {
            st.processes.push(p.clone());
            Ok(())
        })
        .map(|_| ())
    })?;
    for d in now.lab.databases.iter().filter(|d| d.standby.is_some()) {
        if let Some(s) = &d.standby
            && back.contains(&s.name)
        {
            let mut ev = Events::new(lab, &d.name);
            database::rejoin(lab, &d.name, &s.name, &mut ev)?;
            events.extend(ev.list);
        }
    }
    control::request(lab, &control::Request::Reload, Duration::from_secs(5))?;
    Ok((back, events))
}

#[derive(Debug, Serialize)]
pub struct OutageReport {
    pub lab: String,
    pub az: String,
    pub down: Vec<String>,
    pub survived: Vec<String>,
    /// What the outage means for this architecture, in words.
    pub findings: Vec<String>,
    pub probes: probe::Report,
}

/// `vpclab drill az-outage AZ`: takes the AZ down, waits for the databases to fail
/// over, then probes the lab and explains what survived.
pub fn drill(lab: Option<&str>, az: &str) -> Result<OutageReport> {
    let r = running(lab)?;
    check_az(&r, az)?;
    let lab = r.lab.name.clone();
    let primaries_in_az: Vec<String> = r
        .lab
        .databases
        .iter()
        .filter(|d| d.standby.is_some() && r.lab.subnets[d.primary.subnet].az == az)
        .map(|d| d.name.clone())
        .collect();
    let down = outage(&lab, az)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    for db in &primaries_in_az {
        while running(Some(&lab))
            .ok()
            .and_then(|now| database::roles(&now.lab, db).ok())
            .is_some_and(|(p, _)| now_az(&r, &p.name) == az)
        {
            if Instant::now() > deadline {
                bail!("database `{db}` did not fail over out of {az} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let now = running(Some(&lab))?;
    let probes = probe::run_all(&now)?;
    let survived: Vec<String> = now
        .plan
        .namespaces
        .iter()
        .filter(|n| n.az.is_some() && !down.contains(&n.node))
        .map(|n| n.node.clone())
        .collect();
    Ok(OutageReport {
        findings: findings(&now, az, &down),
        lab,
        az: az.into(),
        down,
        survived,
        probes,
    })
}

fn now_az(r: &Running, node: &str) -> String {
    r.plan
        .netns(node)
        .and_then(|n| n.az.clone())
        .unwrap_or_default()
}

/// The architecture's single-AZ weaknesses this outage exposed.
fn findings(r: &Running, az: &str, down: &[String]) -> Vec<String> {
    let lab = &r.lab;
    let mut out = Vec::new();
    for i in &lab.instances {
        if down.contains(&i.name) {
            let others_in_other_azs = lab.instances.iter().any(|o| {
                o.name != i.name
                    && o.security_groups == i.security_groups
                    && lab.subnets[o.subnet].az != az
            });
            if !others_in_other_azs {
                out.push(format!(
                    "{} lived only in {az}: it is down. Nothing like it runs in another AZ (a single-AZ weakness of this design: run a copy in each AZ behind a load balancer).",
                    i.name
                ));
            }
        }
    }
    for n in &lab.nat_gateways {
        if down.contains(&n.name) {
            out.push(format!(
                "NAT gateway {} was in {az}: private subnets routed through it lost their way to the internet, in every AZ (one NAT gateway per AZ avoids this).",
                n.name
            ));
        }
    }
    for d in &lab.databases {
        let p = &d.primary;
        if let Some(s) = &d.standby {
            if down.contains(&s.name) {
                out.push(format!(
                    "database {} failed over to {} in {}: it keeps serving, without a standby until {az} is back.",
                    d.name,
                    p.name,
                    lab.subnets[p.subnet].az
                ));
            }
        } else if down.contains(&p.name) {
            out.push(format!(
                "database {} is single-AZ and was in {az}: it is down.",
                d.name
            ));
        }
    }
    out
}

pub fn render(rep: &OutageReport) -> String {
    let mut o = format!(
        "{} is down: {}\nstill up: {}\n\n",
        rep.az,
        rep.down.join(", "),
        rep.survived.join(", ")
    );
    for f in &rep.findings {
        o.push_str(&format!("- {f}\n"));
    }
    o.push_str("\nthe lab's expectations now:\n");
    o.push_str(&probe::render(&rep.probes));
    o.push_str(
        "\n`sudo vpclab drill restore` brings the AZ back (the old primary rejoins as standby).\n",
    );
    o
}
