//! What faces the internet: its hosts, the Elastic IPs, and the NAT gateways that take
//! private subnets out through one.

use super::alloc::{Address, Allocator};
use super::network::Network;
use super::{NodeDef, Validator, loc, quoted_list};
use crate::topology::aws::{overlaps, special_block};
use crate::topology::file::{self, LabFile, S};
use crate::topology::model::{ElasticIp, InternetHost, NatGateway, Subnet};
use crate::topology::well_known::{INTERNET_RESOLVER, host_block};
use ipnet::Ipv4Net;
use serde_saphyr::Location;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// The internet's hosts as checked.
pub(super) struct Internet {
    /// In file order; a host whose address is wrong has 0.0.0.0 (the lab is then not built).
    pub hosts: Vec<InternetHost>,
    /// The hosts' valid addresses, with their names.
    pub ips: HashMap<Ipv4Addr, String>,
}

impl Internet {
    /// The address of the host marked `my_ip` (the first one, if several are).
    pub fn my_ip(&self) -> Option<Ipv4Addr> {
        self.hosts.iter().find(|h| h.my_ip).map(|h| h.ip)
    }
}

/// An Elastic IP that passed its checks, its address fixed or `auto`.
pub(super) struct CheckedElasticIp {
    name: String,
    at: Location,
    address: Address,
}

/// A NAT gateway that passed its checks.
pub(super) struct CheckedNatGateway {
    name: String,
    at: Location,
    subnet: usize,
    private_ip: Address,
    /// Index into the file's Elastic IPs, which the lab keeps in the same order.
    elastic_ip: usize,
}

impl Validator {
    pub(super) fn internet_hosts(
        &mut self,
        f: &LabFile,
        net: &Network,
        nodes: &mut Vec<NodeDef>,
    ) -> Internet {
        let mut hosts = Vec::new();
        let mut ips: HashMap<Ipv4Addr, String> = HashMap::new();
        let mut first_my_ip: Option<String> = None;
        for (key, h) in &f.internet {
            self.node_name(key, "internet host", nodes);
            let ip = self.ip(&h.ip, "internet host IP");
            if let Some(ip) = ip {
                self.internet_ip(h, ip, net.vpc_cidr, net.pool, &ips);
                ips.insert(ip, key.value.clone());
            }
            let my_ip = h.my_ip.as_ref().filter(|b| b.value);
            if let Some(mark) = my_ip {
                if let Some(prev) = &first_my_ip {
                    self.err(
                        loc(mark),
                        format!(
                            "internet host `{}` is marked `my_ip`, but so is `{prev}`",
                            key.value
                        ),
                        "only one host can be \"my IP\"; remove one of the marks",
                    );
                } else {
                    first_my_ip = Some(key.value.clone());
                }
            }
            let services = self.services(&h.services, &format!("internet host `{}`", key.value));
            hosts.push(InternetHost {
                name: key.value.clone(),
                ip: ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                my_ip: my_ip.is_some(),
                services,
            });
        }
        Internet { hosts, ips }
    }

    /// An internet host's address: its own, outside the VPC and the pool, and a usable host
    /// of its /24 (a LAN of the internet, whose .1 is the internet router).
    fn internet_ip(
        &mut self,
        h: &file::InternetHostFile,
        ip: Ipv4Addr,
        vpc: Option<Ipv4Net>,
        pool: Option<Ipv4Net>,
        seen: &HashMap<Ipv4Addr, String>,
    ) {
        let block = host_block(ip);
        let special = special_block(Ipv4Net::from(ip));
        // A /24 that overlaps the VPC or the pool is reported for its first host only.
        let lan_reported = seen.keys().any(|other| block.contains(other));
        if let Some(prev) = seen.get(&ip) {
            self.err(
                loc(&h.ip),
                format!("internet host address {ip} is already used by `{prev}`"),
                "each internet host needs its own address",
            );
        } else if let Some(v) = vpc.filter(|v| v.contains(&ip)) {
            self.err(
                loc(&h.ip),
                format!("internet host address {ip} is inside the VPC CIDR {v}"),
                "internet hosts live outside the VPC; use RFC 5737 addresses like 203.0.113.10",
            );
        } else if let Some(p) = pool.filter(|p| p.contains(&ip)) {
            self.err(
                loc(&h.ip),
                format!("internet host address {ip} is inside the public IP pool {p}"),
                "the pool's addresses belong to instances and Elastic IPs; use another block, like 203.0.113.0/24",
            );
        } else if ip == INTERNET_RESOLVER {
            self.err(
                loc(&h.ip),
                format!("internet host address {ip} is the internet's DNS resolver"),
                "vpclab runs the internet's resolver there; pick another address",
            );
        } else if let Some((range, why)) = special {
            self.err(
                loc(&h.ip),
                format!("internet host address {ip} is in {why} {range}"),
                "vpclab's own links use 169.254.0.0/16 and the others are not host addresses; use RFC 5737 documentation addresses like 203.0.113.10 or 192.0.2.66",
            );
        } else if let Some(why) = match u32::from(ip) - u32::from(block.network()) {
            0 => Some("the network address of"),
            1 => Some("the internet router's address on"),
            255 => Some("the broadcast address of"),
            _ => None,
        } {
            self.err(
                loc(&h.ip),
                format!("internet host address {ip} is {why} its /24 ({block})"),
                "every /24 that holds internet hosts is a LAN whose .1 is the internet router (the hosts' gateway); use .2 to .254",
            );
        } else if !lan_reported && let Some(v) = vpc.filter(|v| overlaps(*v, block)) {
            self.err(
                loc(&h.ip),
                format!(
                    "the /24 of internet host address {ip} ({block}) overlaps the VPC CIDR {v}"
                ),
                "internet hosts sit on a /24 LAN outside the VPC; pick an address in another /24",
            );
        } else if !lan_reported && let Some(p) = pool.filter(|p| overlaps(*p, block)) {
            self.err(
                loc(&h.ip),
                format!("the /24 of internet host address {ip} ({block}) overlaps the public IP pool {p}"),
                "the internet reaches the pool through the internet gateway, not on a host's LAN; pick an address in another /24",
            );
        }
    }

