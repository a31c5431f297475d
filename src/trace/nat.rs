//! `vpclab nat-table`: the live translations of the NAT gateway or the internet gateway.
//! The NAT gateway's come from the conntrack table of its namespace: an entry holds the
//! connection as it was sent (original tuple) and as the answer must look (reply tuple);
//! their difference is the translation, the write-up's "mapping" the NAT gateway records in
//! its step (2) and uses again in step (6). The internet gateway is stateless: it has
//! only its fixed 1:1 pairs, shown with the packets each rule rewrote.

use super::counters::RuleCount;
use super::packet::endpoint;
use super::resolve;
use crate::kernel::conntrack::{
    self, CtEntry, CtTuple, IPS_ASSURED, IPS_DST_NAT, IPS_SEEN_REPLY, IPS_SRC_NAT,
};
use crate::plan::firewall::{Match, Table, Verdict};
use crate::plan::{Plan, Role};
use anyhow::{Result, bail};
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Serialize)]
pub struct NatTable {
    pub lab: String,
    pub node: String,
    pub device: String,
    pub namespace: String,
    /// The addresses it translates: the NAT gateway's private IP and Elastic IP, or the
    /// internet gateway's static NAT pairs.
    pub addresses: Vec<String>,
    pub entries: Vec<NatEntry>,
    /// Connections conntrack tracks here without translating them.
    pub untranslated: usize,
    /// True for the internet gateway: its 1:1 NAT is a fixed rewrite of every packet,
    /// so it has no connection table; `static_nat` is all there is to show.
    pub stateless: bool,
    /// The stateless device's mappings with the packets each rewrote so far.
    pub static_nat: Vec<StaticNat>,
}

/// One private ⇄ public pair of the internet gateway and its rules' counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaticNat {
    pub owner: String,
    pub private: String,
    pub public: String,
    /// Packets that left with the public address as their source (the SNAT rule).
    pub packets_out: u64,
    /// Packets that came in to the public address (the DNAT rule).
    pub packets_in: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NatEntry {
    pub proto: String,
    pub original_source: String,
    pub original_destination: String,
    pub translated_source: String,
    pub translated_destination: String,
    /// "source", "destination" or both.
    pub translates: Vec<&'static str>,
    /// TCP state (ESTABLISHED, TIME_WAIT, ...), or UNREPLIED / REPLIED / ASSURED.
    pub state: String,
    /// Seconds before the entry expires.
    pub timeout: Option<u32>,
}

fn ep(ip: std::net::Ipv4Addr, port: Option<u16>, proto: u8) -> String {
    match (proto, port) {
        (1, Some(id)) => format!("{ip} (id {id})"),
        (_, Some(p)) => endpoint(ip, p, true),
        _ => ip.to_string(),
    }
}

/// The translations among conntrack entries, and how many entries translate nothing.
pub fn entries(ct: &[CtEntry]) -> (Vec<NatEntry>, usize) {
    let mut out = Vec::new();
    let mut plain = 0;
    for e in ct {
        if !e.is_nat() {
            plain += 1;
            continue;
        }
        // The reply comes from the translated destination to the translated source.
        let CtTuple {
            src: rs,
            dst: rd,
            sport: rsp,
            dport: rdp,
        } = &e.reply;
        let p = e.proto;
        let mut translates = vec![];
        if e.status & IPS_SRC_NAT != 0 {
            translates.push("source");
        }
        if e.status & IPS_DST_NAT != 0 {
            translates.push("destination");
        }
        let (t_src, t_dst) = if p == 1 {
            // ICMP: the reply's identifier is the (possibly translated) echo id.
            (ep(*rd, *rsp, p), ep(*rs, None, p))
        } else {
            (ep(*rd, *rdp, p), ep(*rs, *rsp, p))
        };
        let state = match e.state_name() {
            Some(s) => s.to_string(),
            None if e.status & IPS_ASSURED != 0 => "ASSURED".into(),
            None if e.status & IPS_SEEN_REPLY != 0 => "REPLIED".into(),
            None => "UNREPLIED".into(),
        };
        out.push(NatEntry {
            proto: e.proto_name(),
            original_source: ep(e.orig.src, e.orig.sport, p),
            original_destination: ep(e.orig.dst, if p == 1 { None } else { e.orig.dport }, p),
            translated_source: t_src,
            translated_destination: t_dst,
            translates,
            state,
            timeout: e.timeout,
        });
    }
    out.sort_by(|a, b| {
        (&a.proto, &a.original_source, &a.original_destination).cmp(&(
            &b.proto,
            &b.original_source,
            &b.original_destination,
        ))
    });
    (out, plain)
}

