//! nftables rulesets as data: the internet gateway's 1:1 NAT, the NAT gateway's port
//! translation, each host's stateful security groups and the VPC router's stateless
//! network ACLs.
//!
//! The rules are a small typed IR rather than nft text so the plan can be compared in
//! tests, rendered like `nft list ruleset` for people, and turned into an nftables JSON
//! batch by the kernel layer. Every rule has a comment saying which AWS device and rule it
//! stands for; `trace` reads those comments back to explain where a packet went.

use super::flowlogs::{FlowSet, Key, acl_rejection_sets};
use crate::topology::{AclAction, AclRule, Lab, NetworkAcl, Peer, Protocol, SgRule};
use ipnet::Ipv4Net;
use serde::Serialize;
use std::fmt;
use std::net::Ipv4Addr;

/// Every lab table has this name, so `down` and the leak checks recognise it.
pub const TABLE: &str = "vpclab";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Table {
    pub family: Family,
    /// A stateless table keeps no connection state: its `Snat`/`Dnat` rules rewrite the
    /// address of every packet they match (nft payload mangling in filter chains) instead
    /// of setting up a conntrack mapping on a connection's first packet. The internet
    /// gateway is one, as AWS's is: a fixed 1:1 mapping needs no memory, and leaving
    /// conntrack out of that namespace keeps the NAT path close to plain forwarding.
    pub stateless: bool,
    pub sets: Vec<Set>,
    /// Sets that count packets per flow, for VPC flow logs (`plan::flowlogs`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flow_sets: Vec<FlowSet>,
    pub chains: Vec<Chain>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ip,
    Inet,
}

