//! VPC flow log records from the kernel's counters (`plan::flowlogs`): one line per flow,
//! direction and action in each aggregation interval, per network interface, in AWS's
//! default format (version 2) or the fields a lab's `format:` lists.
//!
//! The counting sets only ever grow their counters; each interval the collector lists
//! them and logs what changed since the previous listing, so no packet is lost between a
//! read and a reset. An interface's records come from its own counting table and from
//! the VPC router's, which counts what the subnets' network ACLs reject:
//!
//! * an instance: ACCEPT is what its security groups let in or out, less what the outbound
//!   ACL of its subnet then dropped; REJECT is what the security groups dropped, what that
//!   outbound ACL dropped, and what the inbound ACL of its subnet dropped on the way to it
//!   (AWS's documented case: a ping the security group allows whose reply the outbound
//!   ACL denies logs ACCEPT for the request and REJECT for the reply);
//! * a NAT gateway: a record per direction of each translated flow, with `srcaddr` and
//!   `dstaddr` the interface's side of the hop and `pkt-srcaddr`/`pkt-dstaddr` the ends
//!   the packet names.

use crate::plan::flowlogs::{Counting, Counts, FlowSet, KeyField, acl_rejection_sets};
use crate::plan::{aws_id, namespace_name};
use crate::topology::aws::az_id;
use crate::topology::flow_fields::{FlowField, format_version};
use crate::topology::{FlowLogs, Lab, RouteTarget};
use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// The account id in every record: the lab has no AWS account, so a fixed, obviously
/// made-up 12-digit one.
pub const ACCOUNT_ID: &str = "123456789012";

/// AWS never logs traffic to or from these (besides the Amazon DNS server at VPC+2 and the
/// VPC router's address in each subnet): the DNS server's link-local address, instance
/// metadata, the time service.
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

impl Count {
    fn less(self, other: Count) -> Count {
        Count {
            packets: self.packets.saturating_sub(other.packets),
            bytes: self.bytes.saturating_sub(other.bytes),
        }
    }

