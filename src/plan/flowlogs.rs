//! The kernel-side counting behind VPC flow logs: one nftables table per instance
//! namespace that tallies packets and bytes per flow, so no packet ever goes to user space.
//!
//! Each direction is counted twice, in the same sets for both directions: in `seen` by a
//! chain that runs before the security groups (priority -10, the groups' chains run at 0)
//! and in `accepted` by one that runs after them (priority 10). A flow the groups let
//! through lands in both; one they drop only in `seen`, so `seen - accepted` is what AWS
//! logs as REJECT. The security groups' own table stays exactly as it is without flow
//! logs. TCP and UDP flows are keyed by the 5-tuple; other protocols (ICMP) have no ports,
//! and an nftables key cannot hold a constant, so they get sets keyed by addresses and
//! protocol only (`-noport`).

/// The name of the counting table, apart from the lab's own `vpclab` table.
pub const TABLE: &str = "vpclab-flow";

/// The sets the collector reads: (name, has ports, counts accepted traffic only).
pub const SETS: [(&str, bool, bool); 4] = [
    ("seen", true, false),
    ("seen-noport", false, false),
    ("accepted", true, true),
    ("accepted-noport", false, true),
];

/// The counting table as an `nft -f` script.
pub fn counting_ruleset() -> String {
    let ported = "type ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service";
    let unported = "type ipv4_addr . ipv4_addr . inet_proto";
    let mut s = format!("table inet {TABLE} {{\n");
    for (name, ports, _) in SETS {
        let key = if ports { ported } else { unported };
        s += &format!("  set {name} {{ {key}; flags dynamic; counter; size 65535; }}\n");
    }
    for (hook, dev) in [("input", "iifname"), ("output", "oifname")] {
        for (prio, set) in [(-10, "seen"), (10, "accepted")] {
            s += &format!(
                "  chain {hook}-{set} {{\n    type filter hook {hook} priority {prio};\n    \
                 {dev} \"lo\" return\n    \
                 meta l4proto {{ tcp, udp }} add @{set} {{ ip saddr . ip daddr . meta l4proto . th sport . th dport }}\n    \
                 meta l4proto != {{ tcp, udp }} add @{set}-noport {{ ip saddr . ip daddr . meta l4proto }}\n  }}\n"
            );
        }
    }
    s += "}\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_before_and_after_the_security_groups_in_both_directions() {
        let r = counting_ruleset();
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
        assert!(r.contains("add @accepted-noport { ip saddr . ip daddr . meta l4proto }"));
        assert_eq!(r.matches("flags dynamic; counter;").count(), 4);
    }
}
