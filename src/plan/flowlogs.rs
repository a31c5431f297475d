//! The kernel-side counting behind VPC flow logs: nftables sets that tally packets and
//! bytes per flow, so no packet ever goes to user space. The supervisor lists them every
//! interval and logs how much each flow grew.
//!
//! * An instance's namespace gets a table of its own, `vpclab-flow`, that counts each
//!   direction twice, in the same sets for both directions: in `seen` by a chain that runs
//!   before the security groups (priority -10, the groups' chains run at 0) and in
//!   `accepted` by one that runs after them (priority 10). A flow the groups let through
//!   lands in both; one they drop only in `seen`, so `seen - accepted` is what AWS logs as
//!   REJECT. The security groups' own table stays exactly as it is without flow logs.
//! * A NAT gateway's namespace gets one that counts what arrives, before the translation
//!   (`arrived`, priority -150, ahead of conntrack's NAT at -100), and what leaves, after it
//!   (`left`, priority 110, behind source NAT at 100): AWS's records of a NAT gateway's
//!   interface name the original ends of a translated flow.
//! * The VPC router counts in its network ACL table only what an ACL rule denies: the
//!   denying rule hands the packet to a chain that adds it to a rejection set and drops it,
//!   so allowed packets pay nothing.
//!
//! TCP and UDP flows are keyed by the 5-tuple; other protocols (ICMP) have no ports, and an
//! nftables key cannot hold a constant, so they get sets keyed by addresses and protocol
//! only (`-noport`). TCP packets carrying SYN, FIN or RST also land in one set per flag, for
//! the `tcp-flags` field.

use super::firewall::L4;
use serde::Serialize;

/// The name of the counting table, apart from the lab's own `vpclab` table.
pub const TABLE: &str = "vpclab-flow";

/// Elements a flow set holds at most.
const SET_SIZE: u32 = 65535;

/// What a flow set counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Counts {
    /// An instance: every packet in or out, before its security groups.
    Seen,
    /// An instance: every packet its security groups let in or out.
    Accepted,
    /// A NAT gateway: every packet arriving, before translation.
    Arrived,
    /// A NAT gateway: every packet leaving, after translation.
    Left,
    /// TCP packets with SYN and without ACK.
    Syn,
    /// TCP packets with SYN and ACK.
    SynAck,
    Fin,
    Rst,
    /// The VPC router: packets leaving a subnet that its network ACL denied.
    AclOutboundRejected,
    /// The VPC router: packets entering a subnet that its network ACL denied, with the
    /// address of the next hop (the interface they were bound for).
    AclInboundRejected,
}

impl Counts {
    fn stem(self) -> &'static str {
        match self {
            Counts::Seen => "seen",
            Counts::Accepted => "accepted",
            Counts::Arrived => "arrived",
            Counts::Left => "left",
            Counts::Syn => "syn",
            Counts::SynAck => "syn-ack",
            Counts::Fin => "fin",
            Counts::Rst => "rst",
            Counts::AclOutboundRejected => "acl-outbound-rejected",
            Counts::AclInboundRejected => "acl-inbound-rejected",
        }
    }
}

/// How a flow set's elements are keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Key {
    /// Source, destination, protocol, source port, destination port (TCP and UDP).
    Ports,
    /// Source, destination, protocol (anything without ports: ICMP).
    NoPorts,
    /// Source, destination, source port, destination port, next hop, for one of TCP and
    /// UDP: nftables (1.0) keys hold at most five fields, so the protocol is the set's.
    PortsVia(L4),
    /// Source, destination, protocol, next hop.
    NoPortsVia,
}

/// The parts of a packet a key field reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyField {
    Saddr,
    Daddr,
    Protocol,
    Sport,
    Dport,
    /// The route's next hop (`rt ip nexthop`): the gateway, or the destination itself.
    Nexthop,
}

