//! `vpclab stop` / `vpclab start` of an instance, as EC2 does it: stopping releases an
//! auto-assigned public IP (an Elastic IP stays), starting assigns a new one (and with
//! it a new public DNS name); the private IP and the instance's files stay.

use super::state::{self, State};
use super::{Running, control, hosts, running};
use crate::kernel::{self, netns};
use crate::plan::network::HOST_IF;
use crate::topology::{Lab, PublicIp};
use anyhow::{Context, Result, bail};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

#[derive(Debug, serde::Serialize)]
pub struct Change {
    pub instance: String,
    pub public_ip_before: Option<Ipv4Addr>,
    pub public_ip_after: Option<Ipv4Addr>,
    pub public_dns_after: Option<String>,
}

fn instance_public(lab: &Lab, name: &str) -> Option<Ipv4Addr> {
    lab.instance(name).and_then(|i| i.public_ip.address())
}

fn check_instance(r: &Running, name: &str) -> Result<()> {
    if r.lab.instance(name).is_none() {
        let names: Vec<&str> = r.lab.instances.iter().map(|i| i.name.as_str()).collect();
        bail!(
            "lab `{}` has no instance `{name}`\n  hint: its instances are {}",
            r.lab.name,
            names.join(", ")
        );
    }
    Ok(())
}

pub fn stop(lab: Option<&str>, name: &str) -> Result<Change> {
    let r = running(lab)?;
    check_instance(&r, name)?;
    if r.state.runtime.stopped.contains(name) {
        bail!("instance `{name}` is already stopped\n  hint: `vpclab start {name}` starts it");
    }
    let before = instance_public(&r.lab, name);
    let ns = r
        .plan
        .netns(name)
        .map(|n| n.name.clone())
        .context("no namespace")?;

    // Its programs stop, its interface goes down: nothing answers at its addresses.
    let inode = netns::inode(&ns).with_context(|| format!("namespace {ns} is gone"))?;
    let mut failures = Vec::new();
    crate::kernel::process::stop_all(&netns::pids_in(&[inode]), &mut failures);
    kernel::link_down(&ns, HOST_IF)?;

    let now = commit(&r.lab.name, |st| {
        st.processes.retain(|p| p.node != name);
        st.runtime.stopped.insert(name.to_string());
        st.runtime.public_ips.remove(name);
    })?;
    Ok(Change {
        instance: name.into(),
        public_ip_before: before,
        public_ip_after: instance_public(&now.lab, name),
        public_dns_after: None,
    })
}

pub fn start(lab: Option<&str>, name: &str) -> Result<Change> {
    let r = running(lab)?;
    check_instance(&r, name)?;
    if !r.state.runtime.stopped.contains(name) {
        bail!("instance `{name}` is already running");
    }
    // While stopped the instance shows no public IP; the file says whether it gets an
    // auto-assigned one on start.
    let new_ip = match r.file_lab.instance(name).map(|i| &i.public_ip) {
        Some(PublicIp::Auto { address }) => Some(next_public_ip(&r.lab, *address)?),
        _ => None,
    };
    let now = commit(&r.lab.name, |st| {
        st.runtime.stopped.remove(name);
        if let Some(ip) = new_ip {
            st.runtime.public_ips.insert(name.into(), ip);
        }
    })?;

    let ns = now.plan.netns(name).context("no namespace")?;
    kernel::restore_link(ns, HOST_IF)?;
    let dir = state::dir(&now.lab.name);
    let template = hosts::template_of(&now.lab.name, &now.plan)?;
    hosts::start_services(
        &now.lab,
        &now.plan,
        &dir,
        &|n| n == name,
        &[],
        &template,
        &mut |ps| hosts::record_started(&now.lab.name, ps),
    )?;
    let after = instance_public(&now.lab, name);
    Ok(Change {
        instance: name.into(),
        public_ip_before: None,
        public_ip_after: after,
        public_dns_after: after.map(|ip| now.lab.public_dns_name(ip)),
    })
}

/// Changes the state and makes the kernel and the supervisor match it: the internet
/// gateway's NAT mappings, DNS records and instance metadata.
fn commit(lab: &str, change: impl FnOnce(&mut State)) -> Result<Running> {
    State::modify(lab, |st| {
        change(st);
        Ok(())
    })?;
    let now = running(Some(lab))?;
    for ns in &now.plan.namespaces {
        if ns.role == crate::plan::Role::InternetGateway
            && let Some(t) = &ns.firewall
        {
            kernel::replace_firewall(&ns.name, t)
                .context("update the internet gateway's NAT mappings")?;
        }
    }
    control::request(lab, &control::Request::Reload, Duration::from_secs(5))?;
    Ok(now)
}

/// A new auto-assigned public IP: the lowest free address of the pool (from its tenth),
/// never the one the instance just gave up.
fn next_public_ip(lab: &Lab, previous: Ipv4Addr) -> Result<Ipv4Addr> {
    let mut used: HashSet<Ipv4Addr> = crate::plan::network::public_addresses(lab)
        .into_iter()
        .collect();
    used.extend(lab.internet.iter().map(|h| h.ip));
    used.insert(crate::topology::well_known::INTERNET_RESOLVER);
    used.insert(previous);
    let pool = lab.public_ip_pool;
    let first = u32::from(pool.network()) + 10;
    let last = u32::from(pool.broadcast()) - 1;
    (first..=last)
        .map(Ipv4Addr::from)
        .find(|ip| !used.contains(ip))
        .with_context(|| format!("the public IP pool {pool} has no free address"))
}
