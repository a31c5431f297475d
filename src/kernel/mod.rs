//! The only code that touches the kernel: network namespaces, links, addresses, routes,
//! rules, sysctls, nftables, and processes entering a lab host's namespaces.
//!
//! Nothing here ever creates an object in the host's own network namespace: namespaces
//! are created by unsharing a dedicated thread, veth peers are created directly inside
//! their target namespace, and `nft` runs from a thread inside the lab namespace.

pub mod apply;
pub mod capture;
pub mod conntrack;
pub mod edit;
pub mod enter;
#[cfg(test)]
mod fake;
pub mod flow;
pub mod libnft;
pub mod listening;
pub mod lock;
pub mod mount_template;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod nftnl;
pub mod observe;
pub mod process;
pub mod sysctl;

use anyhow::Result;
use std::process::Command;

/// Takes a link of a lab namespace down (a stopped instance's interface).
pub fn link_down(ns: &str, dev: &str) -> Result<()> {
    netlink::in_namespace(ns, async |nl| nl.set_state(dev, false).await)
}

/// Brings an instance's interface back up with its routes (the kernel drops the routes
/// of a link that goes down).
pub fn restore_link(ns: &crate::plan::Netns, dev: &str) -> Result<()> {
    netlink::in_namespace(&ns.name, async |nl| {
        nl.set_state(dev, true).await?;
        let index = nl.index_of(dev).await?;
        for r in ns.routes.iter().filter(|r| r.dev == dev) {
            nl.add_route(r.table, r.dst, r.via, index, &r.dev).await?;
        }
        Ok(())
    })
}

/// Replaces the lab's nftables table inside namespace `ns`, atomically.
pub fn replace_firewall(ns: &str, table: &crate::plan::firewall::Table) -> Result<()> {
    let f = netns::open(ns)?;
    netns::run_in(&f, || nft::replace_here(table))
}

/// Makes the process `cmd` starts lead a session of its own, so it outlives the terminal
/// that started it (the supervisor, which runs in the host's namespaces; a program
/// started inside a lab node gets the same from `enter::HostEnv::detach`).
pub fn start_in_new_session(cmd: &mut Command) {
    // SAFETY: the hook runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: setsid is one, and the error conversion
    // doesn't allocate.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, || {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
}