    /// Associates Elastic IP `eip` with `user`, reporting one that is not defined or is
    /// already associated. Its index among the file's Elastic IPs when it is defined.
    pub(super) fn eip_use(
        &mut self,
        f: &LabFile,
        eip: &S<String>,
        user: &str,
        owners: &mut HashMap<String, String>,
    ) -> Option<usize> {
        let Some(index) = f.elastic_ips.keys().position(|k| k.value == eip.value) else {
            self.err(
                loc(eip),
                format!("Elastic IP `{}` is not defined", eip.value),
                format!(
                    "add it under `elastic_ips:` (e.g. `{}: auto`); defined: {}",
                    eip.value,
                    quoted_list(f.elastic_ips.keys().map(|k| k.value.as_str()))
                ),
            );
            return None;
        };
        if let Some(prev) = owners.get(&eip.value) {
            let prev = prev.clone();
            self.err(
                loc(eip),
                format!(
                    "Elastic IP `{}` is already associated with `{prev}`",
                    eip.value
                ),
                "an Elastic IP maps to one network interface at a time; allocate another",
            );
        } else {
            owners.insert(eip.value.clone(), user.to_string());
        }
        Some(index)
    }

    pub(super) fn nat_gateways(
        &mut self,
        f: &LabFile,
        net: &Network,
        eip_owners: &mut HashMap<String, String>,
        nodes: &mut Vec<NodeDef>,
    ) -> Vec<CheckedNatGateway> {
        let mut out = Vec::new();
        for (key, n) in &f.nat_gateways {
            self.node_name(key, "NAT gateway", nodes);
            let subnet = self.subnet_ref(f, net, &n.subnet);
            if let Some(si) = subnet
                && net.is_known_private(si)
            {
                self.err(
                    loc(&n.subnet),
                    format!(
                        "NAT gateway `{}` is in private subnet `{}`",
                        key.value, net.subnets[si].name
                    ),
                    "a NAT gateway must sit in a public subnet (one whose route table sends 0.0.0.0/0 to the internet gateway)",
                );
            }
            let elastic_ip = self.eip_use(f, &n.elastic_ip, &key.value, eip_owners);
            let private_ip = self.private_address(
                n.private_ip.as_ref(),
                subnet.map(|i| &net.subnets[i]),
                &format!("NAT gateway `{}`", key.value),
            );
            if let (Some(subnet), Some(private_ip), Some(elastic_ip)) =
                (subnet, private_ip, elastic_ip)
            {
                out.push(CheckedNatGateway {
                    name: key.value.clone(),
                    at: loc(key),
                    subnet,
                    private_ip,
                    elastic_ip,
                });
            }
        }
        out
    }

