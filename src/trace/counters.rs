//! nftables counters read before and after a trace: the rules whose counters moved are
//! the rules that saw the traced packets. A stateful NAT rule sees only a connection's
//! first packet and a stateless rewrite (the internet gateway) sees every packet it
//! translates, so either way a translating rule that moved made the translation the capture
//! shows; a drop rule that moved in the namespace where the packet vanished is what stopped it.

use crate::plan::firewall::rejection_chain;
use serde::Serialize;
use serde_json::Value;
use std::net::Ipv4Addr;

/// One rule of a namespace's `vpclab` table with its counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleCount {
    pub chain: String,
    pub handle: u64,
    pub comment: String,
    pub verdict: RuleVerdict,
    pub packets: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RuleVerdict {
    Accept,
    Drop,
    Snat { addr: Option<Ipv4Addr> },
    Dnat { addr: Option<Ipv4Addr> },
    Other,
}

/// A rule whose counter moved, and by how many packets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Moved {
    pub chain: String,
    pub comment: String,
    pub verdict: RuleVerdict,
    pub packets: u64,
}

/// Parses `nft -j list table ...` output.
pub fn parse(json: &str) -> Vec<RuleCount> {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return vec![];
    };
    let Some(items) = v.get("nftables").and_then(Value::as_array) else {
        return vec![];
    };
    items
        .iter()
        .filter_map(|o| o.get("rule"))
        .map(|r| {
            let exprs = r
                .get("expr")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut packets = 0;
            let mut verdict = RuleVerdict::Other;
            for e in &exprs {
                if let Some(c) = e.get("counter") {
                    packets = c.get("packets").and_then(Value::as_u64).unwrap_or(0);
                }
                let addr = |k: &str| {
                    e.get(k)
                        .and_then(|n| n.get("addr"))
                        .and_then(Value::as_str)
                        .and_then(|a| a.parse().ok())
                };
                if e.get("accept").is_some() {
                    verdict = RuleVerdict::Accept;
                } else if e.get("drop").is_some() {
                    verdict = RuleVerdict::Drop;
                } else if e
                    .pointer("/goto/target")
                    .and_then(Value::as_str)
                    .is_some_and(|target| {
                        [true, false]
                            .iter()
                            .any(|inbound| target == rejection_chain(*inbound))
                    })
                {
                    // A network ACL rule that denies, with flow logs on: the chain it goes to
                    // counts the flow and drops the packet.
                    verdict = RuleVerdict::Drop;
                } else if e.get("snat").is_some() {
                    verdict = RuleVerdict::Snat { addr: addr("snat") };
                } else if e.get("dnat").is_some() {
                    verdict = RuleVerdict::Dnat { addr: addr("dnat") };
                } else if let Some(m) = e.get("mangle") {
                    // A stateless translation: `ip saddr set A` / `ip daddr set A`.
                    let to = m
                        .get("value")
                        .and_then(Value::as_str)
                        .and_then(|a| a.parse().ok());
                    let field = m.pointer("/key/payload/field").and_then(Value::as_str);
                    match field {
                        Some("saddr") => verdict = RuleVerdict::Snat { addr: to },
                        Some("daddr") => verdict = RuleVerdict::Dnat { addr: to },
                        _ => {}
                    }
                }
            }
            RuleCount {
                chain: r
                    .get("chain")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                handle: r.get("handle").and_then(Value::as_u64).unwrap_or(0),
                comment: r
                    .get("comment")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                verdict,
                packets,
            }
        })
        .collect()
}

/// The rules whose counters grew between `before` and `after` (matched by chain and
/// handle; a rule that only exists afterwards counts from zero).
pub fn diff(before: &[RuleCount], after: &[RuleCount]) -> Vec<Moved> {
    after
        .iter()
        .filter_map(|a| {
            let was = before
                .iter()
                .find(|b| b.chain == a.chain && b.handle == a.handle)
                .map_or(0, |b| b.packets);
            (a.packets > was).then(|| Moved {
                chain: a.chain.clone(),
                comment: a.comment.clone(),
                verdict: a.verdict.clone(),
                packets: a.packets - was,
            })
        })
        .collect()
}

/// The NAT rule that rewrote a source (`snat`) or destination to `to`, among the rules
/// that moved.
pub fn nat_rule(moved: &[Moved], source: bool, to: Ipv4Addr) -> Option<&Moved> {
    let fits = |m: &&Moved| match (&m.verdict, source) {
        (RuleVerdict::Snat { addr }, true) | (RuleVerdict::Dnat { addr }, false) => {
            addr.is_none_or(|a| a == to)
        }
        _ => false,
    };
    moved
        .iter()
        .filter(fits)
        .find(|m| {
            matches!(
                m.verdict,
                RuleVerdict::Snat { addr: Some(_) } | RuleVerdict::Dnat { addr: Some(_) }
            )
        })
        .or_else(|| moved.iter().find(fits))
}

