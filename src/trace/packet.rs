//! Captured frames as the trace needs them: addresses, ports, TCP flags and a
//! fingerprint that survives address translation, so the same packet can be recognised
//! before and after a NAT device rewrote it.

use pnet::packet::Packet as _;
use pnet::packet::ethernet::{EtherTypes, EthernetPacket};
use pnet::packet::icmp::{IcmpPacket, IcmpTypes};
use pnet::packet::ip::IpNextHeaderProtocols;
use pnet::packet::ipv4::Ipv4Packet;
use pnet::packet::tcp::TcpPacket;
use pnet::packet::udp::UdpPacket;
use serde::Serialize;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;

/// The IPv4 header fields of a frame and its transport header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkt {
    pub src_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ip_id: u16,
    pub ttl: u8,
    /// TCP/UDP ports; for ICMP echo, the identifier is the "source port" (as conntrack
    /// and NAT treat it) and the destination port is 0.
    pub sport: u16,
    pub dport: u16,
    pub l4: L4Info,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L4Info {
    Tcp {
        flags: u8,
        seq: u32,
        ack: u32,
    },
    Udp {
        payload: u64,
    },
    IcmpEcho {
        ty: u8,
        seq: u16,
        payload: u64,
    },
    /// An ICMP error (destination unreachable, time exceeded) and the header it quotes.
    IcmpError {
        ty: u8,
        code: u8,
        quoted: Option<Box<Quoted>>,
    },
    Other,
}

/// The start of the packet an ICMP error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// What identifies one packet at every point of its path, whatever NAT did to its
/// addresses and ports: TCP sequence numbers and flags, the UDP payload, the ICMP echo
/// sequence and payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fingerprint {
    Tcp { flags: u8, seq: u32, ack: u32 },
    Udp { payload: u64 },
    IcmpEcho { ty: u8, seq: u16, payload: u64 },
    IcmpError { ty: u8, code: u8, ip_id: u16 },
    Other { proto: u8, ip_id: u16 },
}

pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

