//! Namespaces, links, addresses, routes and policy rules of a lab.

use super::firewall;
use super::flowlogs::Counting;
use super::names::{IfNames, namespace_name};
use super::*;
use crate::topology::well_known::{
    INTERNET, INTERNET_DOMAIN, INTERNET_RESOLVER, METADATA, RESOLVER_LINK_LOCAL, ROUTER, host_block,
};
use crate::topology::{self as t, Lab, RouteTarget};
use std::collections::BTreeSet;

/// Router <-> internet gateway, and internet gateway <-> internet: point-to-point links
/// on link-local /30s, which never collide with a lab's own addresses.
const ROUTER_IGW: (Ipv4Addr, Ipv4Addr) =
    (Ipv4Addr::new(169, 254, 1, 1), Ipv4Addr::new(169, 254, 1, 2));
const IGW_INET: (Ipv4Addr, Ipv4Addr) =
    (Ipv4Addr::new(169, 254, 2, 1), Ipv4Addr::new(169, 254, 2, 2));
/// Interfaces inside hosts, NAT gateways and the internet gateway.
pub const HOST_IF: &str = "eth0";
pub const IGW_VPC_IF: &str = "to-vpc";
pub const IGW_INET_IF: &str = "to-internet";
pub const ROUTER_IGW_IF: &str = "to-igw";
pub const INET_IGW_IF: &str = "to-igw";
pub const INET_HOSTS_BRIDGE: &str = "hosts";

pub struct Network {
    pub namespaces: Vec<Netns>,
    pub veths: Vec<Veth>,
    pub route_tables: Vec<ConsoleRouteTable>,
}

fn net(ip: Ipv4Addr, prefix: u8) -> Ipv4Net {
    Ipv4Net::new(ip, prefix).expect("prefix <= 32")
}

fn sysctl(key: &str, value: &str) -> Sysctl {
    Sysctl {
        key: key.into(),
        value: value.into(),
    }
}

/// Set explicitly in every namespace: a new namespace's defaults depend on the host's
/// (a new namespace copies the root namespace's `conf/all` values), and a lab must behave the
/// same on every machine.
fn base_sysctls(forwarding: bool) -> Vec<Sysctl> {
    let fwd = if forwarding { "1" } else { "0" };
    vec![
        sysctl("net.ipv6.conf.all.disable_ipv6", "1"),
        sysctl("net.ipv6.conf.default.disable_ipv6", "1"),
        sysctl("net.ipv4.ip_forward", fwd),
        sysctl("net.ipv4.conf.all.rp_filter", "0"),
        sysctl("net.ipv4.conf.default.rp_filter", "0"),
        sysctl("net.ipv4.conf.all.send_redirects", "0"),
        sysctl("net.ipv4.conf.default.send_redirects", "0"),
        sysctl("net.ipv4.conf.all.accept_redirects", "0"),
        sysctl("net.ipv4.conf.default.accept_redirects", "0"),
        sysctl("net.ipv4.ping_group_range", "0 2147483647"),
    ]
}

fn empty_ns(lab: &Lab, node: &str, role: Role, az: Option<&str>, forwarding: bool) -> Netns {
    Netns {
        name: namespace_name(&lab.name, node),
        node: node.into(),
        role,
        az: az.map(str::to_string),
        sysctls: base_sysctls(forwarding),
        bridges: vec![],
        addresses: vec![],
        routes: vec![],
        rules: vec![],
        firewall: None,
        flow_log: None,
    }
}

fn addr(dev: &str, a: Ipv4Net) -> Address {
    Address {
        dev: dev.into(),
        addr: a,
    }
}

fn route(table: u32, dst: Ipv4Net, via: Option<Ipv4Addr>, dev: &str) -> Route {
    Route {
        table,
        dst,
        via,
        dev: dev.into(),
    }
}

fn default_net() -> Ipv4Net {
    Ipv4Net::default()
}

/// For a namespace with bridges: switched frames skip the IP netfilter hooks. With
/// br_netfilter loaded the kernel's default (1) would run every bridged frame through
/// them, which costs throughput and lets IP rules see frames that are only switched.
fn bridge_sysctls() -> [Sysctl; 2] {
    [
        sysctl("net.bridge.bridge-nf-call-iptables", "0"),
        sysctl("net.bridge.bridge-nf-call-arptables", "0"),
    ]
}

