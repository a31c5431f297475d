//! Per-host files (resolv.conf, hosts, hostname) kept in the lab's state dir and mounted
//! over the host's copies inside each node's private mount namespace.

use crate::kernel::enter::HostEnv;
use crate::plan::Plan;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

pub fn host_dir(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join("hosts").join(node)
}

/// Files that replace the host's own inside a node, as (file in the state dir, path).
fn overlays(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    ["resolv.conf", "hosts", "hostname"]
        .iter()
        .map(|f| (dir.join(f), Path::new("/etc").join(f)))
        .collect()
}

pub fn write_files(plan: &Plan, state_dir: &Path) -> Result<()> {
    for h in &plan.hosts {
        let dir = host_dir(state_dir, &h.node);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        for (name, content) in [
            ("resolv.conf", h.resolv_conf()),
            ("hosts", h.hosts_file()),
            ("hostname", format!("{}\n", h.hostname)),
        ] {
            std::fs::write(dir.join(name), content)
                .with_context(|| format!("write {}/{name}", dir.display()))?;
        }
    }
    Ok(())
}

/// How to run a program on `node`: a host gets its files and hostname; a gateway or
/// router just its network namespace.
pub fn env(plan: &Plan, state_dir: &Path, node: &str) -> Result<HostEnv> {
    if let Some(h) = plan.host(node) {
        let dir = host_dir(state_dir, node);
        let binds = overlays(&dir)
            .into_iter()
            .filter(|(_, target)| target.exists())
            .collect();
        return Ok(HostEnv {
            netns: h.ns.clone(),
            hostname: Some(h.hostname.clone()),
            binds,
        });
    }
    match plan.netns(node) {
        Some(ns) => Ok(HostEnv {
            netns: ns.name.clone(),
            hostname: None,
            binds: vec![],
        }),
        None => {
            let mut names: Vec<&str> = plan.namespaces.iter().map(|n| n.node.as_str()).collect();
            names.sort();
            bail!(
                "lab `{}` has no node `{node}`\n  hint: nodes are {}",
                plan.lab,
                names.join(", ")
            )
        }
    }
}