impl Key {
    pub fn fields(self) -> &'static [KeyField] {
        use KeyField::*;
        match self {
            Key::Ports => &[Saddr, Daddr, Protocol, Sport, Dport],
            Key::NoPorts => &[Saddr, Daddr, Protocol],
            Key::PortsVia(_) => &[Saddr, Daddr, Sport, Dport, Nexthop],
            Key::NoPortsVia => &[Saddr, Daddr, Protocol, Nexthop],
        }
    }

    /// The key as an nft expression: `ip saddr . ip daddr . meta l4proto`.
    pub fn expression(self) -> String {
        self.fields()
            .iter()
            .map(|f| match f {
                KeyField::Saddr => "ip saddr",
                KeyField::Daddr => "ip daddr",
                KeyField::Protocol => "meta l4proto",
                KeyField::Sport => "th sport",
                KeyField::Dport => "th dport",
                KeyField::Nexthop => "rt ip nexthop",
            })
            .collect::<Vec<_>>()
            .join(" . ")
    }

    /// The set's element type, field by field, as nft names them.
    pub fn types(self) -> Vec<&'static str> {
        self.fields()
            .iter()
            .map(|f| match f {
                KeyField::Saddr | KeyField::Daddr | KeyField::Nexthop => "ipv4_addr",
                KeyField::Protocol => "inet_proto",
                KeyField::Sport | KeyField::Dport => "inet_service",
            })
            .collect()
    }

    /// The protocol of a set whose key leaves it out.
    pub fn implied_protocol(self) -> Option<L4> {
        match self {
            Key::PortsVia(p) => Some(p),
            _ => None,
        }
    }
}

/// A dynamic set with a counter per element: one flow per element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowSet {
    pub name: String,
    pub counts: Counts,
    pub key: Key,
}

impl FlowSet {
    fn new(counts: Counts, key: Key) -> FlowSet {
        let suffix = match key {
            Key::Ports => "",
            Key::NoPorts | Key::NoPortsVia => "-noport",
            Key::PortsVia(p) => match p {
                L4::Tcp => "-tcp",
                L4::Udp => "-udp",
                L4::Icmp => "-icmp",
            },
        };
        FlowSet {
            name: format!("{}{suffix}", counts.stem()),
            counts,
            key,
        }
    }

    /// `set NAME { type ...; size N; }` (nft makes a set that rules add to dynamic).
    pub fn declaration(&self) -> String {
        format!(
            "set {} {{ type {}; flags dynamic; size {SET_SIZE}; }}",
            self.name,
            self.key.types().join(" . ")
        )
    }

    /// `add @NAME { KEY counter }`: adds the packet's flow and counts it.
    pub fn add_statement(&self) -> String {
        format!("add @{} {{ {} counter }}", self.name, self.key.expression())
    }

    pub fn size(&self) -> u32 {
        SET_SIZE
    }
}

/// The rejection sets of the VPC router's network ACL table, in the order of the rules
/// that fill them (TCP, UDP, then everything else).
pub fn acl_rejection_sets(inbound: bool) -> Vec<FlowSet> {
    if inbound {
        vec![
            FlowSet::new(Counts::AclInboundRejected, Key::PortsVia(L4::Tcp)),
            FlowSet::new(Counts::AclInboundRejected, Key::PortsVia(L4::Udp)),
            FlowSet::new(Counts::AclInboundRejected, Key::NoPortsVia),
        ]
    } else {
        vec![
            FlowSet::new(Counts::AclOutboundRejected, Key::Ports),
            FlowSet::new(Counts::AclOutboundRejected, Key::NoPorts),
        ]
    }
}

/// What a namespace's counting table counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Counting {
    /// An instance's interface, before and after its security groups.
    Instance,
    /// A NAT gateway's interface, as packets arrive and as they leave.
    NatGateway,
}

const FLAGS: [(Counts, &str); 4] = [
    (Counts::Syn, "tcp flags & (syn | ack) == syn"),
    (Counts::SynAck, "tcp flags & (syn | ack) == syn | ack"),
    (Counts::Fin, "tcp flags & fin == fin"),
    (Counts::Rst, "tcp flags & rst == rst"),
];

impl Counting {
    /// Every set of the table.
    pub fn sets(self) -> Vec<FlowSet> {
        let (a, b) = match self {
            Counting::Instance => (Counts::Seen, Counts::Accepted),
            Counting::NatGateway => (Counts::Arrived, Counts::Left),
        };
        let mut sets = vec![
            FlowSet::new(a, Key::Ports),
            FlowSet::new(a, Key::NoPorts),
            FlowSet::new(b, Key::Ports),
            FlowSet::new(b, Key::NoPorts),
        ];
        sets.extend(FLAGS.iter().map(|(c, _)| FlowSet::new(*c, Key::Ports)));
        sets
    }