/// A named set of IPv4 addresses (a security group's members, mapped private IPs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Set {
    pub name: String,
    pub elements: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chain {
    pub name: String,
    /// `None`: a regular chain, which packets reach only by a `goto` of another chain's
    /// rule (its policy is then meaningless).
    pub hook: Option<Hook>,
    pub policy: Policy,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }

    /// NAT chains hook prerouting (destination NAT) and postrouting (source NAT).
    pub fn is_nat(self) -> bool {
        matches!(self, Hook::Prerouting | Hook::Postrouting)
    }

    /// The standard priorities: dstnat -100, filter 0, srcnat 100.
    pub fn priority(self) -> i32 {
        match self {
            Hook::Prerouting => -100,
            Hook::Postrouting => 100,
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Accept,
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub verdict: Verdict,
    /// Says which AWS device and rule this is; shown by `plan` and `trace`.
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "match", content = "value", rename_all = "snake_case")]
pub enum Match {
    Iif(String),
    NotIif(String),
    Oif(String),
    Saddr(Addr),
    Daddr(Addr),
    NotSaddr(Addr),
    NotDaddr(Addr),
    /// `meta l4proto tcp|udp|icmp`
    Proto(L4),
    /// `tcp dport 22` or a range.
    Dport(L4, u16, u16),
    CtState(Vec<CtState>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Addr {
    Net(Ipv4Net),
    /// A named set of the table (`@name`).
    Set(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum L4 {
    Tcp,
    Udp,
    Icmp,
}

impl L4 {
    pub fn as_str(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
            L4::Icmp => "icmp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CtState {
    New,
    Established,
    Related,
    Invalid,
}

impl CtState {
    pub fn as_str(self) -> &'static str {
        match self {
            CtState::New => "new",
            CtState::Established => "established",
            CtState::Related => "related",
            CtState::Invalid => "invalid",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Accept,
    Drop,
    /// Rewrite the source address, optionally choosing the source port from a range.
    Snat {
        addr: Ipv4Addr,
        ports: Option<(u16, u16)>,
    },
    Dnat {
        addr: Ipv4Addr,
    },
    /// Go on in this regular chain of the table, never to come back.
    Goto(String),
    /// Go on in the chain this map gives for the packet's input (or output) device; a
    /// packet of a device the map lacks goes on with the next rule.
    DeviceMap {
        output: bool,
        chains: Vec<(String, String)>,
    },
    /// Add the packet's flow to this flow set of the table, counting it, and drop it.
    RecordDrop(String),
}

fn host(ip: Ipv4Addr) -> Addr {
    Addr::Net(Ipv4Net::new(ip, 32).unwrap())
}

impl Rule {
    /// Whether the rule has a counter of its own: every rule that decides does (`trace`
    /// reads them to say which rule saw a packet); a device map only leads on, and a rule
    /// that records a flow counts in its set element.
    pub fn counts(&self) -> bool {
        !matches!(
            self.verdict,
            Verdict::RecordDrop(_) | Verdict::DeviceMap { .. }
        )
    }
}

fn rule(matches: Vec<Match>, verdict: Verdict, comment: impl Into<String>) -> Rule {
    Rule {
        matches,
        verdict,
        comment: comment.into(),
    }
}

fn stateful() -> Rule {
    rule(
        vec![Match::CtState(vec![CtState::Established, CtState::Related])],
        Verdict::Accept,
        "stateful: replies to allowed traffic return",
    )
}

/// The internet gateway: stateless 1:1 NAT for every public IP and Elastic IP (the
/// write-up's steps (2) and (4)): every packet from a mapped private address leaves with its
/// public address and every packet to a public address enters with the private one, so
/// replies need no connection table. Nothing else gets through.
pub fn internet_gateway(lab: &Lab, igw: &str, vpc_if: &str) -> Table {
    let mut mappings: Vec<(Ipv4Addr, Ipv4Addr, String)> = Vec::new();
    for i in &lab.instances {
        if let Some(public) = i.public_ip.address() {
            mappings.push((i.private_ip, public, i.name.clone()));
        }
    }
    for n in &lab.nat_gateways {
        mappings.push((
            n.private_ip,
            lab.elastic_ips[n.elastic_ip].address,
            n.name.clone(),
        ));
    }
    for d in &lab.databases {
        for node in d.nodes() {
            if let Some(public) = node.public_ip {
                mappings.push((node.private_ip, public, node.name.clone()));
            }
        }
    }
    let dnat = mappings
        .iter()
        .map(|(private, public, who)| {
            rule(
                vec![Match::Daddr(host(*public))],
                Verdict::Dnat { addr: *private },
                format!("{igw}: static NAT {public} -> {private} ({who})"),
            )
        })
        .collect();
    let snat = mappings
        .iter()
        .map(|(private, public, who)| {
            rule(
                vec![Match::Saddr(host(*private))],
                Verdict::Snat {
                    addr: *public,
                    ports: None,
                },
                format!("{igw}: static NAT {private} -> {public} ({who})"),
            )
        })
        .collect();
    let vpc = Addr::Net(lab.vpc.cidr);
    Table {
        family: Family::Ip,
        stateless: true,
        sets: vec![Set {
            name: "mapped".into(),
            elements: mappings.iter().map(|m| m.0).collect(),
        }],
        flow_sets: vec![],
        chains: vec![
            Chain {
                name: "prerouting".into(),
                hook: Some(Hook::Prerouting),
                policy: Policy::Accept,
                rules: dnat,
            },
            Chain {
                name: "forward".into(),
                hook: Some(Hook::Forward),
                policy: Policy::Accept,
                rules: vec![
                    rule(
                        vec![
                            Match::Iif(vpc_if.into()),
                            Match::NotSaddr(Addr::Set("mapped".into())),
                        ],
                        Verdict::Drop,
                        format!(
                            "{igw}: source has no public IP (IGW_PUBLIC_IP_ASSOCIATION_FOR_EGRESS)"
                        ),
                    ),
                    rule(
                        vec![Match::NotIif(vpc_if.into()), Match::NotDaddr(vpc)],
                        Verdict::Drop,
                        format!("{igw}: no instance has this public IP (no NAT mapping)"),
                    ),
                ],
            },
            Chain {
                name: "postrouting".into(),
                hook: Some(Hook::Postrouting),
                policy: Policy::Accept,
                rules: snat,
            },
        ],
    }
}

/// The NAT gateway: private sources leave as the gateway's own private IP with a port
/// from 1024-65535 (the write-up's step (2)); nothing may start from the internet.
pub fn nat_gateway(lab: &Lab, name: &str, private_ip: Ipv4Addr, dev: &str) -> Table {
    let vpc = Addr::Net(lab.vpc.cidr);
    let outbound = || {
        vec![
            Match::Oif(dev.into()),
            Match::Saddr(vpc.clone()),
            Match::NotDaddr(vpc.clone()),
        ]
    };
    // TCP and UDP get a source port from 1024-65535; ICMP has no ports, its echo id is
    // translated instead.
    let mut pat: Vec<Rule> = [L4::Tcp, L4::Udp]
        .into_iter()
        .map(|p| {
            let mut m = outbound();
            m.push(Match::Proto(p));
            rule(
                m,
                Verdict::Snat {
                    addr: private_ip,
                    ports: Some((1024, 65535)),
                },
                format!(
                    "{name}: port address translation to {private_ip} ({})",
                    p.as_str()
                ),
            )
        })
        .collect();
    pat.push(rule(
        outbound(),
        Verdict::Snat {
            addr: private_ip,
            ports: None,
        },
        format!("{name}: address translation to {private_ip} (icmp)"),
    ));
    Table {
        family: Family::Ip,
        stateless: false,
        sets: vec![],
        flow_sets: vec![],
        chains: vec![
            Chain {
                name: "input".into(),
                hook: Some(Hook::Input),
                policy: Policy::Drop,
                rules: vec![stateful()],
            },
            Chain {
                name: "forward".into(),
                hook: Some(Hook::Forward),
                policy: Policy::Drop,
                rules: vec![
                    stateful(),
                    rule(
                        vec![
                            Match::Iif(dev.into()),
                            Match::Saddr(vpc.clone()),
                            Match::NotDaddr(vpc.clone()),
                            Match::CtState(vec![CtState::New]),
                        ],
                        Verdict::Accept,
                        format!("{name}: new connections from the VPC to the internet"),
                    ),
                ],
            },
            Chain {
                name: "postrouting".into(),
                hook: Some(Hook::Postrouting),
                policy: Policy::Accept,
                rules: pat,
            },
        ],
    }
}

/// Addresses always reachable from an instance whatever its security groups say, as on
/// AWS: the Amazon DNS server and the instance metadata service.
pub fn unfiltered(lab: &Lab) -> Vec<Ipv4Addr> {
    vec![
        lab.vpc.dns_server(),
        Ipv4Addr::new(169, 254, 169, 253),
        Ipv4Addr::new(169, 254, 169, 254),
    ]
}

/// Traffic AWS itself manages, which security groups never see (RDS replication between
/// the Multi-AZ pair, the service's health checks): source, port, why.
pub struct Managed {
    pub from: Ipv4Addr,
    pub port: u16,
    pub why: String,
}

/// A host's security groups, applied in its own namespace: stateful, allow-only.
pub fn security_groups(lab: &Lab, groups: &[usize], managed: &[Managed]) -> Table {
    let mut sets = Vec::new();
    let mut inbound = vec![
        stateful(),
        rule(
            vec![Match::CtState(vec![CtState::Invalid])],
            Verdict::Drop,
            "stateful: invalid packets",
        ),
        rule(vec![Match::Iif("lo".into())], Verdict::Accept, "loopback"),
    ];
    for m in managed {
        inbound.push(rule(
            vec![
                Match::Saddr(host(m.from)),
                Match::Dport(L4::Tcp, m.port, m.port),
            ],
            Verdict::Accept,
            m.why.clone(),
        ));
    }
    let mut outbound = vec![
        stateful(),
        rule(vec![Match::Oif("lo".into())], Verdict::Accept, "loopback"),
    ];
    for ip in unfiltered(lab) {
        outbound.push(rule(
            vec![Match::Daddr(host(ip))],
            Verdict::Accept,
            "Amazon DNS and instance metadata are not filtered by security groups",
        ));
    }
    let names: Vec<&str> = groups
        .iter()
        .map(|g| lab.security_groups[*g].name.as_str())
        .collect();
    for &g in groups {
        let sg = &lab.security_groups[g];
        for (list, out, dir) in [
            (&sg.inbound, &mut inbound, "inbound"),
            (&sg.outbound, &mut outbound, "outbound"),
        ] {
            for r in list {
                let peer = peer_addr(lab, &r.peer, &mut sets);
                let mut m = Vec::new();
                m.push(if dir == "inbound" {
                    Match::Saddr(peer)
                } else {
                    Match::Daddr(peer)
                });
                m.extend(l4_matches(r));
                out.push(rule(m, Verdict::Accept, sg_comment(lab, &sg.name, dir, r)));
            }
        }
    }
    let who = names.join(", ");
    inbound.push(rule(
        vec![],
        Verdict::Drop,
        format!("{who}: no inbound rule allows this"),
    ));
    outbound.push(rule(
        vec![],
        Verdict::Drop,
        format!("{who}: no outbound rule allows this"),
    ));
    Table {
        family: Family::Inet,
        stateless: false,
        sets,
        flow_sets: vec![],
        chains: vec![
            Chain {
                name: "input".into(),
                hook: Some(Hook::Input),
                policy: Policy::Drop,
                rules: inbound,
            },
            Chain {
                name: "output".into(),
                hook: Some(Hook::Output),
                policy: Policy::Drop,
                rules: outbound,
            },
        ],
    }
}

/// The set of the VPC router's own addresses in its ACL table.
const ROUTER_SET: &str = "router";

/// The base chain of the network ACLs' outbound rules; each guarded subnet's rules are in
/// a chain of their own named after it (`acl-outbound-private-2a`).
pub const ACL_OUTBOUND: &str = "acl-outbound";
/// The base chain of the network ACLs' inbound rules (`acl-inbound-private-2a`).
pub const ACL_INBOUND: &str = "acl-inbound";

/// The chain of a subnet's outbound (or inbound) ACL rules.
pub fn acl_chain(inbound: bool, subnet: &str) -> String {
    let base = if inbound { ACL_INBOUND } else { ACL_OUTBOUND };
    format!("{base}-{subnet}")
}

/// Whether a chain of the router's ACL table holds one subnet's ACL rules (or is the base
/// chain that leads to them) in the given direction.
pub fn is_acl_chain(chain: &str, inbound: bool) -> bool {
    let base = if inbound { ACL_INBOUND } else { ACL_OUTBOUND };
    chain == base || chain.starts_with(&format!("{base}-"))
}

/// The chain an ACL's denying rules hand a packet to when flow logs are on: it adds the
/// packet's flow to a rejection set and drops it (`plan::flowlogs`).
pub fn rejection_chain(inbound: bool) -> &'static str {
    if inbound {
        "rejected-inbound"
    } else {
        "rejected-outbound"
    }
}

/// The network ACLs, in the VPC router's namespace (`bridges[i]` is subnet `i`'s bridge),
/// or `None` when every subnet has the VPC's default ACL, which allows everything.
///
/// Stateless, as on AWS: no rule looks at connection state, so a reply is checked like
/// any other packet and the router keeps no connection table. Traffic leaving subnet X
/// meets X's outbound rules in `prerouting`, before the route lookup (AWS's order: the
/// source subnet's ACL, then the route table); traffic entering subnet Y meets Y's
/// inbound rules in `forward`, once the route picked Y's bridge. Accepting in the first
/// chain passes the packet on to the second; a drop in either is final. Traffic between
/// two instances of one subnet is switched by its bridge and never reaches these IP hooks,
/// and traffic the router answers itself (the Amazon DNS server, instance metadata, the
/// subnet gateways, `router_addrs`) is let through before any ACL rule, as AWS never
/// filters it; what the router sends leaves through `output`, which has no chain here.
///
/// Each base chain sends a packet straight to the rules of its subnet with one map lookup
/// on the bridge's name, so a packet meets only the rules of the ACL that guards it, never
/// those of the other subnets. With flow logs on, what a rule denies goes through a chain
/// that counts it per flow before dropping it, for the REJECT records.
pub fn network_acls(lab: &Lab, bridges: &[String], router_addrs: Vec<Ipv4Addr>) -> Option<Table> {
    let guarded: Vec<(usize, &NetworkAcl)> = (0..lab.subnets.len())
        .filter_map(|i| lab.network_acl_of(i).map(|a| (i, a)))
        .collect();
    if guarded.is_empty() {
        return None;
    }
    let record = lab.has_flow_logs();
    let mut subnet_chains = Vec::new();
    let mut maps: [Vec<(String, String)>; 2] = [vec![], vec![]];
    for inbound_dir in [false, true] {
        for (subnet, acl) in &guarded {
            let s = &lab.subnets[*subnet].name;
            let dir = if inbound_dir { "inbound" } else { "outbound" };
            let deny = || match record {
                true => Verdict::Goto(rejection_chain(inbound_dir).into()),
                false => Verdict::Drop,
            };
            let list = if inbound_dir {
                &acl.inbound
            } else {
                &acl.outbound
            };
            let mut rules: Vec<Rule> = list
                .iter()
                .map(|r| {
                    let mut m = vec![];
                    if r.peer.prefix_len() > 0 {
                        m.push(if inbound_dir {
                            Match::Saddr(Addr::Net(r.peer))
                        } else {
                            Match::Daddr(Addr::Net(r.peer))
                        });
                    }
                    m.extend(l4(r.protocol, r.ports));
                    let verdict = match r.action {
                        AclAction::Allow => Verdict::Accept,
                        AclAction::Deny => deny(),
                    };
                    rule(m, verdict, acl_comment(&acl.name, dir, s, r, inbound_dir))
                })
                .collect();
            rules.push(rule(
                vec![],
                deny(),
                format!(
                    "network ACL {} {dir} rule * ({s}): deny all traffic",
                    acl.name
                ),
            ));
            let name = acl_chain(inbound_dir, s);
            maps[usize::from(inbound_dir)].push((bridges[*subnet].clone(), name.clone()));
            subnet_chains.push(Chain {
                name,
                hook: None,
                policy: Policy::Accept,
                rules,
            });
        }
    }
    let [outbound_map, inbound_map] = maps;
    let mut chains = vec![
        Chain {
            name: ACL_OUTBOUND.into(),
            hook: Some(Hook::Prerouting),
            policy: Policy::Accept,
            rules: vec![
                rule(
                    vec![Match::Daddr(Addr::Set(ROUTER_SET.into()))],
                    Verdict::Accept,
                    "VPC router (Amazon DNS, instance metadata, gateways): never filtered by network ACLs",
                ),
                rule(
                    vec![],
                    Verdict::DeviceMap {
                        output: false,
                        chains: outbound_map,
                    },
                    "network ACLs: the outbound rules of the subnet the packet leaves",
                ),
            ],
        },
        Chain {
            name: ACL_INBOUND.into(),
            hook: Some(Hook::Forward),
            policy: Policy::Accept,
            rules: vec![rule(
                vec![],
                Verdict::DeviceMap {
                    output: true,
                    chains: inbound_map,
                },
                "network ACLs: the inbound rules of the subnet the packet enters",
            )],
        },
    ];
    chains.extend(subnet_chains);
    let mut flow_sets = Vec::new();
    if record {
        for inbound_dir in [false, true] {
            let sets = acl_rejection_sets(inbound_dir);
            let mut rules: Vec<Rule> = sets
                .iter()
                .flat_map(|set| {
                    let protocols: Vec<Vec<Match>> = match set.key {
                        Key::Ports => {
                            vec![vec![Match::Proto(L4::Tcp)], vec![Match::Proto(L4::Udp)]]
                        }
                        Key::PortsVia(p) => vec![vec![Match::Proto(p)]],
                        Key::NoPorts | Key::NoPortsVia => vec![vec![]],
                    };
                    protocols.into_iter().map(|m| {
                        rule(
                            m,
                            Verdict::RecordDrop(set.name.clone()),
                            "flow logs: count the rejected flow",
                        )
                    })
                })
                .collect();
            // A set that is full adds nothing and so does not drop either: this does.
            rules.push(rule(
                vec![],
                Verdict::Drop,
                "flow logs: rejected (too many flows to count)",
            ));
            chains.push(Chain {
                name: rejection_chain(inbound_dir).into(),
                hook: None,
                policy: Policy::Accept,
                rules,
            });
            flow_sets.extend(sets);
        }
    }
    Some(Table {
        family: Family::Ip,
        stateless: true,
        sets: vec![Set {
            name: ROUTER_SET.into(),
            elements: router_addrs,
        }],
        flow_sets,
        chains,
    })
}

/// `network ACL private-acl inbound rule 100 (private-2a): allow tcp 22 from 10.0.0.0/16`:
/// `trace` reads the ACL's name and the rule number back from it.
fn acl_comment(acl: &str, dir: &str, subnet: &str, r: &AclRule, inbound: bool) -> String {
    let rest = r.describe(inbound);
    let rest = rest
        .strip_prefix(&format!("{} ", r.number))
        .unwrap_or(&rest);
    format!(
        "network ACL {acl} {dir} rule {} ({subnet}): {rest}",
        r.number
    )
}

fn peer_addr(lab: &Lab, peer: &Peer, sets: &mut Vec<Set>) -> Addr {
    match peer {
        Peer::Cidr(net) => Addr::Net(*net),
        Peer::MyIp(ip) => host(*ip),
        Peer::Group(g) => {
            let name = format!("sg{g}");
            if !sets.iter().any(|s| s.name == name) {
                sets.push(Set {
                    name: name.clone(),
                    elements: lab.members_of(*g),
                });
            }
            Addr::Set(name)
        }
    }
}

fn l4_matches(r: &SgRule) -> Vec<Match> {
    l4(r.protocol, r.ports)
}

/// A rule's protocol and destination ports as matches (none for all traffic).
fn l4(protocol: Protocol, ports: Option<(u16, u16)>) -> Vec<Match> {
    let l4 = match protocol {
        Protocol::Tcp => L4::Tcp,
        Protocol::Udp => L4::Udp,
        Protocol::Icmp => L4::Icmp,
        Protocol::All => return vec![],
    };
    match ports {
        Some((0, 65535)) | None => vec![Match::Proto(l4)],
        Some((a, b)) => vec![Match::Dport(l4, a, b)],
    }
}

fn sg_comment(lab: &Lab, sg: &str, dir: &str, r: &SgRule) -> String {
    let peer = match &r.peer {
        Peer::Cidr(n) => n.to_string(),
        Peer::MyIp(ip) => format!("my IP {ip}"),
        Peer::Group(g) => lab.security_groups[*g].name.clone(),
    };
    let ports = match r.ports {
        Some((a, b)) if a == b => format!(" {a}"),
        Some((0, 65535)) | None => String::new(),
        Some((a, b)) => format!(" {a}-{b}"),
    };
    let word = if dir == "inbound" { "from" } else { "to" };
    format!("{sg} {dir}: {}{ports} {word} {peer}", r.label)
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Net(n) if n.prefix_len() == 32 => write!(f, "{}", n.addr()),
            Addr::Net(n) => write!(f, "{n}"),
            Addr::Set(s) => write!(f, "@{s}"),
        }
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::Iif(n) => write!(f, "iifname \"{n}\""),
            Match::NotIif(n) => write!(f, "iifname != \"{n}\""),
            Match::Oif(n) => write!(f, "oifname \"{n}\""),
            Match::Saddr(a) => write!(f, "ip saddr {a}"),
            Match::Daddr(a) => write!(f, "ip daddr {a}"),
            Match::NotSaddr(a) => write!(f, "ip saddr != {a}"),
            Match::NotDaddr(a) => write!(f, "ip daddr != {a}"),
            Match::Proto(p) => write!(f, "meta l4proto {}", p.as_str()),
            Match::Dport(p, a, b) if a == b => write!(f, "{} dport {a}", p.as_str()),
            Match::Dport(p, a, b) => write!(f, "{} dport {a}-{b}", p.as_str()),
            Match::CtState(s) => write!(
                f,
                "ct state {}",
                s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
            ),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Snat { addr, ports: None } => write!(f, "snat to {addr}"),
            Verdict::Snat {
                addr,
                ports: Some((a, b)),
            } => write!(f, "snat to {addr}:{a}-{b}"),
            Verdict::Dnat { addr } => write!(f, "dnat to {addr}"),
            Verdict::Goto(chain) => write!(f, "goto {chain}"),
            Verdict::DeviceMap { output, chains } => {
                let map: Vec<String> = chains
                    .iter()
                    .map(|(dev, chain)| format!("\"{dev}\" : goto {chain}"))
                    .collect();
                let key = if *output { "oifname" } else { "iifname" };
                write!(f, "{key} vmap {{ {} }}", map.join(", "))
            }
            Verdict::RecordDrop(set) => write!(f, "add @{set} drop"),
        }
    }
}

impl Table {
    /// One rule as `nft list table` shows it: a translation in a stateless table is a
    /// payload rewrite (`ip saddr set …`), in a stateful one a NAT verdict (`snat to …`).
    pub fn rule_text(&self, r: &Rule) -> String {
        let mut s = String::new();
        for m in &r.matches {
            s += &format!("{m} ");
        }
        let action = match (&r.verdict, self.stateless) {
            (Verdict::Snat { addr, .. }, true) => format!("ip saddr set {addr}"),
            (Verdict::Dnat { addr }, true) => format!("ip daddr set {addr}"),
            (Verdict::RecordDrop(set), _) => match self.flow_sets.iter().find(|f| &f.name == set) {
                Some(f) => format!("{} drop", f.add_statement()),
                None => format!("add @{set} drop"),
            },
            (v, _) => v.to_string(),
        };
        if r.counts() {
            s += "counter ";
        }
        s + &format!("{action} comment \"{}\"", r.comment)
    }

    /// The nftables chain type: NAT chains only where conntrack does the translating.
    pub fn chain_type(&self, c: &Chain) -> &'static str {
        if c.hook.is_some_and(Hook::is_nat) && !self.stateless {
            "nat"
        } else {
            "filter"
        }
    }
}

/// Renders like `nft list table`, so people can compare the plan with the kernel.
impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let family = match self.family {
            Family::Ip => "ip",
            Family::Inet => "inet",
        };
        writeln!(f, "table {family} {TABLE} {{")?;
        for s in &self.sets {
            let elems: Vec<String> = s.elements.iter().map(|e| e.to_string()).collect();
            writeln!(f, "\tset {} {{", s.name)?;
            writeln!(f, "\t\ttype ipv4_addr")?;
            if !elems.is_empty() {
                writeln!(f, "\t\telements = {{ {} }}", elems.join(", "))?;
            }
            writeln!(f, "\t}}")?;
        }
        for s in &self.flow_sets {
            writeln!(f, "\t{}", s.declaration())?;
        }
        for c in &self.chains {
            let kind = self.chain_type(c);
            let policy = match c.policy {
                Policy::Accept => "accept",
                Policy::Drop => "drop",
            };
            writeln!(f, "\tchain {} {{", c.name)?;
            if let Some(hook) = c.hook {
                writeln!(
                    f,
                    "\t\ttype {kind} hook {} priority {}; policy {policy};",
                    hook.as_str(),
                    hook.priority()
                )?;
            }
            for r in &c.rules {
                writeln!(f, "\t\t{}", self.rule_text(r))?;
            }
            writeln!(f, "\t}}")?;
        }
        write!(f, "}}")
    }
}