/// The gateways `which` names: `igw`/`internet-gateway`, `nat-gateway`/`nat`, or a node.
pub fn select<'p>(plan: &'p Plan, which: &str) -> Result<Vec<&'p crate::plan::Netns>> {
    let role = match which {
        "igw" | "internet-gateway" => Some(Role::InternetGateway),
        "nat-gateway" | "nat" | "ngw" => Some(Role::NatGateway),
        _ => None,
    };
    let found: Vec<_> = match role {
        Some(r) => plan.namespaces.iter().filter(|n| n.role == r).collect(),
        None => plan
            .namespaces
            .iter()
            .filter(|n| {
                n.node == which && matches!(n.role, Role::InternetGateway | Role::NatGateway)
            })
            .collect(),
    };
    if found.is_empty() {
        bail!(
            "lab `{}` has no {which}\n  hint: say `igw` or `nat-gateway` (or a gateway's name)",
            plan.lab
        );
    }
    Ok(found)
}

fn addresses(plan: &Plan, ns: &crate::plan::Netns) -> Vec<String> {
    match ns.role {
        Role::NatGateway => {
            let private = ns
                .addresses
                .iter()
                .find(|a| a.dev == "eth0")
                .map(|a| a.addr.addr());
            let mut v = vec![];
            if let Some(p) = private {
                v.push(format!("private IP {p}"));
                if let Some(eip) = resolve::private_to_public(plan, p) {
                    v.push(format!(
                        "Elastic IP {eip} (static NAT at the internet gateway)"
                    ));
                }
            }
            v
        }
        // The internet gateway: its 1:1 pairs.
        _ => ns
            .firewall
            .iter()
            .flat_map(|t| static_nat(t, &[]))
            .map(|m| format!("{} ⇄ {} ({})", m.private, m.public, m.owner))
            .collect(),
    }
}

/// The mappings of a stateless table, with the packet counters of its rewrite rules.
pub fn static_nat(table: &Table, counts: &[RuleCount]) -> Vec<StaticNat> {
    let packets = |chain: &str, comment: &str| {
        counts
            .iter()
            .find(|c| c.chain == chain && c.comment == comment)
            .map_or(0, |c| c.packets)
    };
    let rules = |chain: &str| {
        table
            .chains
            .iter()
            .filter(move |c| c.name == chain)
            .flat_map(|c| c.rules.iter())
            .map(|r| (r, chain.to_string()))
            .collect::<Vec<_>>()
    };
    let dnat = rules("prerouting");
    rules("postrouting")
        .into_iter()
        .filter_map(|(r, chain)| {
            let (Verdict::Snat { addr: public, .. }, Some(Match::Saddr(private))) =
                (&r.verdict, r.matches.first())
            else {
                return None;
            };
            let private = private.to_string();
            let inbound = dnat.iter().find(
                |(d, _)| matches!(d.verdict, Verdict::Dnat { addr } if addr.to_string() == private),
            );
            Some(StaticNat {
                owner: r
                    .comment
                    .rsplit_once('(')
                    .map(|(_, w)| w.trim_end_matches(')').to_string())
                    .unwrap_or_default(),
                private,
                public: public.to_string(),
                packets_out: packets(&chain, &r.comment),
                packets_in: inbound.map_or(0, |(d, c)| packets(c, &d.comment)),
            })
        })
        .collect()
}

/// Reads the live table of one gateway: the conntrack entries of a stateful one, the
/// rule counters of a stateless one.
pub fn read(plan: &Plan, ns: &crate::plan::Netns) -> Result<NatTable> {
    let table = ns.firewall.as_ref();
    let stateless = table.is_some_and(|t| t.stateless);
    let (entries, untranslated, static_nat) = match table {
        Some(t) if t.stateless => (
            vec![],
            0,
            static_nat(t, &super::rule_counts(&ns.name, t.family)?),
        ),
        _ => {
            let (e, u) = entries(&conntrack::dump(&ns.name)?);
            (e, u, vec![])
        }
    };
    Ok(NatTable {
        lab: plan.lab.clone(),
        node: ns.node.clone(),
        device: super::report::device(plan, &ns.node),
        namespace: ns.name.clone(),
        addresses: addresses(plan, ns),
        entries,
        untranslated,
        stateless,
        static_nat,
    })
}

