//! From captured frames to hops: which frames are the traced request and its reply (by
//! a fingerprint NAT does not change), where each was seen in order, and where their
//! addresses or ports changed (a translation inside one namespace: in with one tuple,
//! out with another).

use super::packet::{self, Fingerprint, L4Info, Pkt, Tuple, flags};
use super::path::Dir;
use std::time::Duration;

/// A capture point and how to tell which way a frame crossed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointInfo {
    pub node: String,
    pub iface: String,
    pub side: Side,
}

/// A veth carries frames sent by one end or the other. On an end that routes (not a
/// bridge port), frames from its own MAC are going out. On a bridge port, frames from the
/// far end's MAC are coming in; everything else the bridge is sending out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    OwnMac([u8; 6]),
    PeerMac([u8; 6]),
    Unknown,
}

impl Side {
    pub fn dir(&self, src_mac: [u8; 6]) -> Dir {
        match self {
            Side::OwnMac(m) if *m == src_mac => Dir::Out,
            Side::OwnMac(_) => Dir::In,
            Side::PeerMac(m) if *m == src_mac => Dir::In,
            Side::PeerMac(_) => Dir::Out,
            Side::Unknown => Dir::In,
        }
    }
}

/// A parsed IPv4 frame at a capture point.
#[derive(Debug, Clone)]
pub struct Obs {
    pub point: usize,
    pub dir: Dir,
    pub ts: Duration,
    pub pkt: Pkt,
}

pub fn observations(points: &[PointInfo], frames: &[(usize, Duration, Vec<u8>)]) -> Vec<Obs> {
    let mut out: Vec<Obs> = frames
        .iter()
        .filter_map(|(point, ts, data)| {
            let pkt = packet::parse(data)?;
            let dir = points.get(*point)?.side.dir(pkt.src_mac);
            Some(Obs {
                point: *point,
                dir,
                ts: *ts,
                pkt,
            })
        })
        .collect();
    out.sort_by_key(|o| (o.ts, o.point));
    out
}

/// What the trace sent, as the sending socket knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub from: String,
    pub proto: u8,
    /// The socket's local port (TCP/UDP) or ICMP echo identifier.
    pub local_port: u16,
    pub dst: std::net::Ipv4Addr,
    pub dport: u16,
}

/// One sighting of the traced packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub point: usize,
    pub node: String,
    pub iface: String,
    pub dir: Dir,
    pub ts: Duration,
    pub tuple: Tuple,
    /// "SYN", "SYN-ACK", "echo reply", "ICMP net unreachable", ...
    pub kind: String,
    /// How many more times the same packet crossed this point (retransmissions).
    pub repeats: usize,
}

/// A change of addresses or ports inside one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub node: String,
    /// Index of the hop that left the namespace translated.
    pub hop: usize,
    pub before: Tuple,
    pub after: Tuple,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    pub hops: Vec<Seen>,
    pub changes: Vec<Change>,
}

impl Leg {
    /// A leg of these hops, in order, with the translations between them.
    pub fn new(hops: Vec<Seen>) -> Leg {
        let changes = changes(&hops);
        Leg { hops, changes }
    }

    pub fn last(&self) -> Option<&Seen> {
        self.hops.last()
    }
}

/// The request (the first packet FROM sent) and its reply, each followed everywhere.
pub fn legs(points: &[PointInfo], obs: &[Obs], probe: &Probe) -> (Option<Leg>, Option<Leg>) {
    let Some(first) = obs.iter().find(|o| {
        let p = &points[o.point];
        p.node == probe.from
            && o.dir == Dir::Out
            && o.pkt.proto == probe.proto
            && o.pkt.dst == probe.dst
            && o.pkt.sport == probe.local_port
            && o.pkt.dport == probe.dport
            && is_opening(&o.pkt)
    }) else {
        return (None, None);
    };
    let req_fp = first.pkt.fingerprint();
    let request = follow(points, obs, &req_fp);
    let tuples: Vec<Tuple> = request.hops.iter().map(|h| h.tuple).collect();
    let reply_first = obs.iter().find(|o| {
        if o.pkt.fingerprint() == req_fp {
            return false;
        }
        match &o.pkt.l4 {
            L4Info::IcmpError {
                quoted: Some(q), ..
            } => tuples.iter().any(|t| {
                t.src == q.src
                    && t.dst == q.dst
                    && t.proto == q.proto
                    && t.sport == q.sport
                    && t.dport == q.dport
            }),
            L4Info::Tcp { ack, flags: f, .. } => {
                let answers = match first.pkt.l4 {
                    L4Info::Tcp { seq, .. } => *ack == seq.wrapping_add(1),
                    _ => false,
                };
                answers
                    && f & (flags::SYN | flags::RST) != 0
                    && tuples.iter().any(|t| t.reversed() == o.pkt.tuple())
            }
            L4Info::IcmpEcho { ty, seq, .. } => {
                let same_seq = matches!(first.pkt.l4, L4Info::IcmpEcho { seq: s, .. } if s == *seq);
                *ty == 0
                    && same_seq
                    && tuples
                        .iter()
                        .any(|t| t.src == o.pkt.dst && t.dst == o.pkt.src)
            }
            _ => tuples.iter().any(|t| t.reversed() == o.pkt.tuple()),
        }
    });
    let reply = reply_first.map(|r| follow(points, obs, &r.pkt.fingerprint()));
    (Some(request), reply)
}