#[cfg(test)]
mod tests {
    use crate::topology::{Source, load};

    fn plan() -> crate::plan::Plan {
        crate::plan::compile(&load(Source::Builtin, None).unwrap().lab)
    }

    /// The built-in lab with the example ACL on its private subnets, and `vpc_extra`
    /// under its `vpc:`.
    fn plan_with_acl(vpc_extra: &str) -> crate::plan::Plan {
        let text = crate::topology::BUILTIN_YAML
            .replacen(
                "  cidr: 10.0.0.0/16\n",
                &format!("  cidr: 10.0.0.0/16\n{vpc_extra}"),
                1,
            )
            .replacen(
                "instances:\n",
                "network_acls:
  private-acl:
    subnets: [private-2a, private-2c]
    inbound:
      - { rule: 200, protocol: tcp, port: 1024-65535, source: 0.0.0.0/0, action: allow }
      - { rule: 100, type: ssh, source: 10.0.0.0/16, action: allow }
      - { rule: 150, protocol: icmp, source: 10.0.9.0/24, action: deny }
    outbound:
      - { rule: 100, protocol: all, destination: 0.0.0.0/0, action: allow }
instances:\n",
                1,
            );
        let (lab, d) = crate::topology::check(&text, &Source::Builtin, None);
        let lab = lab.unwrap_or_else(|| panic!("{:?}", d.errors().collect::<Vec<_>>()));
        crate::plan::compile(&lab)
    }

