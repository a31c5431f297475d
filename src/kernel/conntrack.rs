//! The connection tracking table of a namespace, read over ctnetlink (NETLINK_NETFILTER,
//! subsystem CTNETLINK) with netlink-packet-netfilter's conntrack messages: the live
//! translations of the internet gateway and the NAT gateway (the "mapping table" the
//! write-up's NAT gateway records in its step (2)).
//!
//! The socket is opened on a thread inside the lab namespace, so it reads that
//! namespace's table and nothing else.

use super::netns;
use anyhow::{Context, Result, bail};
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr};

/// One direction of a connection as conntrack records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CtTuple {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// TCP/UDP ports; for ICMP echo, the echo identifier is in `sport`.
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

/// A conntrack entry: the original direction, the reply direction (which holds the
/// translated addresses), status bits, seconds to live and the TCP state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CtEntry {
    pub proto: u8,
    pub orig: CtTuple,
    pub reply: CtTuple,
    pub status: u32,
    pub timeout: Option<u32>,
    pub tcp_state: Option<u8>,
}

// <linux/netfilter/nf_conntrack_common.h>
pub const IPS_SEEN_REPLY: u32 = 1 << 1;
pub const IPS_ASSURED: u32 = 1 << 2;
pub const IPS_SRC_NAT: u32 = 1 << 4;
pub const IPS_DST_NAT: u32 = 1 << 5;
// <linux/netfilter/nfnetlink_conntrack.h>: ICMP's "ports".
const CTA_PROTO_ICMP_ID: u16 = 4;

impl CtEntry {
    pub fn is_nat(&self) -> bool {
        self.status & (IPS_SRC_NAT | IPS_DST_NAT) != 0
    }

    /// The TCP state name as `conntrack -L` prints it.
    pub fn state_name(&self) -> Option<&'static str> {
        // enum tcp_conntrack in <linux/netfilter/nf_conntrack_tcp.h>.
        Some(match self.tcp_state? {
            0 => "NONE",
            1 => "SYN_SENT",
            2 => "SYN_RECV",
            3 => "ESTABLISHED",
            4 => "FIN_WAIT",
            5 => "CLOSE_WAIT",
            6 => "LAST_ACK",
            7 => "TIME_WAIT",
            8 => "CLOSE",
            9 => "SYN_SENT2",
            _ => "UNKNOWN",
        })
    }

    pub fn proto_name(&self) -> String {
        match self.proto {
            1 => "icmp".into(),
            6 => "tcp".into(),
            17 => "udp".into(),
            p => format!("proto {p}"),
        }
    }
}

/// Every IPv4 conntrack entry of namespace `ns`.
pub fn dump(ns: &str) -> Result<Vec<CtEntry>> {
    let handle = netns::open(ns)?;
    netns::run_in(&handle, dump_here).with_context(|| format!("read the conntrack table of {ns}"))
}

/// Every IPv4 conntrack entry of the calling thread's namespace.
pub fn dump_here() -> Result<Vec<CtEntry>> {
    let mut socket = Socket::new(NETLINK_NETFILTER).context("open a netfilter netlink socket")?;
    socket.bind_auto().context("bind the netlink socket")?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .context("connect the netlink socket")?;

    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = 1;
    let mut req = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0),
            ConntrackMessage::Get(vec![]),
        )),
    );
    req.finalize();
    let mut buf = vec![0; req.buffer_len()];
    req.serialize(&mut buf);
    socket
        .send(&buf, 0)
        .context("send the conntrack dump request")?;

    let mut entries = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full().context("read conntrack entries")?;
        if data.is_empty() {
            bail!("the kernel closed the conntrack dump early");
        }
        let mut off = 0;
        while off < data.len() {
            let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&data[off..])
                .context("decode a conntrack message")?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(entries),
                NetlinkPayload::Error(e) => {
                    if let Some(code) = e.code {
                        bail!(
                            "conntrack dump failed: {}",
                            std::io::Error::from_raw_os_error(-code.get())
                        );
                    }
                }
                NetlinkPayload::InnerMessage(NetfilterMessage {
                    inner: NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)),
                    ..
                }) => {
                    if let Some(e) = entry(&attrs) {
                        entries.push(e);
                    }
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            off += len;
        }
    }
}

fn entry(attrs: &[ConntrackAttribute]) -> Option<CtEntry> {
    let mut orig = None;
    let mut reply = None;
    let mut status = 0;
    let mut timeout = None;
    let mut tcp_state = None;
    for a in attrs {
        match a {
            ConntrackAttribute::CtaTupleOrig(t) => orig = Some(tuple(t)?),
            ConntrackAttribute::CtaTupleReply(t) => reply = Some(tuple(t)?),
            ConntrackAttribute::CtaStatus(s) => status = s.bits(),
            ConntrackAttribute::CtaTimeout(t) => timeout = Some(*t),
            ConntrackAttribute::CtaProtoInfo(infos) => {
                for i in infos {
                    if let ProtoInfo::TCP(tcp) = i {
                        for t in tcp {
                            if let ProtoInfoTCP::State(s) = t {
                                tcp_state = Some(*s);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let (proto, orig) = orig?;
    let (_, reply) = reply?;
    Some(CtEntry {
        proto,
        orig,
        reply,
        status,
        timeout,
        tcp_state,
    })
}

fn tuple(t: &[Tuple]) -> Option<(u8, CtTuple)> {
    let (mut src, mut dst) = (None, None);
    let (mut proto, mut sport, mut dport) = (0u8, None, None);
    for part in t {
        match part {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(IpAddr::V4(a)) => src = Some(*a),
                        IPTuple::DestinationAddress(IpAddr::V4(a)) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(ps) => {
                for p in ps {
                    match p {
                        ProtoTuple::Protocol(p) => proto = u8::from(*p),
                        ProtoTuple::SourcePort(s) => sport = Some(*s),
                        ProtoTuple::DestinationPort(d) => dport = Some(*d),
                        ProtoTuple::Other(nla) => {
                            use netlink_packet_core::Nla;
                            if nla.kind() == CTA_PROTO_ICMP_ID {
                                let mut v = [0u8; 2];
                                nla.emit_value(&mut v);
                                sport = Some(u16::from_be_bytes(v));
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((
        proto,
        CtTuple {
            src: src?,
            dst: dst?,
            sport,
            dport,
        },
    ))
}