/// The packet that opens the exchange: a TCP SYN, a UDP datagram, an echo request.
fn is_opening(p: &Pkt) -> bool {
    match p.l4 {
        L4Info::Tcp { flags: f, .. } => f & flags::SYN != 0 && f & flags::ACK == 0,
        L4Info::IcmpEcho { ty, .. } => ty == 8,
        L4Info::Udp { .. } => true,
        _ => false,
    }
}

/// Every sighting of the packet with fingerprint `fp`, in time order; a
/// point seen twice in the same direction (a retransmission) counts once.
fn follow(points: &[PointInfo], obs: &[Obs], fp: &Fingerprint) -> Leg {
    let mut hops: Vec<Seen> = Vec::new();
    // Within one capture the fingerprint is unique (TCP sequence numbers are random, a
    // trace sends one datagram or echo), so no time filter is needed: a frame a reader
    // stamped late must not fall out.
    for o in obs.iter().filter(|o| &o.pkt.fingerprint() == fp) {
        if let Some(h) = hops
            .iter_mut()
            .find(|h| h.point == o.point && h.dir == o.dir)
        {
            h.repeats += 1;
            continue;
        }
        let p = &points[o.point];
        hops.push(Seen {
            point: o.point,
            node: p.node.clone(),
            iface: p.iface.clone(),
            dir: o.dir,
            ts: o.ts,
            tuple: o.pkt.tuple(),
            kind: o.pkt.kind(),
            repeats: 0,
        });
    }
    Leg::new(hops)
}