    /// Checks the Elastic IPs and claims their fixed addresses in `alloc`, so auto ones
    /// never collide with them.
    pub(super) fn elastic_ips(
        &mut self,
        f: &LabFile,
        net: &Network,
        internet: &Internet,
        alloc: &mut Allocator,
        nodes: &mut Vec<NodeDef>,
    ) -> Vec<CheckedElasticIp> {
        let pool = net.public_pool();
        let mut out = Vec::new();
        for (key, val) in &f.elastic_ips {
            self.node_name(key, "Elastic IP", nodes);
            let address = if val.value.0 == "auto" {
                Address::Auto
            } else if let Some(ip) = self.ip(val, "Elastic IP") {
                if net.vpc.cidr.contains(&ip) {
                    self.err(
                        loc(val),
                        format!("Elastic IP {ip} is inside the VPC CIDR {}", net.vpc.cidr),
                        format!("an Elastic IP is public: pick one from {pool}"),
                    );
                } else if !alloc.claim_public(ip) {
                    self.err(
                        loc(val),
                        format!("Elastic IP {ip} is already in use"),
                        "every public address belongs to one resource",
                    );
                } else if let Some(h) = internet
                    .hosts
                    .iter()
                    .find(|h| host_block(h.ip).contains(&ip))
                {
                    self.err(
                        loc(val),
                        format!(
                            "Elastic IP {ip} is on the /24 of internet host `{}` ({})",
                            h.name,
                            host_block(h.ip)
                        ),
                        format!("that /24 is a LAN of the internet, not routed to the lab; pick an address from {pool}"),
                    );
                }
                Address::Fixed(ip)
            } else {
                continue;
            };
            out.push(CheckedElasticIp {
                name: key.value.clone(),
                at: loc(key),
                address,
            });
        }
        out
    }

    /// The Elastic IPs with their `auto` addresses handed out, in file order.
    pub(super) fn allocate_elastic_ips(
        &mut self,
        eips: Vec<CheckedElasticIp>,
        alloc: &mut Allocator,
    ) -> Vec<ElasticIp> {
        let mut out = Vec::new();
        for e in eips {
            let address = match e.address {
                Address::Fixed(ip) => ip,
                Address::Auto => alloc.public(self, &e.name, e.at),
            };
            out.push(ElasticIp {
                name: e.name,
                address,
            });
        }
        out
    }

    /// The NAT gateways with their `auto` private addresses handed out, in file order.
    pub(super) fn allocate_nat_gateways(
        &mut self,
        nats: Vec<CheckedNatGateway>,
        subnets: &[Subnet],
        alloc: &mut Allocator,
    ) -> Vec<NatGateway> {
        let mut out = Vec::new();
        for n in nats {
            let private_ip = alloc.private(self, n.private_ip, &subnets[n.subnet], &n.name, n.at);
            out.push(NatGateway {
                name: n.name,
                subnet: n.subnet,
                private_ip,
                elastic_ip: n.elastic_ip,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn internet_hosts_avoid_the_router_network_and_broadcast_of_their_24() {
        for (ip, why) in [
            (
                "203.0.113.1",
                "is the internet router's address on its /24 (203.0.113.0/24)",
            ),
            (
                "203.0.113.0",
                "is the network address of its /24 (203.0.113.0/24)",
            ),
            (
                "203.0.113.255",
                "is the broadcast address of its /24 (203.0.113.0/24)",
            ),
        ] {
            let text = edit(
                "{ ip: 203.0.113.10, my_ip: true }",
                &format!("{{ ip: {ip}, my_ip: true }}"),
            );
            let (line, col, msg) = one_error(&text);
            assert_eq!(msg, format!("internet host address {ip} {why}"));
            assert_eq!((line, col), pos(&text, "my-laptop:", ip));
        }
        for ip in ["203.0.113.2", "203.0.113.254"] {
            let text = edit(
                "{ ip: 203.0.113.10, my_ip: true }",
                &format!("{{ ip: {ip}, my_ip: true }}"),
            );
            assert_eq!(errors(&text), []);
        }
    }

    #[test]
    fn internet_host_lans_stay_clear_of_the_pool_and_special_ranges() {
        let text = edit(
            "public_ip_pool: 198.51.100.0/24",
            "public_ip_pool: 203.0.113.128/25",
        );
        let (_, _, msg) = one_error(&text);
        assert_eq!(
            msg,
            "the /24 of internet host address 203.0.113.10 (203.0.113.0/24) overlaps the public IP pool 203.0.113.128/25"
        );
        let text = edit("{ ip: 192.0.2.66 }", "{ ip: 127.0.0.5 }");
        assert_eq!(
            one_error(&text).2,
            "internet host address 127.0.0.5 is in the loopback range 127.0.0.0/8"
        );
        let text = edit("my-nat-eip: auto", "my-nat-eip: 192.0.2.99");
        let (line, col, msg) = one_error(&text);
        assert_eq!(
            msg,
            "Elastic IP 192.0.2.99 is on the /24 of internet host `stranger` (192.0.2.0/24)"
        );
        assert_eq!((line, col), pos(&text, "my-nat-eip: 192", "192"));
    }
}