/// The drop rule that stopped a packet, among the rules that moved.
pub fn drop_rule(moved: &[Moved]) -> Option<&Moved> {
    // The most specific first: the last drop rule of a chain is its catch-all.
    moved
        .iter()
        .find(|m| m.verdict == RuleVerdict::Drop && !m.comment.starts_with("stateful:"))
        .or_else(|| moved.iter().find(|m| m.verdict == RuleVerdict::Drop))
}

/// Accept rules that let the request through (not the stateful rule replies use), in the
/// chains `in_chain` accepts.
pub fn allow_rules(moved: &[Moved], in_chain: impl Fn(&str) -> bool) -> Vec<&Moved> {
    moved
        .iter()
        .filter(|m| {
            in_chain(&m.chain)
                && m.verdict == RuleVerdict::Accept
                && !m.comment.starts_with("stateful:")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The internet gateway's stateless rewrites and, for contrast, a NAT gateway's
    /// stateful port translation, as `nft -j list table` prints them.
    const IGW: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
      {"table": {"family": "ip", "name": "vpclab", "handle": 1}},
      {"chain": {"family": "ip", "table": "vpclab", "name": "prerouting", "handle": 1}},
      {"rule": {"family": "ip", "table": "vpclab", "chain": "prerouting", "handle": 4,
        "comment": "my-igw: static NAT 198.51.100.10 -> 10.0.2.238 (web)",
        "expr": [{"match": {}}, {"counter": {"packets": PRE, "bytes": 0}}, {"mangle": {"key": {"payload": {"protocol": "ip", "field": "daddr"}}, "value": "10.0.2.238"}}]}},
      {"rule": {"family": "ip", "table": "vpclab", "chain": "forward", "handle": 7,
        "comment": "my-igw: no instance has this public IP (no NAT mapping)",
        "expr": [{"match": {}}, {"counter": {"packets": DROP, "bytes": 0}}, {"drop": null}]}},
      {"rule": {"family": "ip", "table": "vpclab", "chain": "postrouting", "handle": 9,
        "comment": "my-igw: static NAT 10.0.2.238 -> 198.51.100.10 (web)",
        "expr": [{"match": {}}, {"counter": {"packets": POST, "bytes": 0}}, {"mangle": {"key": {"payload": {"protocol": "ip", "field": "saddr"}}, "value": "198.51.100.10"}}]}},
      {"rule": {"family": "ip", "table": "vpclab", "chain": "postrouting", "handle": 10,
        "comment": "my-nat: port address translation to 10.0.0.4 (tcp)",
        "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"snat": {"addr": "10.0.0.4", "port": {"range": [1024, 65535]}}}]}}
    ]}"#;

    fn igw(pre: u64, drop: u64, post: u64) -> Vec<RuleCount> {
        parse(
            &IGW.replace("PRE", &pre.to_string())
                .replace("DROP", &drop.to_string())
                .replace("POST", &post.to_string()),
        )
    }

    #[test]
    fn parses_rules_counters_and_nat_targets() {
        let r = igw(3, 0, 1);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].packets, 3);
        assert_eq!(
            r[0].verdict,
            RuleVerdict::Dnat {
                addr: Some("10.0.2.238".parse().unwrap())
            }
        );
        assert_eq!(r[1].verdict, RuleVerdict::Drop);
        assert_eq!(
            r[3].verdict,
            RuleVerdict::Snat {
                addr: Some("10.0.0.4".parse().unwrap())
            }
        );
        assert!(parse("not json").is_empty());
    }

    #[test]
    fn the_nat_rule_that_moved_names_the_translation() {
        let moved = diff(&igw(3, 0, 1), &igw(3, 0, 2));
        assert_eq!(moved.len(), 1);
        let r = nat_rule(&moved, true, "198.51.100.10".parse().unwrap()).unwrap();
        assert_eq!(
            r.comment,
            "my-igw: static NAT 10.0.2.238 -> 198.51.100.10 (web)"
        );
        assert!(nat_rule(&moved, false, "10.0.2.238".parse().unwrap()).is_none());
        assert!(nat_rule(&moved, true, "198.51.100.99".parse().unwrap()).is_none());
    }

    #[test]
    fn the_drop_rule_that_moved_is_where_the_packet_stopped() {
        let moved = diff(&igw(0, 5, 0), &igw(1, 7, 0));
        assert_eq!(moved.len(), 2);
        let d = drop_rule(&moved).unwrap();
        assert_eq!(d.packets, 2);
        assert!(d.comment.contains("no NAT mapping"));
        assert!(drop_rule(&diff(&igw(0, 5, 0), &igw(0, 5, 0))).is_none());
    }
}