    #[test]
    fn the_built_in_lab_has_no_acl_table_in_its_router() {
        assert!(plan().netns("vpc-router").unwrap().firewall.is_none());
    }

    #[test]
    fn network_acls_are_stateless_numbered_chains_in_the_router() {
        let p = plan_with_acl("");
        let router = p.netns("vpc-router").unwrap();
        let t = router.firewall.as_ref().unwrap();
        assert!(t.stateless);
        let text = t.to_string();
        assert!(!text.contains("ct state"), "{text}");
        let rules = |chain: &str| -> Vec<String> {
            let c = t.chains.iter().find(|c| c.name == chain).unwrap();
            c.rules.iter().map(|r| t.rule_text(r)).collect()
        };
        let br = |s: &str| {
            router
                .bridges
                .iter()
                .find(|b| b.contains(s))
                .unwrap()
                .clone()
        };
        let (a, c) = (br("private-2a"), br("private-2c"));
        // Leaving: before the route lookup, the router's own addresses first, then one
        // lookup of the bridge leads to the rules of that subnet alone.
        assert_eq!(
            rules("acl-outbound"),
            [
                "ip daddr @router counter accept comment \"VPC router (Amazon DNS, instance metadata, gateways): never filtered by network ACLs\"".to_string(),
                format!("iifname vmap {{ \"{a}\" : goto acl-outbound-private-2a, \"{c}\" : goto acl-outbound-private-2c }} comment \"network ACLs: the outbound rules of the subnet the packet leaves\""),
            ]
        );
        assert_eq!(
            rules("acl-outbound-private-2c"),
            [
                "counter accept comment \"network ACL private-acl outbound rule 100 (private-2c): allow all traffic to 0.0.0.0/0\"",
                "counter drop comment \"network ACL private-acl outbound rule * (private-2c): deny all traffic\"",
            ]
        );
        // Entering: lowest number first, a deny before the final `*`.
        assert_eq!(
            rules("acl-inbound-private-2a"),
            [
                "ip saddr 10.0.0.0/16 tcp dport 22 counter accept comment \"network ACL private-acl inbound rule 100 (private-2a): allow tcp 22 from 10.0.0.0/16\"",
                "ip saddr 10.0.9.0/24 meta l4proto icmp counter drop comment \"network ACL private-acl inbound rule 150 (private-2a): deny icmp from 10.0.9.0/24\"",
                "tcp dport 1024-65535 counter accept comment \"network ACL private-acl inbound rule 200 (private-2a): allow tcp 1024-65535 from 0.0.0.0/0\"",
                "counter drop comment \"network ACL private-acl inbound rule * (private-2a): deny all traffic\"",
            ]
        );
        let chain = |n: &str| t.chains.iter().find(|c| c.name == n).unwrap();
        assert_eq!(chain("acl-outbound").hook, Some(super::Hook::Prerouting));
        assert_eq!(chain("acl-inbound").hook, Some(super::Hook::Forward));
        assert_eq!(chain("acl-inbound-private-2c").hook, None);
        assert_eq!(t.chains.len(), 6);
        assert!(t.chains.iter().all(|c| t.chain_type(c) == "filter"));
        // Without flow logs nothing counts the rejected flows.
        assert!(t.flow_sets.is_empty());
        // Every address the router answers on is exempt: DNS, metadata, each gateway.
        let exempt: Vec<String> = t.sets[0].elements.iter().map(|e| e.to_string()).collect();
        for ip in [
            "10.0.0.2",
            "169.254.169.254",
            "169.254.169.253",
            "10.0.1.1",
            "10.0.3.1",
        ] {
            assert!(exempt.contains(&ip.to_string()), "{ip} in {exempt:?}");
        }
    }