pub fn compile(lab: &Lab) -> Network {
    let mut namespaces = Vec::new();
    let mut veths = Vec::new();
    let mut router_ifs = IfNames::default();
    let mut router = empty_ns(lab, ROUTER, Role::VpcRouter, None, true);
    router.sysctls.extend(bridge_sysctls());
    router_ifs.name("", "lo");

    // A bridge per subnet holds the VPC router's .1 for that subnet.
    let bridges: Vec<String> = lab
        .subnets
        .iter()
        .map(|s| router_ifs.name("br-", &s.name))
        .collect();
    for (s, br) in lab.subnets.iter().zip(&bridges) {
        router.bridges.push(br.clone());
        router
            .addresses
            .push(addr(br, net(s.gateway(), s.cidr.prefix_len())));
    }
    for ip in [lab.vpc.dns_server(), RESOLVER_LINK_LOCAL, METADATA] {
        router.addresses.push(addr("lo", net(ip, 32)));
    }

    // Each route table is a kernel table; `iif <subnet bridge>` picks the subnet's table.
    // The `local` route is the VPC's subnets, present in every table.
    for (ti, rt) in lab.route_tables.iter().enumerate() {
        let table = route_table_id(ti);
        for r in &rt.routes {
            match &r.target {
                RouteTarget::Local => {
                    for (s, br) in lab.subnets.iter().zip(&bridges) {
                        router.routes.push(route(table, s.cidr, None, br));
                    }
                }
                RouteTarget::InternetGateway(_) => router.routes.push(route(
                    table,
                    r.destination,
                    Some(ROUTER_IGW.1),
                    ROUTER_IGW_IF,
                )),
                RouteTarget::NatGateway(n) => {
                    let nat = &lab.nat_gateways[*n];
                    router.routes.push(route(
                        table,
                        r.destination,
                        Some(nat.private_ip),
                        &bridges[nat.subnet],
                    ));
                }
            }
        }
    }
    for (i, (s, br)) in lab.subnets.iter().zip(&bridges).enumerate() {
        router.rules.push(PolicyRule {
            priority: 1000 + i as u32,
            iif: br.clone(),
            table: route_table_id(s.route_table),
        });
    }

    // Hosts inside the VPC: instances, NAT gateways, database servers.
    let mut attach =
        |ns: &mut Netns, port_base: &str, subnet: usize, ip: Ipv4Addr, veths: &mut Vec<Veth>| {
            let s = &lab.subnets[subnet];
            ns.addresses
                .push(addr(HOST_IF, net(ip, s.cidr.prefix_len())));
            ns.routes
                .push(route(MAIN_TABLE, default_net(), Some(s.gateway()), HOST_IF));
            veths.push(Veth {
                a: VethEnd {
                    ns: ns.name.clone(),
                    name: HOST_IF.into(),
                    master: None,
                },
                b: VethEnd {
                    ns: router.name.clone(),
                    name: router_ifs.name("p-", port_base),
                    master: Some(bridges[subnet].clone()),
                },
            });
        };
    let mut hosts_in_vpc = Vec::new();
    for n in &lab.nat_gateways {
        let az = &lab.subnets[n.subnet].az;
        let mut ns = empty_ns(lab, &n.name, Role::NatGateway, Some(az), true);
        // AWS NAT gateways drop idle TCP connections after 350 seconds.
        ns.sysctls.push(sysctl(
            "net.netfilter.nf_conntrack_tcp_timeout_established",
            "350",
        ));
        attach(&mut ns, &n.name, n.subnet, n.private_ip, &mut veths);
        ns.firewall = Some(firewall::nat_gateway(lab, &n.name, n.private_ip, HOST_IF));
        ns.flow_log = lab
            .flow_logs_of_subnet(n.subnet)
            .map(|_| Counting::NatGateway);
        hosts_in_vpc.push(ns);
    }
    for i in &lab.instances {
        let az = &lab.subnets[i.subnet].az;
        let mut ns = empty_ns(lab, &i.name, Role::Instance, Some(az), false);
        attach(&mut ns, &i.name, i.subnet, i.private_ip, &mut veths);
        ns.firewall = Some(firewall::security_groups(lab, &i.security_groups, &[]));
        ns.flow_log = lab.flow_logs_of(i).map(|_| Counting::Instance);
        hosts_in_vpc.push(ns);
    }
    for d in &lab.databases {
        for node in d.nodes() {
            let az = &lab.subnets[node.subnet].az;
            let mut ns = empty_ns(lab, &node.name, Role::Database, Some(az), false);
            attach(
                &mut ns,
                &node.name,
                node.subnet,
                node.private_ip,
                &mut veths,
            );
            // The pair replicates to each other and the supervisor health-checks from
            // the VPC router: AWS-internal traffic on RDS, outside the security groups.
            let mut managed: Vec<firewall::Managed> = d
                .nodes()
                .filter(|peer| peer.name != node.name)
                .map(|peer| firewall::Managed {
                    from: peer.private_ip,
                    port: d.port,
                    why: format!(
                        "RDS Multi-AZ replication from {} (AWS-managed, not a security group rule)",
                        peer.name
                    ),
                })
                .collect();
            managed.push(firewall::Managed {
                from: lab.subnets[node.subnet].gateway(),
                port: d.port,
                why: "RDS health checks (AWS-managed, not a security group rule)".into(),
            });
            ns.firewall = Some(firewall::security_groups(lab, &d.security_groups, &managed));
            hosts_in_vpc.push(ns);
        }
    }

    // The internet: a core router with the internet hosts on a bridge, and the lab's
    // resolver. Only the internet gateway connects it to the VPC.
    let mut inet = empty_ns(lab, INTERNET, Role::InternetRouter, None, true);
    inet.sysctls.extend(bridge_sysctls());
    let mut inet_ifs = IfNames::default();
    inet_ifs.name("", INET_HOSTS_BRIDGE);
    inet_ifs.name("", INET_IGW_IF);
    inet.bridges.push(INET_HOSTS_BRIDGE.into());
    let blocks: BTreeSet<Ipv4Net> = lab.internet.iter().map(|h| host_block(h.ip)).collect();
    for b in &blocks {
        inet.addresses
            .push(addr(INET_HOSTS_BRIDGE, net(t::offset(b.network(), 1), 24)));
    }
    inet.addresses.push(addr("lo", net(INTERNET_RESOLVER, 32)));
    let mut internet_hosts = Vec::new();
    for h in &lab.internet {
        let mut ns = empty_ns(lab, &h.name, Role::InternetHost, None, false);
        let block = host_block(h.ip);
        ns.addresses.push(addr(HOST_IF, net(h.ip, 24)));
        ns.routes.push(route(
            MAIN_TABLE,
            default_net(),
            Some(t::offset(block.network(), 1)),
            HOST_IF,
        ));
        veths.push(Veth {
            a: VethEnd {
                ns: ns.name.clone(),
                name: HOST_IF.into(),
                master: None,
            },
            b: VethEnd {
                ns: inet.name.clone(),
                name: inet_ifs.name("h-", &h.name),
                master: Some(INET_HOSTS_BRIDGE.into()),
            },
        });
        internet_hosts.push(ns);
    }

    let mut igw_ns = None;
    if let Some(igw) = &lab.internet_gateway {
        let mut ns = empty_ns(lab, igw, Role::InternetGateway, None, true);
        ns.addresses.push(addr(IGW_VPC_IF, net(ROUTER_IGW.1, 30)));
        ns.addresses.push(addr(IGW_INET_IF, net(IGW_INET.0, 30)));
        ns.routes.push(route(
            MAIN_TABLE,
            lab.vpc.cidr,
            Some(ROUTER_IGW.0),
            IGW_VPC_IF,
        ));
        ns.routes.push(route(
            MAIN_TABLE,
            default_net(),
            Some(IGW_INET.1),
            IGW_INET_IF,
        ));
        ns.firewall = Some(firewall::internet_gateway(lab, igw, IGW_VPC_IF));
        router_ifs.name("", ROUTER_IGW_IF);
        router
            .addresses
            .push(addr(ROUTER_IGW_IF, net(ROUTER_IGW.0, 30)));
        veths.push(Veth {
            a: VethEnd {
                ns: router.name.clone(),
                name: ROUTER_IGW_IF.into(),
                master: None,
            },
            b: VethEnd {
                ns: ns.name.clone(),
                name: IGW_VPC_IF.into(),
                master: None,
            },
        });
        veths.push(Veth {
            a: VethEnd {
                ns: ns.name.clone(),
                name: IGW_INET_IF.into(),
                master: None,
            },
            b: VethEnd {
                ns: inet.name.clone(),
                name: INET_IGW_IF.into(),
                master: None,
            },
        });
        inet.addresses.push(addr(INET_IGW_IF, net(IGW_INET.1, 30)));
        // The internet routes the lab's public addresses to the internet gateway.
        let mut public: BTreeSet<Ipv4Net> = BTreeSet::from([lab.public_ip_pool]);
        for ip in public_addresses(lab) {
            if !lab.public_ip_pool.contains(&ip) {
                public.insert(net(ip, 32));
            }
        }
        for p in public {
            inet.routes
                .push(route(MAIN_TABLE, p, Some(IGW_INET.0), INET_IGW_IF));
        }
        igw_ns = Some(ns);
    }

    let router_addrs = router.addresses.iter().map(|a| a.addr.addr()).collect();
    router.firewall = firewall::network_acls(lab, &bridges, router_addrs);

    // Order matters to `apply` only for links: both ends' namespaces exist first.
    namespaces.push(router);
    namespaces.extend(igw_ns);
    namespaces.push(inet);
    namespaces.extend(hosts_in_vpc);
    namespaces.extend(internet_hosts);

    Network {
        namespaces,
        veths,
        route_tables: console_route_tables(lab),
    }
}

