//! An availability zone going down, and coming back: every node of the AZ loses its
//! link and its processes; the database fails over to the other AZ by itself (the
//! supervisor's health monitor notices); what lived only in that AZ is gone.

use crate::kernel::{self, netns};
use crate::lab::database::{self, Events};
use crate::lab::state::State;
use crate::lab::{Running, control, hosts, running, state};
use crate::plan::Plan;
use crate::plan::network::HOST_IF;
use crate::probe;
use crate::topology::{Lab, RouteTarget, Subnet};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Nodes (namespaces) that live in `az`.
fn nodes_in(plan: &Plan, az: &str) -> Vec<String> {
    plan.namespaces
        .iter()
        .filter(|n| n.az.as_deref() == Some(az))
        .map(|n| n.node.clone())
        .collect()
}

fn check_az(r: &Running, az: &str) -> Result<()> {
    let azs: BTreeSet<&str> = r.lab.subnets.iter().map(|s| s.az.as_str()).collect();
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
    let names = nodes_in(&r.plan, az);
    // Mark the AZ down first, so the health monitor doesn't restart a server there.
    State::modify(lab, |st| {
        st.runtime.azs_down.insert(az.to_string());
        Ok(())
    })?;
    let mut failures = Vec::new();
    for node in &names {
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
    let template = hosts::template_of(lab, &now.plan)?;
    hosts::start_services(
        &now.lab,
        &now.plan,
        &dir,
        &was_down,
        &[],
        &template,
        &mut |ps| hosts::record_started(lab, ps),
    )?;
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
    /// The database servers that went down with the AZ: `restore` brings them back as standbys.
    pub database_servers_down: Vec<String>,
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
    let failovers: BTreeMap<String, String> = r
        .lab
        .databases
        .iter()
        .filter_map(|before| {
            let after = now.lab.database(&before.name)?;
            (after.primary.name != before.primary.name)
                .then(|| (before.name.clone(), after.primary.name.clone()))
        })
        .collect();
    let probes = probe::run_all(&now)?;
    let survived: Vec<String> = now
        .plan
        .namespaces
        .iter()
        .filter(|n| n.az.is_some() && !down.contains(&n.node))
        .map(|n| n.node.clone())
        .collect();
    let database_servers_down: Vec<String> = r
        .lab
        .databases
        .iter()
        .flat_map(|d| std::iter::once(&d.primary).chain(&d.standby))
        .filter(|n| down.contains(&n.name))
        .map(|n| n.name.clone())
        .collect();
    Ok(OutageReport {
        findings: findings(&r.lab, az, &down, &failovers),
        database_servers_down,
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

/// What the outage of `az` meant for this lab, a sentence each: the instances, NAT
/// gateways and database servers among `down` (the nodes that went down with it). `lab`
/// is the lab as it was when the AZ went down (its databases' roles then); `failovers`
/// maps each database that failed over during the outage to its new primary.
fn findings(
    lab: &Lab,
    az: &str,
    down: &[String],
    failovers: &BTreeMap<String, String>,
) -> Vec<String> {
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
    for (k, n) in lab.nat_gateways.iter().enumerate() {
        if down.contains(&n.name) {
            out.push(format!(
                "NAT gateway {} was in {az}: {}",
                n.name,
                nat_loss(lab, k, az)
            ));
        }
    }
    for d in &lab.databases {
        let p = &d.primary;
        let az_of = |subnet: usize| &lab.subnets[subnet].az;
        if let Some(to) = failovers.get(&d.name) {
            let to_az = d
                .nodes()
                .find(|n| &n.name == to)
                .map_or(az, |n| az_of(n.subnet));
            out.push(format!(
                "database {} failed over to {to} in {to_az}: it keeps serving, without a standby until {az} is back.",
                d.name
            ));
        } else if down.contains(&p.name) {
            out.push(match &d.standby {
                None => format!(
                    "database {} is single-AZ and was in {az}: it is down.",
                    d.name
                ),
                Some(_) => format!(
                    "database {} did not fail over: its primary {} was in {az}, it is down.",
                    d.name, p.name
                ),
            });
        } else if let Some(s) = d.standby.as_ref().filter(|s| down.contains(&s.name)) {
            out.push(format!(
                "database {} lost its standby {} in {az}; nothing failed over: the primary {} in {} keeps serving, without a standby until {az} is back.",
                d.name,
                s.name,
                p.name,
                az_of(p.subnet)
            ));
        }
    }
    out
}

/// Which subnets lost their way to the internet with NAT gateway `nat` (in `az`): those
/// whose route table sends traffic to it, named with their tables, and in which AZs.
fn nat_loss(lab: &Lab, nat: usize, az: &str) -> String {
    let mut tables = Vec::new();
    let mut cut_off_azs = BTreeSet::new();
    for (t, table) in lab.route_tables.iter().enumerate() {
        if !table
            .routes
            .iter()
            .any(|r| r.target == RouteTarget::NatGateway(nat))
        {
            continue;
        }
        let subnets: Vec<&Subnet> = lab.subnets.iter().filter(|s| s.route_table == t).collect();
        if subnets.is_empty() {
            continue;
        }
        cut_off_azs.extend(subnets.iter().map(|s| s.az.as_str()));
        let names: Vec<&str> = subnets.iter().map(|s| s.name.as_str()).collect();
        tables.push(format!("{}: {}", table.name, names.join(", ")));
    }
    if tables.is_empty() {
        return "no subnet's route table sends traffic to it, so no subnet lost its way to the internet.".into();
    }
    let routed = format!(
        "the private subnets routed through it ({} {}) lost their way to the internet",
        if tables.len() == 1 {
            "route table"
        } else {
            "route tables"
        },
        tables.join("; ")
    );
    if cut_off_azs.iter().all(|a| *a == az) {
        return format!(
            "{routed}; they are all in {az}, and no subnet of another AZ routes through it."
        );
    }
    let lab_azs: BTreeSet<&str> = lab.subnets.iter().map(|s| s.az.as_str()).collect();
    let in_azs = if cut_off_azs == lab_azs {
        "every AZ".to_string()
    } else {
        cut_off_azs.into_iter().collect::<Vec<_>>().join(", ")
    };
    format!("{routed}, in {in_azs} (one NAT gateway per AZ avoids this).")
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
    if !rep.probes.probes.is_empty() {
        o.push_str("\nthe lab's expectations now:\n");
        o.push_str(&probe::render(&rep.probes));
    }
    o.push_str("\n`sudo vpclab drill restore` brings the AZ back");
    match rep.database_servers_down.as_slice() {
        [] => o.push_str(".\n"),
        [one] => o.push_str(&format!(" ({one} rejoins as a standby).\n")),
        many => o.push_str(&format!(" ({} rejoin as standbys).\n", many.join(", "))),
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::apply_runtime;
    use crate::lab::state::Runtime;
    use crate::topology::testing::{builtin, lab_from};

    /// One NAT gateway per AZ, per-AZ private route tables, a Multi-AZ database whose
    /// primary is in us-east-1a.
    fn nat_per_az() -> Lab {
        lab_from(include_str!("../../tests/labs/nat-per-az.yaml"))
    }

    /// The findings when `az` goes down, everything in it going down with it.
    fn outage_of(lab: &Lab, az: &str, failovers: &[(&str, &str)]) -> Vec<String> {
        let down = nodes_in(&crate::plan::compile(lab), az);
        let failovers = failovers
            .iter()
            .map(|(d, to)| (d.to_string(), to.to_string()))
            .collect();
        findings(lab, az, &down, &failovers)
    }

    #[test]
    fn the_hands_on_loses_its_nat_gateway_and_its_standby_with_2a() {
        assert_eq!(
            outage_of(&builtin(), "ap-northeast-2a", &[]),
            [
                "app lived only in ap-northeast-2a: it is down. Nothing like it runs in another AZ (a single-AZ weakness of this design: run a copy in each AZ behind a load balancer).",
                "NAT gateway my-nat was in ap-northeast-2a: the private subnets routed through it (route table private: private-2a, private-2c) lost their way to the internet, in every AZ (one NAT gateway per AZ avoids this).",
                "database my-database lost its standby my-database-2a in ap-northeast-2a; nothing failed over: the primary my-database-2c in ap-northeast-2c keeps serving, without a standby until ap-northeast-2a is back.",
            ]
        );
    }

    #[test]
    fn the_hands_on_fails_over_when_2c_goes_down() {
        assert_eq!(
            outage_of(
                &builtin(),
                "ap-northeast-2c",
                &[("my-database", "my-database-2a")]
            ),
            [
                "web lived only in ap-northeast-2c: it is down. Nothing like it runs in another AZ (a single-AZ weakness of this design: run a copy in each AZ behind a load balancer).",
                "database my-database failed over to my-database-2a in ap-northeast-2a: it keeps serving, without a standby until ap-northeast-2c is back.",
            ]
        );
    }

    #[test]
    fn a_nat_gateway_per_az_cuts_off_only_its_own_az_and_the_primary_fails_over() {
        assert_eq!(
            outage_of(&nat_per_az(), "us-east-1a", &[("orders", "orders-1b")]),
            [
                "NAT gateway nat-a was in us-east-1a: the private subnets routed through it (route table private-a: private-a) lost their way to the internet; they are all in us-east-1a, and no subnet of another AZ routes through it.",
                "database orders failed over to orders-1b in us-east-1b: it keeps serving, without a standby until us-east-1a is back.",
            ]
        );
    }

    #[test]
    fn a_nat_gateway_per_az_and_only_the_standby_lost() {
        assert_eq!(
            outage_of(&nat_per_az(), "us-east-1b", &[]),
            [
                "NAT gateway nat-b was in us-east-1b: the private subnets routed through it (route table private-b: private-b) lost their way to the internet; they are all in us-east-1b, and no subnet of another AZ routes through it.",
                "database orders lost its standby orders-1b in us-east-1b; nothing failed over: the primary orders-1a in us-east-1a keeps serving, without a standby until us-east-1b is back.",
            ]
        );
    }

    /// After an earlier failover the primary is the file's standby: the outage of the
    /// file's primary AZ then loses only the standby.
    #[test]
    fn roles_are_the_ones_at_the_time_of_the_outage() {
        let mut runtime = Runtime::default();
        runtime
            .primaries
            .insert("orders".into(), "orders-1b".into());
        let lab = apply_runtime(nat_per_az(), &runtime);
        let lines = outage_of(&lab, "us-east-1a", &[]);
        assert_eq!(
            lines.last().map(String::as_str),
            Some(
                "database orders lost its standby orders-1a in us-east-1a; nothing failed over: the primary orders-1b in us-east-1b keeps serving, without a standby until us-east-1a is back."
            )
        );
    }

    #[test]
    fn a_nat_gateway_shared_by_some_azs_names_its_tables_and_those_azs() {
        let lab = lab_from(
            r#"
name: shared
region: us-east-1
vpc: { name: v, cidr: 10.40.0.0/16 }
subnets:
  pub-a:  { az: us-east-1a, cidr: 10.40.0.0/24, route_table: public }
  priv-a: { az: us-east-1a, cidr: 10.40.1.0/24, route_table: private-a }
  priv-b: { az: us-east-1b, cidr: 10.40.2.0/24, route_table: private-b }
  pub-c:  { az: us-east-1c, cidr: 10.40.3.0/24, route_table: public }
  priv-c: { az: us-east-1c, cidr: 10.40.4.0/24, route_table: private-c }
route_tables:
  public: { 0.0.0.0/0: igw }
  private-a: { 0.0.0.0/0: nat-a }
  private-b: { 0.0.0.0/0: nat-a }
  private-c: { 0.0.0.0/0: nat-c }
internet_gateway: igw
elastic_ips: { eip-a: auto, eip-c: auto }
nat_gateways:
  nat-a: { subnet: pub-a, elastic_ip: eip-a }
  nat-c: { subnet: pub-c, elastic_ip: eip-c }
"#,
        );
        assert_eq!(
            outage_of(&lab, "us-east-1a", &[]),
            [
                "NAT gateway nat-a was in us-east-1a: the private subnets routed through it (route tables private-a: priv-a; private-b: priv-b) lost their way to the internet, in us-east-1a, us-east-1b (one NAT gateway per AZ avoids this).",
            ]
        );
    }
}