    fn plus(self, other: Count) -> Count {
        Count {
            packets: self.packets + other.packets,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// Every counted flow of one table at one moment: what the set counts, the flow, and for
/// the router's inbound rejections the next hop the packet was bound for.
pub type Listing = BTreeMap<(Counts, Flow, Option<Ipv4Addr>), Count>;

/// One interface's share of the listings: what counts, and the flow.
pub type Counters = BTreeMap<(Counts, Flow), Count>;

/// Reads a table's `nft -j list table` output; sets that count no flows are left out.
pub fn parse_listing(json: &str) -> Result<Listing> {
    let known: Vec<FlowSet> = Counting::Instance
        .sets()
        .into_iter()
        .chain(Counting::NatGateway.sets())
        .chain(acl_rejection_sets(false))
        .chain(acl_rejection_sets(true))
        .collect();
    let v: serde_json::Value = serde_json::from_str(json).context("parse nft's JSON")?;
    let mut out = Listing::new();
    let objects = v["nftables"].as_array().context("no `nftables` list")?;
    for o in objects {
        let Some(set) = o.get("set") else { continue };
        let Some(fs) = known.iter().find(|s| set["name"] == s.name.as_str()) else {
            continue;
        };
        for e in set["elem"].as_array().into_iter().flatten() {
            let e = &e["elem"];
            let key = e["val"]["concat"]
                .as_array()
                .context("element without key")?;
            let (flow, via) =
                flow_of(fs, key).with_context(|| format!("unreadable flow key {key:?}"))?;
            let c = &e["counter"];
            let count = Count {
                packets: c["packets"].as_u64().unwrap_or(0),
                bytes: c["bytes"].as_u64().unwrap_or(0),
            };
            let slot = out.entry((fs.counts, flow, via)).or_default();
            *slot = slot.plus(count);
        }
    }
    Ok(out)
}

fn flow_of(set: &FlowSet, key: &[serde_json::Value]) -> Option<(Flow, Option<Ipv4Addr>)> {
    let mut flow = Flow {
        src: Ipv4Addr::UNSPECIFIED,
        dst: Ipv4Addr::UNSPECIFIED,
        protocol: set.key.implied_protocol().map_or(0, |p| match p {
            crate::plan::firewall::L4::Tcp => 6,
            crate::plan::firewall::L4::Udp => 17,
            crate::plan::firewall::L4::Icmp => 1,
        }),
        sport: 0,
        dport: 0,
    };
    let mut via = None;
    let fields = set.key.fields();
    if key.len() != fields.len() {
        return None;
    }
    let addr = |v: &serde_json::Value| v.as_str()?.parse::<Ipv4Addr>().ok();
    let port = |v: &serde_json::Value| v.as_u64().and_then(|p| u16::try_from(p).ok());
    for (f, v) in fields.iter().zip(key) {
        match f {
            KeyField::Saddr => flow.src = addr(v)?,
            KeyField::Daddr => flow.dst = addr(v)?,
            KeyField::Protocol => flow.protocol = protocol_number(v)?,
            KeyField::Sport => flow.sport = port(v)?,
            KeyField::Dport => flow.dport = port(v)?,
            KeyField::Nexthop => via = Some(addr(v)?),
        }
    }
    Some((flow, via))
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

/// Per key, how much the counters grew from `before` to `after`. A counter that went
/// down belongs to a table made anew (an ACL change replaced the router's table), so all
/// of it is new.
pub fn growth(before: &Counters, after: &Counters) -> Counters {
    after
        .iter()
        .filter_map(|(k, now)| {
            let was = before.get(k).copied().unwrap_or_default();
            let c = if now.packets < was.packets {
                *now
            } else {
                now.less(was)
            };
            (c.packets > 0).then_some((*k, c))
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InterfaceKind {
    Instance,
    NatGateway,
}

/// A network interface a flow log can cover: an instance's or a NAT gateway's.
#[derive(Debug, Clone, Serialize)]
pub struct Interface {
    /// `eni-` and 17 hex digits, derived from the lab and node names (stable across runs).
    pub id: String,
    pub node: String,
    pub kind: InterfaceKind,
    /// `None` for a NAT gateway's interface, which no instance owns.
    pub instance_id: Option<String>,
    pub address: Ipv4Addr,
    pub subnet: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub region: String,
    pub az_id: String,
    /// The flow log that covers it, if any.
    pub flow_log: Option<FlowLogs>,
    #[serde(skip)]
    pub ns: String,
    /// Addresses whose traffic AWS never logs: the Amazon DNS server, the VPC router's
    /// address in each subnet, and `UNLOGGED`.
    #[serde(skip)]
    unlogged: Vec<Ipv4Addr>,
    /// Where its egress goes, for `traffic-path`: the subnet's routes, most specific
    /// first, with AWS's code for each.
    #[serde(skip)]
    paths: Vec<(Ipv4Net, u8)>,
}

/// The network interface id of a node, as `reach`, `status` and the flow logs name it.
pub fn interface_id(lab: &str, node: &str) -> String {
    aws_id("eni", lab, node)
}

/// Every instance's and NAT gateway's interface, in the lab file's order.
pub fn interfaces(lab: &Lab) -> Vec<Interface> {
    let interface = |node: &str, kind, address, subnet: usize, flow_log: Option<&FlowLogs>| {
        let s = &lab.subnets[subnet];
        let rt = &lab.route_tables[s.route_table];
        let mut paths: Vec<(Ipv4Net, u8)> = rt
            .routes
            .iter()
            .map(|r| {
                let code = match (&r.target, kind) {
                    // Through another resource of the VPC (a NAT gateway is one).
                    (RouteTarget::Local | RouteTarget::NatGateway(_), _) => 1,
                    (RouteTarget::InternetGateway(_), InterfaceKind::Instance) => 8,
                    (RouteTarget::InternetGateway(_), InterfaceKind::NatGateway) => 2,
                };
                (r.destination, code)
            })
            .collect();
        paths.push((lab.vpc.cidr, 1));
        paths.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        Interface {
            id: interface_id(&lab.name, node),
            node: node.to_string(),
            kind,
            instance_id: None,
            address,
            subnet: s.name.clone(),
            subnet_id: aws_id("subnet", &lab.name, &s.name),
            vpc_id: aws_id("vpc", &lab.name, &lab.vpc.name),
            region: lab.region.clone(),
            az_id: az_id(&s.az),
            flow_log: flow_log.cloned(),
            ns: namespace_name(&lab.name, node),
            unlogged: UNLOGGED
                .into_iter()
                .chain([lab.vpc.dns_server()])
                .chain(lab.subnets.iter().map(|s| s.gateway()))
                .collect(),
            paths,
        }
    };
    let mut out: Vec<Interface> = lab
        .instances
        .iter()
        .map(|i| Interface {
            instance_id: Some(i.id.clone()),
            ..interface(
                &i.name,
                InterfaceKind::Instance,
                i.private_ip,
                i.subnet,
                lab.flow_logs_of(i),
            )
        })
        .collect();
    out.extend(lab.nat_gateways.iter().map(|n| {
        interface(
            &n.name,
            InterfaceKind::NatGateway,
            n.private_ip,
            n.subnet,
            lab.flow_logs_of_subnet(n.subnet),
        )
    }));
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Accept,
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "ACCEPT",
            Action::Reject => "REJECT",
        }
    }
}

/// What a record says about one flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    pub srcaddr: Ipv4Addr,
    pub dstaddr: Ipv4Addr,
    pub srcport: u16,
    pub dstport: u16,
    pub protocol: u8,
    pub packets: u64,
    pub bytes: u64,
    pub action: Action,
    /// AWS's bitmask of the flags seen (FIN 1, SYN 2, RST 4, SYN-ACK 18), TCP only.
    pub tcp_flags: Option<u8>,
    pub pkt_srcaddr: Ipv4Addr,
    pub pkt_dstaddr: Ipv4Addr,
    pub egress: bool,
}

/// One line of a log: a flow's packets in an interval, or NODATA for a quiet interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub start: u64,
    pub end: u64,
    pub flow: Option<FlowRecord>,
}

impl Interface {
    /// What of the listings belongs to this interface: its own table's counts, the
    /// router's inbound rejections of packets bound for it, and the router's outbound
    /// rejections of flows it sent (its own table counted them leaving).
    pub fn counters(&self, own: &Listing, router: &Listing) -> Counters {
        let mut out: Counters = own.iter().map(|((c, f, _), n)| ((*c, *f), *n)).collect();
        let sent = match self.kind {
            InterfaceKind::Instance => Counts::Accepted,
            InterfaceKind::NatGateway => Counts::Left,
        };
        for ((c, f, via), n) in router {
            let mine = match c {
                Counts::AclInboundRejected => *via == Some(self.address),
                Counts::AclOutboundRejected => out.contains_key(&(sent, *f)),
                _ => false,
            };
            if mine {
                let slot = out.entry((*c, *f)).or_default();
                *slot = slot.plus(*n);
            }
        }
        out
    }

    /// The records of the interval `start..end` in which the counters grew by `grown`:
    /// ACCEPT and REJECT records per flow and direction, or one NODATA record.
    pub fn records(&self, grown: &Counters, start: u64, end: u64) -> Vec<Record> {
        let get = |c: Counts, f: &Flow| grown.get(&(c, *f)).copied().unwrap_or_default();
        // (egress, flow) -> (accepted, rejected)
        let mut flows: BTreeMap<(bool, Flow), (Count, Count)> = BTreeMap::new();
        let mut add = |egress: bool, f: Flow, accept: Count, reject: Count| {
            let e = flows.entry((egress, f)).or_default();
            *e = (e.0.plus(accept), e.1.plus(reject));
        };
        let keys: BTreeSet<(Counts, Flow)> = grown.keys().copied().collect();
        for (c, f) in keys {
            match (self.kind, c) {
                (InterfaceKind::Instance, Counts::Seen) => {
                    let (seen, accepted) = (get(Counts::Seen, &f), get(Counts::Accepted, &f));
                    let dropped_after = get(Counts::AclOutboundRejected, &f);
                    add(
                        f.src == self.address,
                        f,
                        accepted.less(dropped_after),
                        seen.less(accepted).plus(dropped_after),
                    );
                }
                (InterfaceKind::NatGateway, Counts::Arrived) => {
                    add(false, f, get(c, &f), Count::default())
                }
                (InterfaceKind::NatGateway, Counts::Left) => {
                    let dropped_after = get(Counts::AclOutboundRejected, &f);
                    add(true, f, get(c, &f).less(dropped_after), dropped_after);
                }
                (_, Counts::AclInboundRejected) => {
                    add(false, f, Count::default(), get(c, &f));
                }
                _ => {}
            }
        }
        let flags = |f: &Flow| {
            [
                (Counts::Fin, 1),
                (Counts::Syn, 2),
                (Counts::Rst, 4),
                (Counts::SynAck, 18),
            ]
            .iter()
            .filter(|(c, _)| get(*c, f).packets > 0)
            .fold(0, |acc, (_, bit)| acc | bit)
        };
        let mut records = Vec::new();
        for action in [Action::Accept, Action::Reject] {
            for ((egress, f), (accepted, rejected)) in &flows {
                let c = match action {
                    Action::Accept => *accepted,
                    Action::Reject => *rejected,
                };
                if c.packets == 0 || self.unlogged(f) {
                    continue;
                }
                let (srcaddr, dstaddr) = match (self.kind, egress) {
                    (InterfaceKind::Instance, _) => (f.src, f.dst),
                    (InterfaceKind::NatGateway, true) => (self.address, f.dst),
                    (InterfaceKind::NatGateway, false) => (f.src, self.address),
                };
                records.push(Record {
                    start,
                    end,
                    flow: Some(FlowRecord {
                        srcaddr,
                        dstaddr,
                        srcport: f.sport,
                        dstport: f.dport,
                        protocol: f.protocol,
                        packets: c.packets,
                        bytes: c.bytes,
                        action,
                        tcp_flags: (f.protocol == 6).then(|| flags(f)),
                        pkt_srcaddr: f.src,
                        pkt_dstaddr: f.dst,
                        egress: *egress,
                    }),
                });
            }
        }
        if records.is_empty() {
            records.push(Record {
                start,
                end,
                flow: None,
            });
        }
        records
    }

    /// Traffic AWS leaves out of flow logs: with the Amazon DNS server, instance metadata,
    /// the time service or the VPC router, DHCP, and multicast and broadcast, which a VPC
    /// does not carry (the lab's bridges do, when the kernel joins a group).
    fn unlogged(&self, f: &Flow) -> bool {
        const UDP: u8 = 17;
        [f.src, f.dst].iter().any(|a| self.unlogged.contains(a))
            || f.dst.is_multicast()
            || f.dst.is_broadcast()
            || (f.protocol == UDP && [67, 68].contains(&f.dport))
    }

    /// AWS's `traffic-path` code for egress to `dst`: 1 within the VPC (or through a NAT
    /// gateway, a resource of the VPC), 8 through the internet gateway (2 from a NAT
    /// gateway, which is no instance); `None` where no route leads.
    fn traffic_path(&self, dst: Ipv4Addr) -> Option<u8> {
        self.paths
            .iter()
            .find(|(net, _)| net.contains(&dst))
            .map(|(_, code)| *code)
    }

    /// One field of a record, `None` where it does not apply (written `-`).
    fn value(&self, field: FlowField, fields: &[FlowField], r: &Record) -> Option<String> {
        use FlowField::*;
        let f = r.flow.as_ref();
        Some(match field {
            Version => format_version(fields).to_string(),
            AccountId => ACCOUNT_ID.into(),
            InterfaceId => self.id.clone(),
            Srcaddr => f?.srcaddr.to_string(),
            Dstaddr => f?.dstaddr.to_string(),
            Srcport => f?.srcport.to_string(),
            Dstport => f?.dstport.to_string(),
            Protocol => f?.protocol.to_string(),
            Packets => f?.packets.to_string(),
            Bytes => f?.bytes.to_string(),
            Start => r.start.to_string(),
            End => r.end.to_string(),
            Action => f?.action.as_str().into(),
            LogStatus => if f.is_some() { "OK" } else { "NODATA" }.into(),
            VpcId => self.vpc_id.clone(),
            SubnetId => self.subnet_id.clone(),
            InstanceId => self.instance_id.clone()?,
            TcpFlags => f?.tcp_flags?.to_string(),
            Type => f.map(|_| "IPv4".to_string())?,
            PktSrcaddr => f?.pkt_srcaddr.to_string(),
            PktDstaddr => f?.pkt_dstaddr.to_string(),
            Region => self.region.clone(),
            AzId => self.az_id.clone(),
            FlowDirection => if f?.egress { "egress" } else { "ingress" }.into(),
            TrafficPath => {
                let f = f.filter(|f| f.egress)?;
                self.traffic_path(f.pkt_dstaddr)?.to_string()
            }
            // The lab has no Local Zones, Wavelength Zones or AWS service ranges.
            SublocationType | SublocationId | PktSrcAwsService | PktDstAwsService => {
                return None;
            }
        })
    }

    /// The record as AWS's text format writes it, the fields in the log's order, `-`
    /// for those that do not apply.
    pub fn line(&self, fields: &[FlowField], r: &Record) -> String {
        fields
            .iter()
            .map(|f| self.value(*f, fields, r).unwrap_or_else(|| "-".into()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The first line of a log file, as AWS writes it to S3: the field names in order.
pub fn header(fields: &[FlowField]) -> String {
    fields
        .iter()
        .map(|f| f.name())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The fields a header line names, or `None` when it is not a header.
pub fn header_fields(line: &str) -> Option<Vec<FlowField>> {
    line.split_whitespace().map(FlowField::from_name).collect()
}

/// A record line read back with its log's header, as a JSON object: one key per field,
/// AWS's name with `_` for `-` (`log_status`); numbers as numbers, `-` as null.
pub fn record_json(
    fields: &[FlowField],
    line: &str,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    use FlowField::*;
    let values: Vec<&str> = line.split_whitespace().collect();
    if values.len() != fields.len() {
        return None;
    }
    let mut out = serde_json::Map::new();
    for (f, v) in fields.iter().zip(values) {
        let numeric = matches!(
            f,
            Version
                | Srcport
                | Dstport
                | Protocol
                | Packets
                | Bytes
                | Start
                | End
                | TcpFlags
                | TrafficPath
        );
        let value = match v {
            "-" => serde_json::Value::Null,
            v if numeric => serde_json::Value::from(v.parse::<u64>().ok()?),
            v => serde_json::Value::from(v),
        };
        out.insert(f.name().replace('-', "_"), value);
    }
    Some(out)
}

#[cfg(test)]
mod tests;