/// Every public address of the lab: auto-assigned, Elastic, publicly accessible databases.
pub fn public_addresses(lab: &Lab) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = lab.elastic_ips.iter().map(|e| e.address).collect();
    out.extend(lab.instances.iter().filter_map(|i| i.public_ip.address()));
    for d in &lab.databases {
        out.extend(d.nodes().filter_map(|n| n.public_ip));
    }
    out.sort();
    out.dedup();
    out
}

fn console_route_tables(lab: &Lab) -> Vec<ConsoleRouteTable> {
    lab.route_tables
        .iter()
        .enumerate()
        .map(|(i, rt)| ConsoleRouteTable {
            name: rt.name.clone(),
            id: aws_id("rtb", &lab.name, &rt.name),
            table: route_table_id(i),
            subnets: lab
                .subnets
                .iter()
                .filter(|s| s.route_table == i)
                .map(|s| s.name.clone())
                .collect(),
            routes: rt
                .routes
                .iter()
                .map(|r| {
                    let target = match &r.target {
                        RouteTarget::Local => "local".to_string(),
                        RouteTarget::InternetGateway(n) => {
                            format!("{} ({n})", aws_id("igw", &lab.name, n))
                        }
                        RouteTarget::NatGateway(n) => {
                            let name = &lab.nat_gateways[*n].name;
                            format!("{} ({name})", aws_id("nat", &lab.name, name))
                        }
                    };
                    (r.destination, target)
                })
                .collect(),
        })
        .collect()
}

