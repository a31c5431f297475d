//! VPC flow log records from the kernel's counters: AWS's default format (version 2),
//! one line per flow and action and interval, per network interface.
//!
//! The counting table (`plan::flowlogs`) only ever grows its counters; each interval the
//! collector lists them and logs what changed since the previous listing, so no packet is
//! lost between a read and a reset.

use crate::plan::flowlogs::SETS;
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The account id in every record: the lab has no AWS account, so a fixed, obviously
/// made-up 12-digit one.
pub const ACCOUNT_ID: &str = "123456789012";

/// The first line of every log file, as AWS writes it to S3.
pub const HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";

/// AWS never logs traffic to or from these (besides the Amazon DNS server at VPC+2): the
/// DNS server's link-local address, instance metadata, the time service.
const UNLOGGED: [Ipv4Addr; 3] = [
    Ipv4Addr::new(169, 254, 169, 253),
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 169, 123),
];

/// A flow: addresses, IP protocol number, ports (0 for protocols without them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flow {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub sport: u16,
    pub dport: u16,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

/// What the counting table holds at one moment: every flow seen before the security
/// groups, and every flow they accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub seen: BTreeMap<Flow, Count>,
    pub accepted: BTreeMap<Flow, Count>,
}

/// One line of a log: a flow's packets in an interval, or NODATA for a quiet interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub version: u8,
    pub account_id: String,
    pub interface_id: String,
    pub flow: Option<FlowFields>,
    pub start: u64,
    pub end: u64,
    pub action: Option<String>,
    pub log_status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowFields {
    pub srcaddr: Ipv4Addr,
    pub dstaddr: Ipv4Addr,
    pub srcport: u16,
    pub dstport: u16,
    pub protocol: u8,
    pub packets: u64,
    pub bytes: u64,
}

impl Record {
    /// The record as AWS's text format writes it, `-` for fields that do not apply.
    pub fn line(&self) -> String {
        let flow = match &self.flow {
            Some(f) => format!(
                "{} {} {} {} {} {} {}",
                f.srcaddr, f.dstaddr, f.srcport, f.dstport, f.protocol, f.packets, f.bytes
            ),
            None => "- - - - - - -".into(),
        };
        format!(
            "{} {} {} {flow} {} {} {} {}",
            self.version,
            self.account_id,
            self.interface_id,
            self.start,
            self.end,
            self.action.as_deref().unwrap_or("-"),
            self.log_status
        )
    }

    /// Reads a line back (for `vpclab flow-logs --json`); `None` for the header.
    pub fn parse(line: &str) -> Option<Record> {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 14 || f[0] == "version" {
            return None;
        }
        let flow = if f[3] == "-" {
            None
        } else {
            Some(FlowFields {
                srcaddr: f[3].parse().ok()?,
                dstaddr: f[4].parse().ok()?,
                srcport: f[5].parse().ok()?,
                dstport: f[6].parse().ok()?,
                protocol: f[7].parse().ok()?,
                packets: f[8].parse().ok()?,
                bytes: f[9].parse().ok()?,
            })
        };
        Some(Record {
            version: f[0].parse().ok()?,
            account_id: f[1].into(),
            interface_id: f[2].into(),
            flow,
            start: f[10].parse().ok()?,
            end: f[11].parse().ok()?,
            action: (f[12] != "-").then(|| f[12].to_string()),
            log_status: f[13].into(),
        })
    }
}

/// Reads the counting table's `nft -j list table` output.
pub fn parse_listing(json: &str) -> Result<Snapshot> {
    let v: serde_json::Value = serde_json::from_str(json).context("parse nft's JSON")?;
    let mut snap = Snapshot::default();
    let objects = v["nftables"].as_array().context("no `nftables` list")?;
    for o in objects {
        let Some(set) = o.get("set") else { continue };
        let Some((_, _, accepted)) = SETS.iter().find(|s| set["name"] == s.0) else {
            continue;
        };
        let target = if *accepted {
            &mut snap.accepted
        } else {
            &mut snap.seen
        };
        for e in set["elem"].as_array().into_iter().flatten() {
            let e = &e["elem"];
            let key = e["val"]["concat"]
                .as_array()
                .context("element without key")?;
            let flow = flow_of(key).with_context(|| format!("unreadable flow key {key:?}"))?;
            let c = &e["counter"];
            let count = Count {
                packets: c["packets"].as_u64().unwrap_or(0),
                bytes: c["bytes"].as_u64().unwrap_or(0),
            };
            let slot = target.entry(flow).or_default();
            slot.packets += count.packets;
            slot.bytes += count.bytes;
        }
    }
    Ok(snap)
}