fn hash(data: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

/// Parses an Ethernet frame; `None` for anything but IPv4.
pub fn parse(frame: &[u8]) -> Option<Pkt> {
    let eth = EthernetPacket::new(frame)?;
    if eth.get_ethertype() != EtherTypes::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new(eth.payload())?;
    let header = usize::from(ip.get_header_length()) * 4;
    let total = usize::from(ip.get_total_length()).min(eth.payload().len());
    let body = eth.payload().get(header..total)?;
    let proto = ip.get_next_level_protocol();
    let (sport, dport, l4) = if proto == IpNextHeaderProtocols::Tcp {
        let t = TcpPacket::new(body)?;
        (
            t.get_source(),
            t.get_destination(),
            L4Info::Tcp {
                flags: t.get_flags(),
                seq: t.get_sequence(),
                ack: t.get_acknowledgement(),
            },
        )
    } else if proto == IpNextHeaderProtocols::Udp {
        let u = UdpPacket::new(body)?;
        (
            u.get_source(),
            u.get_destination(),
            L4Info::Udp {
                payload: hash(u.payload()),
            },
        )
    } else if proto == IpNextHeaderProtocols::Icmp {
        let i = IcmpPacket::new(body)?;
        let ty = i.get_icmp_type();
        if ty == IcmpTypes::EchoRequest || ty == IcmpTypes::EchoReply {
            // Identifier and sequence are the first four bytes after the ICMP header.
            let rest = i.payload();
            if rest.len() < 4 {
                return None;
            }
            let id = u16::from_be_bytes([rest[0], rest[1]]);
            let seq = u16::from_be_bytes([rest[2], rest[3]]);
            (
                id,
                0,
                L4Info::IcmpEcho {
                    ty: ty.0,
                    seq,
                    payload: hash(&rest[4..]),
                },
            )
        } else {
            // Unused 4 bytes, then the quoted IP header and 8 bytes of its payload.
            let quoted = i.payload().get(4..).and_then(quote).map(Box::new);
            (
                0,
                0,
                L4Info::IcmpError {
                    ty: ty.0,
                    code: i.get_icmp_code().0,
                    quoted,
                },
            )
        }
    } else {
        (0, 0, L4Info::Other)
    };
    Some(Pkt {
        src_mac: eth.get_source().octets(),
        src: ip.get_source(),
        dst: ip.get_destination(),
        proto: proto.0,
        ip_id: ip.get_identification(),
        ttl: ip.get_ttl(),
        sport,
        dport,
        l4,
    })
}

fn quote(data: &[u8]) -> Option<Quoted> {
    let ip = Ipv4Packet::new(data)?;
    let body = data.get(usize::from(ip.get_header_length()) * 4..)?;
    let proto = ip.get_next_level_protocol().0;
    let (sport, dport) = match proto {
        TCP | UDP if body.len() >= 4 => (
            u16::from_be_bytes([body[0], body[1]]),
            u16::from_be_bytes([body[2], body[3]]),
        ),
        ICMP if body.len() >= 6 => (u16::from_be_bytes([body[4], body[5]]), 0),
        _ => (0, 0),
    };
    Some(Quoted {
        src: ip.get_source(),
        dst: ip.get_destination(),
        proto,
        sport,
        dport,
    })
}

impl Pkt {
    pub fn fingerprint(&self) -> Fingerprint {
        match &self.l4 {
            L4Info::Tcp { flags, seq, ack } => Fingerprint::Tcp {
                flags: *flags,
                seq: *seq,
                ack: *ack,
            },
            L4Info::Udp { payload } => Fingerprint::Udp { payload: *payload },
            L4Info::IcmpEcho { ty, seq, payload } => Fingerprint::IcmpEcho {
                ty: *ty,
                seq: *seq,
                payload: *payload,
            },
            L4Info::IcmpError { ty, code, .. } => Fingerprint::IcmpError {
                ty: *ty,
                code: *code,
                ip_id: self.ip_id,
            },
            L4Info::Other => Fingerprint::Other {
                proto: self.proto,
                ip_id: self.ip_id,
            },
        }
    }

    pub fn tuple(&self) -> Tuple {
        Tuple {
            proto: self.proto,
            src: self.src,
            sport: self.sport,
            dst: self.dst,
            dport: self.dport,
        }
    }

    /// "SYN", "SYN-ACK", "RST-ACK", "echo request", "port unreachable", ...
    pub fn kind(&self) -> String {
        match &self.l4 {
            L4Info::Tcp { flags: f, .. } => tcp_flags(*f),
            L4Info::Udp { .. } => "datagram".into(),
            L4Info::IcmpEcho { ty: 8, .. } => "echo request".into(),
            L4Info::IcmpEcho { .. } => "echo reply".into(),
            L4Info::IcmpError { ty, code, .. } => icmp_error(*ty, *code),
            L4Info::Other => format!("protocol {}", self.proto),
        }
    }
}

pub fn tcp_flags(f: u8) -> String {
    let names = [
        (flags::SYN, "SYN"),
        (flags::RST, "RST"),
        (flags::FIN, "FIN"),
        (flags::PSH, "PSH"),
        (flags::ACK, "ACK"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join("-")
    }
}

pub fn icmp_error(ty: u8, code: u8) -> String {
    match (ty, code) {
        (3, 0) => "ICMP net unreachable".into(),
        (3, 1) => "ICMP host unreachable".into(),
        (3, 3) => "ICMP port unreachable".into(),
        (3, 13) => "ICMP administratively prohibited".into(),
        (3, c) => format!("ICMP unreachable (code {c})"),
        (11, _) => "ICMP time exceeded".into(),
        (t, c) => format!("ICMP type {t} code {c}"),
    }
}

/// A packet's addresses and ports: what NAT rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Tuple {
    pub proto: u8,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

impl Tuple {
    pub fn reversed(&self) -> Tuple {
        Tuple {
            proto: self.proto,
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }

    pub fn has_ports(&self) -> bool {
        self.proto == TCP || self.proto == UDP
    }

    #[cfg(test)]
    pub fn src_str(&self) -> String {
        endpoint(self.src, self.sport, self.has_ports())
    }
}

pub fn endpoint(ip: Ipv4Addr, port: u16, ports: bool) -> String {
    if ports {
        format!("{ip}:{port}")
    } else {
        ip.to_string()
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Builds an Ethernet + IPv4 + TCP frame (checksums left zero: nothing checks them).
    #[allow(clippy::too_many_arguments)]
    pub fn tcp_frame(
        src_mac: u8,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
    ) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xee]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src_mac]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[4..6].copy_from_slice(&7u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = TCP;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        let t = &mut f[34..54];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        f
    }

    #[test]
    fn parses_a_tcp_syn_and_keeps_its_fingerprint_across_nat() {
        let a = parse(&tcp_frame(
            1,
            [10, 0, 2, 238],
            40001,
            [203, 0, 113, 60],
            80,
            flags::SYN,
            1000,
            0,
        ))
        .unwrap();
        assert_eq!(a.src, Ipv4Addr::new(10, 0, 2, 238));
        assert_eq!((a.sport, a.dport, a.proto), (40001, 80, TCP));
        assert_eq!(a.kind(), "SYN");
        let b = parse(&tcp_frame(
            2,
            [198, 51, 100, 10],
            40001,
            [203, 0, 113, 60],
            80,
            flags::SYN,
            1000,
            0,
        ))
        .unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.tuple(), b.tuple());
        let reply = parse(&tcp_frame(
            3,
            [203, 0, 113, 60],
            80,
            [198, 51, 100, 10],
            40001,
            flags::SYN | flags::ACK,
            5,
            1001,
        ))
        .unwrap();
        assert_eq!(reply.kind(), "SYN-ACK");
        assert_eq!(reply.tuple(), b.tuple().reversed());
        assert_eq!(reply.tuple().src_str(), "203.0.113.60:80");
    }

    #[test]
    fn ignores_non_ipv4() {
        let mut f = tcp_frame(1, [1, 1, 1, 1], 1, [2, 2, 2, 2], 2, 0, 0, 0);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(parse(&f).is_none());
        assert!(parse(&[0u8; 5]).is_none());
    }
}