fn render_static(t: &NatTable) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} {} (lab {}), stateless 1:1 NAT in {}",
        t.device, t.node, t.lab, t.namespace
    );
    let _ = writeln!(
        s,
        "  every packet is rewritten by a fixed mapping, so there is no connection table:"
    );
    let _ = writeln!(
        s,
        "  replies are translated by the same pairs, in the other direction\n"
    );
    let head = [
        "owner",
        "private IP",
        "public IP",
        "packets out",
        "packets in",
    ];
    let rows: Vec<[String; 5]> = t
        .static_nat
        .iter()
        .map(|m| {
            [
                m.owner.clone(),
                m.private.clone(),
                m.public.clone(),
                m.packets_out.to_string(),
                m.packets_in.to_string(),
            ]
        })
        .collect();
    table_lines(&mut s, head, &rows);
    let n = t.static_nat.len();
    let _ = writeln!(s, "\n{n} mapping{}", if n == 1 { "" } else { "s" });
    s
}

/// Left-aligned columns, three spaces apart.
fn table_lines(s: &mut String, head: [&str; 5], rows: &[[String; 5]]) {
    let w: Vec<usize> = (0..5)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([head[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 5]| {
        let mut l = String::from("  ");
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i].saturating_sub(c.chars().count());
            l.push_str(c);
            if i < 4 {
                l.push_str(&" ".repeat(pad + 3));
            }
        }
        l.trim_end().to_string()
    };
    let _ = writeln!(s, "{}", line(head));
    for r in rows {
        let _ = writeln!(s, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
}

pub fn render(t: &NatTable) -> String {
    if t.stateless {
        return render_static(t);
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} {} (lab {}), conntrack of {}",
        t.device, t.node, t.lab, t.namespace
    );
    for a in &t.addresses {
        let _ = writeln!(s, "  {a}");
    }
    if t.entries.is_empty() {
        let _ = writeln!(s, "\n  no translations right now");
    } else {
        let rows: Vec<[String; 5]> = t
            .entries
            .iter()
            .map(|e| {
                [
                    e.proto.clone(),
                    format!("{} → {}", e.original_source, e.original_destination),
                    format!("{} → {}", e.translated_source, e.translated_destination),
                    e.state.clone(),
                    e.timeout.map_or("-".into(), |t| format!("{t} s")),
                ]
            })
            .collect();
        let head = [
            "proto",
            "original (source → destination)",
            "translated (source → destination)",
            "state",
            "expires",
        ];
        let _ = writeln!(s);
        table_lines(&mut s, head, &rows);
    }
    let n = t.entries.len();
    let _ = write!(s, "\n{n} translation{}", if n == 1 { "" } else { "s" });
    if t.untranslated > 0 {
        let _ = write!(
            s,
            "; {} other tracked connection(s) without translation",
            t.untranslated
        );
    }
    let _ = writeln!(s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn t(src: &str, sport: u16, dst: &str, dport: u16) -> CtTuple {
        CtTuple {
            src: src.parse::<Ipv4Addr>().unwrap(),
            dst: dst.parse().unwrap(),
            sport: Some(sport),
            dport: Some(dport),
        }
    }

    #[test]
    fn a_nat_gateway_entry_shows_the_write_ups_mapping() {
        // app 10.0.1.101:40001 → example-web:80, masqueraded to 10.0.0.4:40001.
        let e = CtEntry {
            proto: 6,
            orig: t("10.0.1.101", 40001, "203.0.113.60", 80),
            reply: t("203.0.113.60", 80, "10.0.0.4", 40001),
            status: IPS_SRC_NAT | IPS_SEEN_REPLY | IPS_ASSURED,
            timeout: Some(349),
            tcp_state: Some(3),
        };
        let plain = CtEntry {
            status: IPS_SEEN_REPLY,
            ..e.clone()
        };
        let (rows, others) = entries(&[e, plain]);
        assert_eq!(others, 1);
        assert_eq!(
            rows,
            [NatEntry {
                proto: "tcp".into(),
                original_source: "10.0.1.101:40001".into(),
                original_destination: "203.0.113.60:80".into(),
                translated_source: "10.0.0.4:40001".into(),
                translated_destination: "203.0.113.60:80".into(),
                translates: vec!["source"],
                state: "ESTABLISHED".into(),
                timeout: Some(349),
            }]
        );
        let table = NatTable {
            lab: "handson".into(),
            node: "my-nat".into(),
            device: "NAT gateway".into(),
            namespace: "vpclab-handson.my-nat".into(),
            addresses: vec![],
            entries: rows,
            untranslated: 1,
            stateless: false,
            static_nat: vec![],
        };
        let text = render(&table);
        assert!(
            text.contains("10.0.1.101:40001 → 203.0.113.60:80"),
            "{text}"
        );
        assert!(text.contains("10.0.0.4:40001 → 203.0.113.60:80"), "{text}");
        assert!(text.contains("ESTABLISHED"), "{text}");
    }

    #[test]
    fn a_destination_nat_entry_translates_the_destination() {
        // A stateful DNAT (a port forward a lab might add): stranger → 198.51.100.10:53
        // forwarded to 10.0.2.238.
        let e = CtEntry {
            proto: 17,
            orig: t("192.0.2.66", 5000, "198.51.100.10", 53),
            reply: t("10.0.2.238", 53, "192.0.2.66", 5000),
            status: IPS_DST_NAT,
            timeout: Some(30),
            tcp_state: None,
        };
        let (rows, _) = entries(&[e]);
        assert_eq!(rows[0].translated_destination, "10.0.2.238:53");
        assert_eq!(rows[0].translated_source, "192.0.2.66:5000");
        assert_eq!(rows[0].translates, ["destination"]);
        assert_eq!(rows[0].state, "UNREPLIED");
    }

    #[test]
    fn gateways_are_selected_by_kind_or_name() {
        let loaded = crate::topology::load(crate::topology::Source::Builtin, None).unwrap();
        let plan = crate::plan::compile(&loaded.lab);
        assert_eq!(select(&plan, "igw").unwrap()[0].node, "my-igw");
        assert_eq!(select(&plan, "nat-gateway").unwrap()[0].node, "my-nat");
        assert_eq!(select(&plan, "my-nat").unwrap()[0].node, "my-nat");
        assert!(select(&plan, "web").is_err());
        let a = addresses(&plan, select(&plan, "nat-gateway").unwrap()[0]);
        assert_eq!(a[0], "private IP 10.0.0.4");
        assert!(a[1].contains("198.51.100.11"), "{a:?}");
        let a = addresses(&plan, select(&plan, "igw").unwrap()[0]);
        assert!(
            a.iter().any(|x| x == "10.0.2.238 ⇄ 198.51.100.10 (web)"),
            "{a:?}"
        );
    }

    #[test]
    fn the_internet_gateway_shows_its_pairs_with_the_packets_each_rule_rewrote() {
        let loaded = crate::topology::load(crate::topology::Source::Builtin, None).unwrap();
        let plan = crate::plan::compile(&loaded.lab);
        let igw = select(&plan, "igw").unwrap()[0];
        let table = igw.firewall.as_ref().unwrap();
        assert!(table.stateless);
        let count = |chain: &str, comment: &str, packets| RuleCount {
            chain: chain.into(),
            handle: 0,
            comment: comment.into(),
            verdict: crate::trace::counters::RuleVerdict::Other,
            packets,
        };
        let counts = [
            count(
                "postrouting",
                "my-igw: static NAT 10.0.0.4 -> 198.51.100.11 (my-nat)",
                7,
            ),
            count(
                "prerouting",
                "my-igw: static NAT 198.51.100.11 -> 10.0.0.4 (my-nat)",
                5,
            ),
        ];
        let pairs = static_nat(table, &counts);
        let nat = pairs.iter().find(|m| m.owner == "my-nat").unwrap();
        assert_eq!(
            (nat.private.as_str(), nat.public.as_str()),
            ("10.0.0.4", "198.51.100.11")
        );
        assert_eq!((nat.packets_out, nat.packets_in), (7, 5));
        let web = pairs.iter().find(|m| m.owner == "web").unwrap();
        assert_eq!(
            (web.public.as_str(), web.packets_out, web.packets_in),
            ("198.51.100.10", 0, 0)
        );
        let text = render(&NatTable {
            lab: "handson".into(),
            node: "my-igw".into(),
            device: "internet gateway".into(),
            namespace: igw.name.clone(),
            addresses: vec![],
            entries: vec![],
            untranslated: 0,
            stateless: true,
            static_nat: pairs,
        });
        assert!(text.contains("stateless 1:1 NAT"), "{text}");
        assert!(text.contains("no connection table"), "{text}");
        assert!(text.contains("2 mappings"), "{text}");
    }
}