fn flow_of(key: &[serde_json::Value]) -> Option<Flow> {
    let port = |v: Option<&serde_json::Value>| -> Option<u16> {
        match v {
            None => Some(0),
            Some(v) => v.as_u64().and_then(|p| u16::try_from(p).ok()),
        }
    };
    Some(Flow {
        src: key.first()?.as_str()?.parse().ok()?,
        dst: key.get(1)?.as_str()?.parse().ok()?,
        protocol: protocol_number(key.get(2)?)?,
        sport: port(key.get(3))?,
        dport: port(key.get(4))?,
    })
}

/// nft names the protocols it knows and numbers the rest.
fn protocol_number(v: &serde_json::Value) -> Option<u8> {
    if let Some(n) = v.as_u64() {
        return u8::try_from(n).ok();
    }
    Some(match v.as_str()? {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "udp" => 17,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "sctp" => 132,
        other => other.parse().ok()?,
    })
}

/// One interface's log: remembers the last listing so each interval logs the difference.
pub struct InterfaceLog {
    pub interface_id: String,
    /// The Amazon DNS server at VPC+2, never logged.
    pub dns_server: Ipv4Addr,
    last: Snapshot,
}

impl InterfaceLog {
    pub fn new(interface_id: String, dns_server: Ipv4Addr, baseline: Snapshot) -> Self {
        InterfaceLog {
            interface_id,
            dns_server,
            last: baseline,
        }
    }

    /// The records of the interval `start..end` whose listing at `end` is `now`: an
    /// ACCEPT record per flow the security groups let through, a REJECT record per flow
    /// they dropped (seen before them, not after), or one NODATA record.
    pub fn interval(&mut self, now: Snapshot, start: u64, end: u64) -> Vec<Record> {
        let accepted = growth(&self.last.accepted, &now.accepted);
        let rejected_now = rejected(&now);
        let rejected = growth(&rejected(&self.last), &rejected_now);
        self.last = now;
        let mut records = Vec::new();
        for (action, counts) in [("ACCEPT", accepted), ("REJECT", rejected)] {
            for (flow, c) in counts {
                if self.unlogged(&flow) {
                    continue;
                }
                records.push(Record {
                    version: 2,
                    account_id: ACCOUNT_ID.into(),
                    interface_id: self.interface_id.clone(),
                    flow: Some(FlowFields {
                        srcaddr: flow.src,
                        dstaddr: flow.dst,
                        srcport: flow.sport,
                        dstport: flow.dport,
                        protocol: flow.protocol,
                        packets: c.packets,
                        bytes: c.bytes,
                    }),
                    start,
                    end,
                    action: Some(action.into()),
                    log_status: "OK".into(),
                });
            }
        }
        if records.is_empty() {
            records.push(Record {
                version: 2,
                account_id: ACCOUNT_ID.into(),
                interface_id: self.interface_id.clone(),
                flow: None,
                start,
                end,
                action: None,
                log_status: "NODATA".into(),
            });
        }
        records
    }

    fn unlogged(&self, f: &Flow) -> bool {
        [f.src, f.dst]
            .iter()
            .any(|a| *a == self.dns_server || UNLOGGED.contains(a))
    }
}

/// Per flow, what the security groups dropped: seen minus accepted.
fn rejected(s: &Snapshot) -> BTreeMap<Flow, Count> {
    s.seen
        .iter()
        .map(|(f, seen)| {
            let ok = s.accepted.get(f).copied().unwrap_or_default();
            let c = Count {
                packets: seen.packets.saturating_sub(ok.packets),
                bytes: seen.bytes.saturating_sub(ok.bytes),
            };
            (*f, c)
        })
        .collect()
}

