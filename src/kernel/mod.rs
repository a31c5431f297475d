//! The only code that touches the kernel: network namespaces, links, addresses, routes,
//! rules, sysctls, nftables, and processes entering a lab host's namespaces.
//!
//! Nothing here ever creates an object in the host's own network namespace: namespaces
//! are created by unsharing a dedicated thread, veth peers are created directly inside
//! their target namespace, and `nft` runs from a thread inside the lab namespace.

pub mod apply;
pub mod capture;
pub mod conntrack;
pub mod enter;
#[cfg(test)]
mod fake;
pub mod libnft;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod sysctl;

use anyhow::Result;

/// Takes a link of a lab namespace down (a stopped instance's interface).
pub fn link_down(ns: &str, dev: &str) -> Result<()> {
    let f = netns::open(ns)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let nl = netns::run_in(&f, || netlink::Netlink::open_here(rt.handle()))?;
    rt.block_on(nl.set_state(dev, false))
}

/// Brings an instance's interface back up with its routes (the kernel drops the routes
/// of a link that goes down).
pub fn restore_link(ns: &crate::plan::Netns, dev: &str) -> Result<()> {
    let f = netns::open(&ns.name)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let nl = netns::run_in(&f, || netlink::Netlink::open_here(rt.handle()))?;
    rt.block_on(async {
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