fn changes(hops: &[Seen]) -> Vec<Change> {
    hops.windows(2)
        .enumerate()
        .filter(|(_, w)| {
            w[0].node == w[1].node
                && w[0].dir == Dir::In
                && w[1].dir == Dir::Out
                && w[0].tuple != w[1].tuple
        })
        .map(|(i, w)| Change {
            node: w[1].node.clone(),
            hop: i + 1,
            before: w[0].tuple,
            after: w[1].tuple,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::packet::tests::tcp_frame;
    use crate::trace::packet::{TCP, flags};

    const WEB: u8 = 1; // web/eth0
    const ROUTER_WEB: u8 = 2; // the router's bridge (sends out p-web)
    const ROUTER_IGW: u8 = 3; // vpc-router/to-igw
    const IGW_VPC: u8 = 4; // my-igw/to-vpc
    const IGW_INET: u8 = 5; // my-igw/to-internet
    const INET_IGW: u8 = 6; // internet/to-igw
    const INET_BR: u8 = 7; // the internet's bridge (sends out h-example-web)
    const EXAMPLE: u8 = 8; // example-web/eth0

    fn mac(n: u8) -> [u8; 6] {
        [2, 0, 0, 0, 0, n]
    }

    fn pt(node: &str, iface: &str, side: Side) -> PointInfo {
        PointInfo {
            node: node.into(),
            iface: iface.into(),
            side,
        }
    }

    /// The capture points of web → example-web, as `trace` sets them up.
    fn points() -> Vec<PointInfo> {
        vec![
            pt("web", "eth0", Side::OwnMac(mac(WEB))),
            pt("vpc-router", "p-web", Side::PeerMac(mac(WEB))),
            pt("vpc-router", "to-igw", Side::OwnMac(mac(ROUTER_IGW))),
            pt("my-igw", "to-vpc", Side::OwnMac(mac(IGW_VPC))),
            pt("my-igw", "to-internet", Side::OwnMac(mac(IGW_INET))),
            pt("internet", "to-igw", Side::OwnMac(mac(INET_IGW))),
            pt("internet", "h-example-web", Side::PeerMac(mac(EXAMPLE))),
            pt("example-web", "eth0", Side::OwnMac(mac(EXAMPLE))),
        ]
    }

    /// Frames of one SYN and its SYN-ACK across the path, with the IGW's static NAT, in
    /// shuffled order (readers hand frames over in any order).
    fn frames() -> Vec<(usize, Duration, Vec<u8>)> {
        let web = [10, 0, 2, 238];
        let public = [198, 51, 100, 10];
        let ex = [203, 0, 113, 60];
        let syn = |m, s| tcp_frame(m, s, 40001, ex, 80, flags::SYN, 1000, 0);
        let synack = |m, d| tcp_frame(m, ex, 80, d, 40001, flags::SYN | flags::ACK, 7000, 1001);
        let us = Duration::from_micros;
        let mut f = vec![
            (0, us(10), syn(WEB, web)),
            (1, us(11), syn(WEB, web)),
            (2, us(20), syn(ROUTER_IGW, web)),
            (3, us(21), syn(ROUTER_IGW, web)),
            (4, us(30), syn(IGW_INET, public)),
            (5, us(31), syn(IGW_INET, public)),
            (6, us(40), syn(INET_BR, public)),
            (7, us(41), syn(INET_BR, public)),
            // An unrelated packet: another connection from web.
            (
                0,
                us(45),
                tcp_frame(WEB, web, 50000, ex, 443, flags::SYN, 1, 0),
            ),
            (7, us(50), synack(EXAMPLE, public)),
            (6, us(51), synack(EXAMPLE, public)),
            (5, us(60), synack(INET_IGW, public)),
            (4, us(61), synack(INET_IGW, public)),
            (3, us(70), synack(IGW_VPC, web)),
            (2, us(71), synack(IGW_VPC, web)),
            (1, us(80), synack(ROUTER_WEB, web)),
            (0, us(81), synack(ROUTER_WEB, web)),
            // A retransmitted SYN-ACK at example-web.
            (7, us(900), synack(EXAMPLE, public)),
        ];
        f.reverse();
        f
    }

    fn probe() -> Probe {
        Probe {
            from: "web".into(),
            proto: TCP,
            local_port: 40001,
            dst: "203.0.113.60".parse().unwrap(),
            dport: 80,
        }
    }

    #[test]
    fn follows_request_and_reply_through_the_internet_gateways_static_nat() {
        let pts = points();
        let obs = observations(&pts, &frames());
        let (req, reply) = legs(&pts, &obs, &probe());
        let req = req.unwrap();
        let seen: Vec<String> = req
            .hops
            .iter()
            .map(|h| {
                format!(
                    "{}/{} {} {}",
                    h.node,
                    h.iface,
                    h.dir.as_str(),
                    h.tuple.src_str()
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                "web/eth0 out 10.0.2.238:40001",
                "vpc-router/p-web in 10.0.2.238:40001",
                "vpc-router/to-igw out 10.0.2.238:40001",
                "my-igw/to-vpc in 10.0.2.238:40001",
                "my-igw/to-internet out 198.51.100.10:40001",
                "internet/to-igw in 198.51.100.10:40001",
                "internet/h-example-web out 198.51.100.10:40001",
                "example-web/eth0 in 198.51.100.10:40001",
            ]
        );
        assert_eq!(req.changes.len(), 1);
        let c = &req.changes[0];
        assert_eq!((c.node.as_str(), c.hop), ("my-igw", 4));
        assert_eq!(c.before.src.to_string(), "10.0.2.238");
        assert_eq!(c.after.src.to_string(), "198.51.100.10");

        let reply = reply.unwrap();
        assert_eq!(reply.hops.len(), 8);
        assert_eq!(reply.hops[0].kind, "SYN-ACK");
        assert_eq!(
            reply.hops[0].repeats, 1,
            "the retransmission is counted, not listed"
        );
        assert_eq!(reply.changes.len(), 1);
        assert_eq!(reply.changes[0].before.dst.to_string(), "198.51.100.10");
        assert_eq!(reply.changes[0].after.dst.to_string(), "10.0.2.238");
        let last = reply.last().unwrap();
        assert_eq!((last.node.as_str(), last.dir), ("web", Dir::In));
    }

    #[test]
    fn a_request_that_vanishes_is_last_seen_where_it_entered() {
        let pts = points();
        let obs: Vec<Obs> = observations(&pts, &frames())
            .into_iter()
            .filter(|o| o.ts.as_micros() < 35 || o.pkt.sport == 50000)
            .collect();
        let (req, reply) = legs(&pts, &obs, &probe());
        assert!(reply.is_none());
        let last = req.unwrap().last().unwrap().clone();
        assert_eq!(
            (last.node.as_str(), last.iface.as_str(), last.dir),
            ("internet", "to-igw", Dir::In)
        );
    }

    #[test]
    fn nothing_is_found_when_the_request_never_left() {
        let pts = points();
        let obs = observations(&pts, &frames());
        let mut p = probe();
        p.local_port = 1234;
        assert_eq!(legs(&pts, &obs, &p), (None, None));
    }

    #[test]
    fn direction_comes_from_the_mac_of_the_sending_end() {
        assert_eq!(Side::OwnMac(mac(1)).dir(mac(1)), Dir::Out);
        assert_eq!(Side::OwnMac(mac(1)).dir(mac(2)), Dir::In);
        assert_eq!(Side::PeerMac(mac(1)).dir(mac(1)), Dir::In);
        assert_eq!(Side::PeerMac(mac(1)).dir(mac(9)), Dir::Out);
    }
}