/// The flows whose counters grew from `before` to `after`, by how much. A counter that
/// went down belongs to a table made anew (the instance was rebooted), so all of it is new.
fn growth(before: &BTreeMap<Flow, Count>, after: &BTreeMap<Flow, Count>) -> Vec<(Flow, Count)> {
    after
        .iter()
        .filter_map(|(f, now)| {
            let was = before.get(f).copied().unwrap_or_default();
            let c = if now.packets < was.packets {
                *now
            } else {
                Count {
                    packets: now.packets - was.packets,
                    bytes: now.bytes.saturating_sub(was.bytes),
                }
            };
            (c.packets > 0).then_some((*f, c))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(src: [u8; 4], dst: [u8; 4], protocol: u8, sport: u16, dport: u16) -> Flow {
        Flow {
            src: src.into(),
            dst: dst.into(),
            protocol,
            sport,
            dport,
        }
    }

    fn count(packets: u64, bytes: u64) -> Count {
        Count { packets, bytes }
    }

    const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
      {"table": {"family": "inet", "name": "vpclab-flow"}},
      {"set": {"name": "seen", "elem": [
        {"elem": {"val": {"concat": ["10.0.0.9", "10.0.1.5", "tcp", 40000, 22]}, "counter": {"packets": 3, "bytes": 180}}},
        {"elem": {"val": {"concat": ["10.0.1.5", "10.0.0.9", "tcp", 80, 41000]}, "counter": {"packets": 4, "bytes": 900}}}]}},
      {"set": {"name": "seen-noport", "elem": [
        {"elem": {"val": {"concat": ["10.0.0.9", "10.0.1.5", "icmp"]}, "counter": {"packets": 2, "bytes": 168}}}]}},
      {"set": {"name": "accepted", "elem": [
        {"elem": {"val": {"concat": ["10.0.1.5", "10.0.0.9", "tcp", 80, 41000]}, "counter": {"packets": 4, "bytes": 900}}}]}},
      {"set": {"name": "accepted-noport", "elem": [
        {"elem": {"val": {"concat": ["10.0.0.9", "10.0.1.5", "icmp"]}, "counter": {"packets": 2, "bytes": 168}}}]}}]}"#;

    #[test]
    fn a_listing_gives_every_flow_with_protocol_numbers_and_no_ports_for_icmp() {
        let s = parse_listing(LISTING).unwrap();
        assert_eq!(s.seen.len(), 3);
        assert_eq!(
            s.seen[&flow([10, 0, 0, 9], [10, 0, 1, 5], 6, 40000, 22)],
            count(3, 180)
        );
        assert_eq!(
            s.accepted[&flow([10, 0, 0, 9], [10, 0, 1, 5], 1, 0, 0)],
            count(2, 168)
        );
    }

    #[test]
    fn accepted_and_rejected_flows_become_version_2_records_in_aws_field_order() {
        let mut log =
            InterfaceLog::new("eni-0abc".into(), [10, 0, 0, 2].into(), Snapshot::default());
        let lines: Vec<String> = log
            .interval(parse_listing(LISTING).unwrap(), 100, 160)
            .iter()
            .map(Record::line)
            .collect();
        assert_eq!(
            lines,
            [
                "2 123456789012 eni-0abc 10.0.0.9 10.0.1.5 0 0 1 2 168 100 160 ACCEPT OK",
                "2 123456789012 eni-0abc 10.0.1.5 10.0.0.9 80 41000 6 4 900 100 160 ACCEPT OK",
                "2 123456789012 eni-0abc 10.0.0.9 10.0.1.5 40000 22 6 3 180 100 160 REJECT OK",
            ]
        );
        for l in &lines {
            assert_eq!(l.split(' ').count(), HEADER.split(' ').count());
        }
    }

    #[test]
    fn only_the_growth_since_the_last_interval_is_logged_and_a_quiet_one_says_nodata() {
        let first = parse_listing(LISTING).unwrap();
        let mut log = InterfaceLog::new("eni-0abc".into(), [10, 0, 0, 2].into(), first.clone());
        let mut more = first.clone();
        let web = flow([10, 0, 1, 5], [10, 0, 0, 9], 6, 80, 41000);
        more.seen.insert(web, count(6, 1000));
        more.accepted.insert(web, count(6, 1000));
        let r = log.interval(more.clone(), 160, 220);
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].line(),
            "2 123456789012 eni-0abc 10.0.1.5 10.0.0.9 80 41000 6 2 100 160 220 ACCEPT OK"
        );
        let quiet = log.interval(more, 220, 280);
        assert_eq!(
            quiet.iter().map(Record::line).collect::<Vec<_>>(),
            ["2 123456789012 eni-0abc - - - - - - - 220 280 - NODATA"]
        );
        assert_eq!(Record::parse(&quiet[0].line()), Some(quiet[0].clone()));
        assert_eq!(Record::parse(HEADER), None);
    }

    #[test]
    fn dns_metadata_and_time_service_traffic_is_not_logged() {
        let mut now = Snapshot::default();
        for server in [
            [10, 0, 0, 2],
            [169, 254, 169, 253],
            [169, 254, 169, 254],
            [169, 254, 169, 123],
        ] {
            now.accepted
                .insert(flow([10, 0, 1, 5], server, 17, 5000, 53), count(1, 60));
            now.accepted
                .insert(flow(server, [10, 0, 1, 5], 17, 53, 5000), count(1, 90));
        }
        let mut log =
            InterfaceLog::new("eni-0abc".into(), [10, 0, 0, 2].into(), Snapshot::default());
        assert_eq!(log.interval(now, 0, 5)[0].log_status, "NODATA");
    }

    #[test]
    fn a_table_made_anew_counts_from_zero() {
        let web = flow([10, 0, 1, 5], [10, 0, 0, 9], 6, 80, 41000);
        let mut before = Snapshot::default();
        before.accepted.insert(web, count(50, 5000));
        let mut after = Snapshot::default();
        after.accepted.insert(web, count(3, 300));
        after.seen.insert(web, count(3, 300));
        let mut log = InterfaceLog::new("eni-0abc".into(), [10, 0, 0, 2].into(), before);
        let r = log.interval(after, 0, 5);
        assert_eq!(r[0].flow.as_ref().map(|f| f.packets), Some(3));
    }
}
