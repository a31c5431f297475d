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
        if read_datagram(&data, &mut entries)? {
            return Ok(entries);
        }
    }
}

/// Adds the IPv4 entries of one datagram of a conntrack dump to `entries`; true once the
/// kernel has said the dump is done.
fn read_datagram(data: &[u8], entries: &mut Vec<CtEntry>) -> Result<bool> {
    let mut off = 0;
    while off < data.len() {
        let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&data[off..])
            .context("decode a conntrack message")?;
        let len = msg.header.length as usize;
        match msg.payload {
            NetlinkPayload::Done(_) => return Ok(true),
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
    Ok(false)
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

#[cfg(test)]
mod tests {
    //! Datagrams built by hand in the kernel's wire format: netlink headers in host byte
    //! order, attribute values in network byte order, attributes padded to 4 bytes.
    use super::*;

    // <linux/netfilter/nfnetlink_conntrack.h>
    const CTA_TUPLE_ORIG: u16 = 1;
    const CTA_TUPLE_REPLY: u16 = 2;
    const CTA_STATUS: u16 = 3;
    const CTA_PROTOINFO: u16 = 4;
    const CTA_TIMEOUT: u16 = 7;
    const CTA_USE: u16 = 11;
    const CTA_TUPLE_IP: u16 = 1;
    const CTA_TUPLE_PROTO: u16 = 2;
    const CTA_IP_V4_SRC: u16 = 1;
    const CTA_IP_V4_DST: u16 = 2;
    const CTA_PROTO_NUM: u16 = 1;
    const CTA_PROTO_SRC_PORT: u16 = 2;
    const CTA_PROTO_DST_PORT: u16 = 3;
    const CTA_PROTO_ICMP_TYPE: u16 = 5;
    const CTA_PROTO_ICMP_CODE: u16 = 6;
    const CTA_PROTOINFO_TCP: u16 = 1;
    const CTA_PROTOINFO_TCP_STATE: u16 = 1;
    const IPS_CONFIRMED: u32 = 1 << 3;
    const NLA_F_NESTED: u16 = 1 << 15;
    const NLM_F_MULTI: u16 = 2;
    /// IPCTNL_MSG_CT_NEW of subsystem NFNL_SUBSYS_CTNETLINK: how a dump sends entries.
    const CT_NEW: u16 = 1 << 8;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut b = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        b.extend(kind.to_ne_bytes());
        b.extend(value);
        b.resize(b.len().next_multiple_of(4), 0);
        b
    }

    fn nested(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        attr(kind | NLA_F_NESTED, &parts.concat())
    }

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut b = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        b.extend(kind.to_ne_bytes());
        b.extend(NLM_F_MULTI.to_ne_bytes());
        b.extend(1u32.to_ne_bytes()); // sequence number
        b.extend(0u32.to_ne_bytes()); // port id
        b.extend(body);
        b
    }

    fn conntrack(attrs: &[Vec<u8>]) -> Vec<u8> {
        // nfgenmsg: family, version, resource id (big-endian).
        let mut body = vec![libc::AF_INET as u8, 0, 0, 0];
        body.extend(attrs.concat());
        message(CT_NEW, &body)
    }

    fn done() -> Vec<u8> {
        message(libc::NLMSG_DONE as u16, &0i32.to_ne_bytes())
    }

    /// An error answer: the negative errno, then the request's header.
    fn error(errno: i32) -> Vec<u8> {
        let mut body = (-errno).to_ne_bytes().to_vec();
        body.extend(&message(0, &[])[..16]);
        message(libc::NLMSG_ERROR as u16, &body)
    }

    fn tuple(kind: u16, src: [u8; 4], dst: [u8; 4], proto: Vec<Vec<u8>>) -> Vec<u8> {
        nested(
            kind,
            &[
                nested(
                    CTA_TUPLE_IP,
                    &[attr(CTA_IP_V4_SRC, &src), attr(CTA_IP_V4_DST, &dst)],
                ),
                nested(CTA_TUPLE_PROTO, &proto),
            ],
        )
    }

    fn ports(proto: u8, sport: u16, dport: u16) -> Vec<Vec<u8>> {
        vec![
            attr(CTA_PROTO_NUM, &[proto]),
            attr(CTA_PROTO_SRC_PORT, &sport.to_be_bytes()),
            attr(CTA_PROTO_DST_PORT, &dport.to_be_bytes()),
        ]
    }

    fn echo(id: u16) -> Vec<Vec<u8>> {
        vec![
            attr(CTA_PROTO_NUM, &[1]),
            attr(CTA_PROTO_ICMP_ID, &id.to_be_bytes()),
            attr(CTA_PROTO_ICMP_TYPE, &[8]),
            attr(CTA_PROTO_ICMP_CODE, &[0]),
        ]
    }

    /// The NAT gateway's mapping of a private host's HTTPS connection.
    fn snat_tcp() -> Vec<u8> {
        let status = IPS_SEEN_REPLY | IPS_ASSURED | IPS_CONFIRMED | IPS_SRC_NAT;
        conntrack(&[
            tuple(
                CTA_TUPLE_ORIG,
                [10, 0, 1, 5],
                [93, 184, 216, 34],
                ports(6, 40000, 443),
            ),
            tuple(
                CTA_TUPLE_REPLY,
                [93, 184, 216, 34],
                [10, 0, 0, 9],
                ports(6, 443, 40000),
            ),
            attr(CTA_STATUS, &status.to_be_bytes()),
            attr(CTA_TIMEOUT, &431999u32.to_be_bytes()),
            // Attributes vpclab doesn't read are skipped.
            attr(CTA_USE, &1u32.to_be_bytes()),
            nested(
                CTA_PROTOINFO,
                &[nested(
                    CTA_PROTOINFO_TCP,
                    &[attr(CTA_PROTOINFO_TCP_STATE, &[3])],
                )],
            ),
        ])
    }

    fn ping() -> Vec<u8> {
        conntrack(&[
            tuple(CTA_TUPLE_ORIG, [10, 0, 2, 238], [8, 8, 8, 8], echo(0x1234)),
            tuple(CTA_TUPLE_REPLY, [8, 8, 8, 8], [10, 0, 2, 238], echo(0x1234)),
            attr(CTA_STATUS, &IPS_CONFIRMED.to_be_bytes()),
            attr(CTA_TIMEOUT, &29u32.to_be_bytes()),
        ])
    }

    #[test]
    fn reads_tcp_and_icmp_entries_until_the_dump_is_done() {
        let datagram = [snat_tcp(), ping(), done()].concat();
        let mut entries = vec![];
        assert!(read_datagram(&datagram, &mut entries).unwrap());
        assert_eq!(
            entries,
            [
                CtEntry {
                    proto: 6,
                    orig: CtTuple {
                        src: Ipv4Addr::new(10, 0, 1, 5),
                        dst: Ipv4Addr::new(93, 184, 216, 34),
                        sport: Some(40000),
                        dport: Some(443),
                    },
                    reply: CtTuple {
                        src: Ipv4Addr::new(93, 184, 216, 34),
                        dst: Ipv4Addr::new(10, 0, 0, 9),
                        sport: Some(443),
                        dport: Some(40000),
                    },
                    status: IPS_SEEN_REPLY | IPS_ASSURED | IPS_CONFIRMED | IPS_SRC_NAT,
                    timeout: Some(431999),
                    tcp_state: Some(3),
                },
                CtEntry {
                    proto: 1,
                    orig: CtTuple {
                        src: Ipv4Addr::new(10, 0, 2, 238),
                        dst: Ipv4Addr::new(8, 8, 8, 8),
                        sport: Some(0x1234),
                        dport: None,
                    },
                    reply: CtTuple {
                        src: Ipv4Addr::new(8, 8, 8, 8),
                        dst: Ipv4Addr::new(10, 0, 2, 238),
                        sport: Some(0x1234),
                        dport: None,
                    },
                    status: IPS_CONFIRMED,
                    timeout: Some(29),
                    tcp_state: None,
                },
            ]
        );
        assert!(entries[0].is_nat());
        assert_eq!(entries[0].state_name(), Some("ESTABLISHED"));
        assert_eq!(entries[0].proto_name(), "tcp");
        assert!(!entries[1].is_nat());
        assert_eq!(entries[1].state_name(), None);
        assert_eq!(entries[1].proto_name(), "icmp");
    }

    #[test]
    fn a_dump_goes_on_over_several_datagrams() {
        let mut entries = vec![];
        assert!(!read_datagram(&snat_tcp(), &mut entries).unwrap());
        assert!(read_datagram(&[ping(), done()].concat(), &mut entries).unwrap());
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn an_entry_without_both_directions_is_skipped() {
        let orig_only = conntrack(&[tuple(
            CTA_TUPLE_ORIG,
            [10, 0, 1, 5],
            [1, 1, 1, 1],
            ports(17, 5000, 53),
        )]);
        let mut entries = vec![];
        assert!(read_datagram(&[orig_only, ping(), done()].concat(), &mut entries).unwrap());
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].proto, 1);
    }

    #[test]
    fn the_kernels_error_is_reported_and_an_acknowledgement_is_not() {
        let mut entries = vec![];
        let err = read_datagram(&error(libc::EPERM), &mut entries).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "conntrack dump failed: {}",
                std::io::Error::from_raw_os_error(libc::EPERM)
            )
        );
        assert!(read_datagram(&[error(0), ping(), done()].concat(), &mut entries).unwrap());
        assert_eq!(entries.len(), 1);
    }
}
