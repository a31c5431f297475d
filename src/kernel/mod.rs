//! The only code that touches the kernel: network namespaces, links, addresses, routes,
//! rules, sysctls, nftables, and processes entering a lab host's namespaces.
//!
//! Nothing here ever creates an object in the host's own network namespace: namespaces
//! are created by unsharing a dedicated thread, veth peers are created directly inside
//! their target namespace, and `nft` runs from a thread inside the lab namespace.

pub mod apply;
pub mod capture;
pub mod conntrack;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod sysctl;
pub mod enter;