    #[test]
    fn with_flow_logs_what_an_acl_denies_is_counted_per_flow_before_it_is_dropped() {
        let p = plan_with_acl("  flow_logs: { interval: 60 }\n");
        let t = p.netns("vpc-router").unwrap().firewall.as_ref().unwrap();
        let chain = |n: &str| t.chains.iter().find(|c| c.name == n).unwrap();
        let denies: Vec<String> = chain("acl-inbound-private-2a")
            .rules
            .iter()
            .filter(|r| r.comment.contains("deny"))
            .map(|r| t.rule_text(r))
            .collect();
        assert_eq!(
            denies,
            [
                "ip saddr 10.0.9.0/24 meta l4proto icmp counter goto rejected-inbound comment \"network ACL private-acl inbound rule 150 (private-2a): deny icmp from 10.0.9.0/24\"",
                "counter goto rejected-inbound comment \"network ACL private-acl inbound rule * (private-2a): deny all traffic\"",
            ]
        );
        let recording: Vec<String> = chain("rejected-inbound")
            .rules
            .iter()
            .map(|r| t.rule_text(r))
            .collect();
        assert_eq!(
            recording,
            [
                "meta l4proto tcp add @acl-inbound-rejected-tcp { ip saddr . ip daddr . th sport . th dport . rt ip nexthop counter } drop comment \"flow logs: count the rejected flow\"",
                "meta l4proto udp add @acl-inbound-rejected-udp { ip saddr . ip daddr . th sport . th dport . rt ip nexthop counter } drop comment \"flow logs: count the rejected flow\"",
                "add @acl-inbound-rejected-noport { ip saddr . ip daddr . meta l4proto . rt ip nexthop counter } drop comment \"flow logs: count the rejected flow\"",
                "counter drop comment \"flow logs: rejected (too many flows to count)\"",
            ]
        );
        assert_eq!(chain("rejected-outbound").rules.len(), 4);
        assert_eq!(t.flow_sets.len(), 5);
    }

    #[test]
    fn the_internet_gateway_rewrites_every_packet_without_conntrack() {
        let p = plan();
        let t = p.netns("my-igw").unwrap().firewall.as_ref().unwrap();
        assert!(t.stateless);
        // No chain of type nat and no ct match: nothing enables conntrack there.
        assert!(t.chains.iter().all(|c| t.chain_type(c) == "filter"));
        let text = t.to_string();
        assert!(!text.contains("ct state"), "{text}");
        assert!(
            text.contains("ip saddr 10.0.2.238 counter ip saddr set 198.51.100.10"),
            "{text}"
        );
        assert!(
            text.contains("ip daddr 198.51.100.11 counter ip daddr set 10.0.0.4"),
            "{text}"
        );
    }

    #[test]
    fn the_nat_gateway_translates_through_conntrack() {
        let p = plan();
        let t = p.netns("my-nat").unwrap().firewall.as_ref().unwrap();
        assert!(!t.stateless);
        let post = t.chains.iter().find(|c| c.name == "postrouting").unwrap();
        assert_eq!(t.chain_type(post), "nat");
        assert!(t.to_string().contains("snat to 10.0.0.4:1024-65535"), "{t}");
    }
}