/// The nodes that run programs, with the files that make them look like EC2 hosts.
pub fn hosts(lab: &Lab) -> Vec<Host> {
    let search = lab.internal_domain();
    let mut out = Vec::new();
    for i in &lab.instances {
        out.push(Host {
            node: i.name.clone(),
            ns: namespace_name(&lab.name, &i.name),
            role: Role::Instance,
            hostname: t::hostname_for(i.private_ip),
            az: Some(lab.subnets[i.subnet].az.clone()),
            private_ip: i.private_ip,
            public_ip: i.public_ip.address(),
            instance_id: Some(i.id.clone()),
            nameserver: lab.vpc.dns_server(),
            search: Some(search.clone()),
            services: i.services.clone(),
            database: None,
        });
    }
    for d in &lab.databases {
        for n in d.nodes() {
            out.push(Host {
                node: n.name.clone(),
                ns: namespace_name(&lab.name, &n.name),
                role: Role::Database,
                hostname: t::hostname_for(n.private_ip),
                az: Some(lab.subnets[n.subnet].az.clone()),
                private_ip: n.private_ip,
                public_ip: n.public_ip,
                instance_id: None,
                nameserver: lab.vpc.dns_server(),
                search: Some(search.clone()),
                services: vec![],
                database: Some(d.name.clone()),
            });
        }
    }
    for h in &lab.internet {
        out.push(Host {
            node: h.name.clone(),
            ns: namespace_name(&lab.name, &h.name),
            role: Role::InternetHost,
            hostname: h.name.clone(),
            az: None,
            private_ip: h.ip,
            public_ip: Some(h.ip),
            instance_id: None,
            nameserver: INTERNET_RESOLVER,
            search: Some(INTERNET_DOMAIN.into()),
            services: h.services.clone(),
            database: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::topology::{Source, load};

    #[test]
    fn every_namespace_with_a_bridge_keeps_switched_frames_out_of_ip_netfilter() {
        let plan = crate::plan::compile(&load(Source::Builtin, None).unwrap().lab);
        let bridged: Vec<_> = plan
            .namespaces
            .iter()
            .filter(|n| !n.bridges.is_empty())
            .collect();
        assert!(bridged.len() >= 2, "the VPC router and the internet");
        for n in bridged {
            for key in [
                "net.bridge.bridge-nf-call-iptables",
                "net.bridge.bridge-nf-call-arptables",
            ] {
                assert!(
                    n.sysctls.iter().any(|s| s.key == key && s.value == "0"),
                    "{} lacks {key}=0",
                    n.node
                );
            }
        }
    }
}