    /// The counting table as an `nft -f` script.
    pub fn ruleset(self) -> String {
        let sets = self.sets();
        let set = |c: Counts, k: Key| {
            sets.iter()
                .find(|s| s.counts == c && s.key == k)
                .expect("the table has this set")
        };
        let mut s = format!("table inet {TABLE} {{\n");
        for fs in &sets {
            s += &format!("  {}\n", fs.declaration());
        }
        s += "  chain note-flags {\n";
        for (c, test) in FLAGS {
            s += &format!("    {test} {}\n", set(c, Key::Ports).add_statement());
        }
        s += "  }\n";
        // (chain, hook, priority, device match, what it counts, whether it notes flags)
        let chains: Vec<(&str, &str, i32, &str, Counts, bool)> = match self {
            Counting::Instance => vec![
                ("input-seen", "input", -10, "iifname", Counts::Seen, true),
                (
                    "input-accepted",
                    "input",
                    10,
                    "iifname",
                    Counts::Accepted,
                    false,
                ),
                ("output-seen", "output", -10, "oifname", Counts::Seen, true),
                (
                    "output-accepted",
                    "output",
                    10,
                    "oifname",
                    Counts::Accepted,
                    false,
                ),
            ],
            Counting::NatGateway => vec![
                (
                    "arrived",
                    "prerouting",
                    -150,
                    "iifname",
                    Counts::Arrived,
                    true,
                ),
                ("left", "postrouting", 110, "oifname", Counts::Left, true),
            ],
        };
        for (name, hook, prio, dev, counts, flags) in chains {
            s += &format!(
                "  chain {name} {{\n    type filter hook {hook} priority {prio};\n    {dev} \"lo\" return\n"
            );
            if flags {
                s += "    tcp flags & (fin | syn | rst) != 0 jump note-flags\n";
            }
            s += &format!(
                "    meta l4proto {{ tcp, udp }} {}\n    meta l4proto != {{ tcp, udp }} {}\n  }}\n",
                set(counts, Key::Ports).add_statement(),
                set(counts, Key::NoPorts).add_statement()
            );
        }
        s += "}\n";
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_counts_before_and_after_the_security_groups_in_both_directions() {
        let r = Counting::Instance.ruleset();
        for chain in [
            "input-seen",
            "input-accepted",
            "output-seen",
            "output-accepted",
        ] {
            assert!(r.contains(&format!("chain {chain} {{")), "{chain} in {r}");
        }
        assert!(r.contains("type filter hook input priority -10;"));
        assert!(r.contains("type filter hook output priority 10;"));
        assert!(r.contains(
            "meta l4proto != { tcp, udp } add @accepted-noport { ip saddr . ip daddr . meta l4proto counter }"
        ));
        assert!(r.contains(
            "tcp flags & (syn | ack) == syn | ack add @syn-ack { ip saddr . ip daddr . meta l4proto . th sport . th dport counter }"
        ));
        // Flags are noted once per packet, where it is first seen.
        assert_eq!(r.matches("jump note-flags").count(), 2);
        assert_eq!(r.matches("flags dynamic;").count(), 8);
    }

    #[test]
    fn a_nat_gateway_counts_around_the_translation() {
        let r = Counting::NatGateway.ruleset();
        assert!(r.contains("chain arrived {\n    type filter hook prerouting priority -150;"));
        assert!(r.contains("chain left {\n    type filter hook postrouting priority 110;"));
        assert!(r.contains("add @left-noport"), "{r}");
    }

    #[test]
    fn inbound_rejections_note_the_next_hop_in_keys_of_five_fields_at_most() {
        let sets = acl_rejection_sets(true);
        let names: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "acl-inbound-rejected-tcp",
                "acl-inbound-rejected-udp",
                "acl-inbound-rejected-noport"
            ]
        );
        assert_eq!(
            sets[0].key.expression(),
            "ip saddr . ip daddr . th sport . th dport . rt ip nexthop"
        );
        for s in sets.iter().chain(&acl_rejection_sets(false)) {
            assert!(s.key.fields().len() <= 5, "{}", s.name);
        }
    }
}
