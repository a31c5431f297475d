//! The names and addresses every lab has, whatever its file says: the VPC router and the
//! internet (reserved node names), the resolvers, the metadata service, and how the internet's
//! hosts are addressed. A leaf module: validation reserves these, the plan builds them.

use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// The node that is the VPC router (subnet gateways, route tables, network ACLs).
pub const ROUTER: &str = "vpc-router";
/// The node that is the internet: one namespace holding the internet's hosts.
pub const INTERNET: &str = "internet";
/// Node names the lab itself uses, so a file may not name a host after them.
pub const RESERVED_NODE_NAMES: &[&str] = &[ROUTER, INTERNET];

/// Where the internet's resolver listens, a TEST-NET-1 address the internet hosts use.
pub const INTERNET_RESOLVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
/// Internet hosts are named `<host>.example` (RFC 2606 reserves `.example`).
pub const INTERNET_DOMAIN: &str = "example";

/// The VPC resolver's link-local address (it also answers on the VPC base + 2).
pub const RESOLVER_LINK_LOCAL: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 253);
/// The instance metadata service.
pub const METADATA: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// The /24 an internet host sits on; the internet namespace holds its .1 as the gateway.
pub fn host_block(ip: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::new(ip, 24)
        .expect("24 is a valid IPv4 prefix length")
        .trunc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internet_host_block_is_its_slash_24() {
        assert_eq!(
            host_block(Ipv4Addr::new(203, 0, 113, 77)).to_string(),
            "203.0.113.0/24"
        );
    }

    #[test]
    fn the_reserved_names_are_the_router_and_the_internet() {
        assert_eq!(RESERVED_NODE_NAMES, &["vpc-router", "internet"]);
    }
}
