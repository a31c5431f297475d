//! The lab's resolvers: the Amazon-provided DNS inside the VPC and the internet's resolver.
//!
//! Split in two, as aardvark-dns does: [`Zone`] is plain data with a pure lookup, tested
//! without sockets; [`spawn`] serves a `Zone` held in an `ArcSwap`, so whoever owns the
//! `ArcSwap` (the supervisor, on an RDS failover) flips every answer at once with one `store`,
//! and no query ever sees half of the old table and half of the new one.
//!
//! This module knows nothing about namespaces: the caller binds the sockets wherever they
//! belong and hands them over.

use crate::plan::dns::{Record, RecordData};
use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use hickory_proto::op::{
    Edns, Header, HeaderCounts, LowerQuery, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_proto::rr::rdata::{A, CNAME, PTR, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long a resolver may cache "no such name" / "no such type". Short, like the endpoint's
/// TTL, so a name that appears later in the lab's life shows up within seconds.
pub const NEGATIVE_TTL: u32 = 5;

/// CNAME hops followed before giving up: far more than any chain the plan builds (one hop),
/// few enough that a looping table costs nothing.
const MAX_CHAIN: usize = 8;

/// A TCP client that opens a connection and sends nothing is dropped after this long, so idle
/// connections can't pile up in the router namespace.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Responses queued per TCP connection before the connection's task waits.
const TCP_RESPONSE_BUFFER: usize = 32;

/// The outcome of a lookup, before it becomes a DNS message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    NxDomain,
    /// Only for a table that loops or chains too long: a bug in the data, never a missing name.
    ServFail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerData {
    A(Ipv4Addr),
    Cname(String),
    Ptr(String),
}

/// One record of an answer. Names are lowercase and without the trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerRecord {
    pub name: String,
    pub ttl: u32,
    pub data: AnswerData,
}

/// What a resolver says to one question. `rcode == NoError` with no records is NODATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub rcode: Rcode,
    pub records: Vec<AnswerRecord>,
}

impl Answer {
    /// NXDOMAIN and NODATA both carry an SOA in the authority section (RFC 2308), so a
    /// resolver knows how long it may remember the negative answer.
    pub fn is_negative(&self) -> bool {
        self.rcode == Rcode::NxDomain || (self.rcode == Rcode::NoError && self.records.is_empty())
    }
}

#[derive(Debug, Clone)]
enum Node {
    /// RFC 1034 §3.6.2: a CNAME owner has no other data, so the alias is the whole node.
    Alias { target: String, ttl: u32 },
    Data {
        a: Vec<(Ipv4Addr, u32)>,
        ptr: Vec<(String, u32)>,
    },
}

/// The records one resolver serves, indexed for lookup.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    nodes: HashMap<String, Node>,
    /// Proper ancestors of owner names (`compute.internal`, `0.10.in-addr.arpa`, the root).
    /// They exist as empty non-terminals, so they get NODATA rather than NXDOMAIN: a resolver
    /// doing QNAME minimisation (RFC 9156) would otherwise stop before reaching our names.
    interior: HashSet<String>,
}

impl Zone {
    /// Builds the lookup table from the plan's records and adds a PTR for every A record.
    ///
    /// The first A record of an address names it in reverse: the plan lists an instance's
    /// canonical name first (the private name inside the VPC, the public one on the internet),
    /// which is what AWS answers for a reverse lookup. A CNAME and other data at one name
    /// can't coexist in DNS; should the records say both, the CNAME wins.
    pub fn new(records: &[Record]) -> Self {
        let mut nodes: HashMap<String, Node> = HashMap::new();
        let mut reverse: Vec<(Ipv4Addr, String, u32)> = Vec::new();
        for r in records {
            let owner = normalise(&r.name);
            match &r.data {
                RecordData::Cname(target) => {
                    nodes.insert(
                        owner,
                        Node::Alias {
                            target: normalise(target),
                            ttl: r.ttl,
                        },
                    );
                }
                RecordData::A(ip) => {
                    if !reverse.iter().any(|(seen, _, _)| seen == ip) {
                        reverse.push((*ip, owner.clone(), r.ttl));
                    }
                    let node = nodes.entry(owner).or_insert_with(empty_data);
                    if let Node::Data { a, .. } = node
                        && !a.iter().any(|(seen, _)| seen == ip)
                    {
                        a.push((*ip, r.ttl));
                    }
                }
            }
        }
        for (ip, name, ttl) in reverse {
            if let Node::Data { ptr, .. } = nodes.entry(reverse_name(ip)).or_insert_with(empty_data)
            {
                ptr.push((name, ttl));
            }
        }
        let mut interior = HashSet::new();
        for owner in nodes.keys() {
            let mut rest = owner.as_str();
            while let Some((_, parent)) = rest.split_once('.') {
                interior.insert(parent.to_string());
                rest = parent;
            }
            interior.insert(String::new());
        }
        Zone { nodes, interior }
    }

    /// Answers one question from this table alone; nothing is forwarded anywhere, because
    /// the lab's world holds no other names.
    ///
    /// A CNAME is followed inside the table, as a recursive resolver would, so an A query for
    /// the RDS endpoint returns the CNAME and then the primary's A record. The rcode is that
    /// of the last name in the chain (RFC 6604): an alias to a missing name is NXDOMAIN.
    pub fn answer(&self, qname: &str, qtype: RecordType) -> Answer {
        let mut name = normalise(qname);
        let mut records = Vec::new();
        for _ in 0..MAX_CHAIN {
            match self.nodes.get(&name) {
                None => {
                    let rcode = if self.interior.contains(&name) {
                        Rcode::NoError
                    } else {
                        Rcode::NxDomain
                    };
                    return Answer { rcode, records };
                }
                Some(Node::Alias { target, ttl }) => {
                    records.push(AnswerRecord {
                        name: name.clone(),
                        ttl: *ttl,
                        data: AnswerData::Cname(target.clone()),
                    });
                    if matches!(qtype, RecordType::CNAME | RecordType::ANY) {
                        return Answer {
                            rcode: Rcode::NoError,
                            records,
                        };
                    }
                    name = target.clone();
                }
                Some(Node::Data { a, ptr }) => {
                    let want = |t: RecordType| qtype == t || qtype == RecordType::ANY;
                    if want(RecordType::A) {
                        records.extend(a.iter().map(|(ip, ttl)| AnswerRecord {
                            name: name.clone(),
                            ttl: *ttl,
                            data: AnswerData::A(*ip),
                        }));
                    }
                    if want(RecordType::PTR) {
                        records.extend(ptr.iter().map(|(target, ttl)| AnswerRecord {
                            name: name.clone(),
                            ttl: *ttl,
                            data: AnswerData::Ptr(target.clone()),
                        }));
                    }
                    return Answer {
                        rcode: Rcode::NoError,
                        records,
                    };
                }
            }
        }
        Answer {
            rcode: Rcode::ServFail,
            records: Vec::new(),
        }
    }
}

fn empty_data() -> Node {
    Node::Data {
        a: Vec::new(),
        ptr: Vec::new(),
    }
}

/// DNS names compare case-insensitively and `name.` is `name`: one spelling for the table.
fn normalise(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

fn reverse_name(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa")
}

/// Serves `zone` over every given socket on the current tokio runtime, until the returned
/// task is aborted (which closes the sockets) or a socket fails for good.
///
/// Must be called from inside a tokio runtime. The sockets are already bound, typically
/// inside a lab namespace by the caller; UDP and TCP both, since a truncated UDP answer makes
/// clients retry over TCP.
pub fn spawn(
    zone: Arc<ArcSwap<Zone>>,
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
) -> Result<JoinHandle<Result<()>>> {
    if udp.is_empty() && tcp.is_empty() {
        // hickory's server would finish at once, and the resolver would silently be absent.
        anyhow::bail!("dns: no sockets to serve on");
    }
    let mut server = Server::new(Handler { zone });
    for socket in udp {
        let addr = socket.local_addr().context("dns udp socket address")?;
        socket
            .set_nonblocking(true)
            .with_context(|| format!("dns udp {addr}: set nonblocking"))?;
        let socket = tokio::net::UdpSocket::from_std(socket)
            .with_context(|| format!("dns udp {addr}: register with tokio"))?;
        server.register_socket(socket);
    }
    for listener in tcp {
        let addr = listener.local_addr().context("dns tcp listener address")?;
        listener
            .set_nonblocking(true)
            .with_context(|| format!("dns tcp {addr}: set nonblocking"))?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .with_context(|| format!("dns tcp {addr}: register with tokio"))?;
        server.register_listener(listener, TCP_IDLE, TCP_RESPONSE_BUFFER);
    }
    Ok(tokio::spawn(async move {
        // The server owns its socket tasks: aborting this task drops it, and them.
        server
            .block_until_done()
            .await
            .map_err(|e| anyhow::anyhow!("dns server stopped: {e}"))
    }))
}

struct Handler {
    zone: Arc<ArcSwap<Zone>>,
}

/// A response ready to encode: header fields, records, and the EDNS to echo.
struct Reply {
    metadata: Metadata,
    answers: Vec<hickory_proto::rr::Record>,
    authorities: Vec<hickory_proto::rr::Record>,
    edns: Option<Edns>,
}

#[async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let zone = self.zone.load();
        let reply = reply(
            &zone,
            &request.metadata,
            request.queries.queries(),
            request.edns.as_ref(),
        );
        let response = MessageResponseBuilder::new(&request.queries, reply.edns.as_ref()).build(
            reply.metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            std::iter::empty(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(_) => {
                // Nothing reached the client; report the failure to the server's bookkeeping.
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// Everything about a response except the socket: which rcode, which records, which flags.
fn reply(zone: &Zone, request: &Metadata, queries: &[LowerQuery], edns: Option<&Edns>) -> Reply {
    let mut metadata = Metadata::response_from_request(request);
    // Like Amazon's resolver: a recursive service (RA set, AA clear), so `dig` prints no
    // "recursion requested but not available" and `nslookup` says "Non-authoritative answer",
    // as it does on a real instance.
    metadata.recursion_available = true;
    let mut reply = Reply {
        metadata,
        answers: Vec::new(),
        authorities: Vec::new(),
        edns: None,
    };
    if let Some(req) = edns {
        let mut ours = Edns::new();
        ours.set_max_payload(req.max_payload().max(512));
        ours.set_version(0);
        reply.edns = Some(ours);
        if req.version() > 0 {
            reply.metadata.response_code = ResponseCode::BADVERS;
            return reply;
        }
    }
    if request.message_type != MessageType::Query || request.op_code != OpCode::Query {
        reply.metadata.response_code = ResponseCode::NotImp;
        return reply;
    }
    let [query] = queries else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply;
    };
    let original = query.original();
    if !matches!(original.query_class(), DNSClass::IN | DNSClass::ANY) {
        reply.metadata.response_code = ResponseCode::Refused;
        return reply;
    }
    if matches!(original.query_type(), RecordType::AXFR | RecordType::IXFR) {
        // The table is the supervisor's, not a zone to transfer.
        reply.metadata.response_code = ResponseCode::Refused;
        return reply;
    }
    let qname = original.name();
    let answer = zone.answer(&qname.to_ascii(), original.query_type());
    reply.metadata.response_code = match answer.rcode {
        Rcode::NoError => ResponseCode::NoError,
        Rcode::NxDomain => ResponseCode::NXDomain,
        Rcode::ServFail => ResponseCode::ServFail,
    };
    let negative = answer.is_negative();
    let qname_key = normalise(&qname.to_ascii());
    for record in answer.records {
        // The client's spelling of its own question comes back as it was sent, which
        // resolvers using 0x20 case randomisation check.
        let owner = if record.name == qname_key {
            Some(qname.clone())
        } else {
            fqdn(&record.name)
        };
        let rdata = match &record.data {
            AnswerData::A(ip) => Some(RData::A(A(*ip))),
            AnswerData::Cname(target) => fqdn(target).map(|n| RData::CNAME(CNAME(n))),
            AnswerData::Ptr(target) => fqdn(target).map(|n| RData::PTR(PTR(n))),
        };
        match (owner, rdata) {
            (Some(owner), Some(rdata)) => reply.answers.push(
                hickory_proto::rr::Record::from_rdata(owner, record.ttl, rdata),
            ),
            // Only a name the plan should never produce (a label over 63 bytes) lands here.
            _ => {
                reply.answers.clear();
                reply.metadata.response_code = ResponseCode::ServFail;
                return reply;
            }
        }
    }
    if negative {
        reply.authorities.push(negative_soa());
    }
    reply
}

fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{name}.")).ok()
}

/// The SOA that carries the negative TTL. The lab's resolver is the whole DNS tree its hosts
/// can see, so the SOA is the root's. Nobody transfers this zone: the timers are placeholders.
fn negative_soa() -> hickory_proto::rr::Record {
    let name = |s: &str| Name::from_ascii(s).unwrap_or_else(|_| Name::root());
    let soa = SOA::new(
        name("ns.vpclab."),
        name("hostmaster.vpclab."),
        1,
        3600,
        600,
        86400,
        NEGATIVE_TTL,
    );
    hickory_proto::rr::Record::from_rdata(Name::root(), NEGATIVE_TTL, RData::SOA(soa))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::dns::{DnsPlan, endpoint};
    use crate::topology::{Source, load};
    use hickory_proto::op::{Message, Query};
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const WEB_PRIVATE: &str = "ip-10-0-2-238.ap-northeast-2.compute.internal";
    const WEB_PUBLIC: &str = "ec2-198-51-100-10.ap-northeast-2.compute.amazonaws.com";
    const PRIMARY: &str = "ip-10-0-3-87.ap-northeast-2.compute.internal";
    const STANDBY: &str = "ip-10-0-1-64.ap-northeast-2.compute.internal";

    /// The records the plan computes for the built-in hands-on lab: the tests check the
    /// server against the data it will really be given.
    fn plan() -> DnsPlan {
        let lab = load(Source::Builtin, None).expect("built-in lab").lab;
        crate::plan::dns::compile(&lab)
    }

    fn endpoint_name(plan: &DnsPlan) -> String {
        plan.vpc
            .records
            .iter()
            .find(|r| matches!(r.data, RecordData::Cname(_)))
            .expect("the hands-on lab has an RDS endpoint")
            .name
            .clone()
    }

    fn vpc() -> Zone {
        Zone::new(&plan().vpc.records)
    }

    fn a(name: &str, ttl: u32, ip: [u8; 4]) -> AnswerRecord {
        AnswerRecord {
            name: name.into(),
            ttl,
            data: AnswerData::A(Ipv4Addr::from(ip)),
        }
    }

    fn cname(name: &str, ttl: u32, target: &str) -> AnswerRecord {
        AnswerRecord {
            name: name.into(),
            ttl,
            data: AnswerData::Cname(target.into()),
        }
    }

    fn record(name: &str, ttl: u32, data: RecordData) -> Record {
        Record {
            name: name.into(),
            ttl,
            data,
        }
    }

    /// The zone after an RDS failover: the endpoint names the standby.
    fn failed_over(plan: &DnsPlan) -> Zone {
        let ep = endpoint_name(plan);
        let records: Vec<Record> = plan
            .vpc
            .records
            .iter()
            .map(|r| {
                if r.name == ep {
                    endpoint(&ep, STANDBY.into())
                } else {
                    r.clone()
                }
            })
            .collect();
        Zone::new(&records)
    }

    #[test]
    fn private_name_resolves_to_the_private_ip_with_the_ec2_ttl() {
        let answer = vpc().answer(WEB_PRIVATE, RecordType::A);
        assert_eq!(answer.rcode, Rcode::NoError);
        assert_eq!(answer.records, [a(WEB_PRIVATE, 60, [10, 0, 2, 238])]);
    }

    #[test]
    fn public_name_is_split_horizon() {
        let plan = plan();
        let inside = Zone::new(&plan.vpc.records).answer(WEB_PUBLIC, RecordType::A);
        assert_eq!(inside.records, [a(WEB_PUBLIC, 60, [10, 0, 2, 238])]);
        let outside = Zone::new(&plan.internet.records).answer(WEB_PUBLIC, RecordType::A);
        assert_eq!(outside.records, [a(WEB_PUBLIC, 60, [198, 51, 100, 10])]);
    }

    #[test]
    fn endpoint_is_a_short_lived_cname_chased_to_the_primary() {
        let plan = plan();
        let ep = endpoint_name(&plan);
        let zone = Zone::new(&plan.vpc.records);
        let answer = zone.answer(&ep, RecordType::A);
        assert_eq!(answer.rcode, Rcode::NoError);
        assert_eq!(
            answer.records,
            [cname(&ep, 5, PRIMARY), a(PRIMARY, 60, [10, 0, 3, 87])]
        );
        // Asked for the alias itself, the resolver stops at it.
        assert_eq!(
            zone.answer(&ep, RecordType::CNAME).records,
            [cname(&ep, 5, PRIMARY)]
        );
        // No AAAA behind the alias: the CNAME, then nothing (NOERROR, not NXDOMAIN).
        let aaaa = zone.answer(&ep, RecordType::AAAA);
        assert_eq!(aaaa.rcode, Rcode::NoError);
        assert_eq!(aaaa.records, [cname(&ep, 5, PRIMARY)]);
    }

    #[test]
    fn failover_table_points_the_endpoint_at_the_standby() {
        let plan = plan();
        let ep = endpoint_name(&plan);
        let answer = failed_over(&plan).answer(&ep, RecordType::A);
        assert_eq!(
            answer.records,
            [cname(&ep, 5, STANDBY), a(STANDBY, 60, [10, 0, 1, 64])]
        );
    }

    #[test]
    fn internet_hosts_resolve_on_both_sides() {
        let plan = plan();
        for zone in [
            Zone::new(&plan.vpc.records),
            Zone::new(&plan.internet.records),
        ] {
            assert_eq!(
                zone.answer("example-web.example", RecordType::A).records,
                [a("example-web.example", 60, [203, 0, 113, 60])]
            );
        }
    }

    #[test]
    fn unknown_names_are_nxdomain() {
        let zone = vpc();
        for name in [
            "www.google.com",
            "ip-10-0-9-9.ap-northeast-2.compute.internal",
            "nothing.example",
            "x.ip-10-0-2-238.ap-northeast-2.compute.internal",
        ] {
            let answer = zone.answer(name, RecordType::A);
            assert_eq!(answer.rcode, Rcode::NxDomain, "{name}");
            assert!(answer.records.is_empty());
            assert!(answer.is_negative());
        }
    }

    #[test]
    fn a_name_without_the_asked_type_is_nodata() {
        let zone = vpc();
        for qtype in [
            RecordType::AAAA,
            RecordType::MX,
            RecordType::TXT,
            RecordType::PTR,
        ] {
            let answer = zone.answer(WEB_PRIVATE, qtype);
            assert_eq!(answer.rcode, Rcode::NoError, "{qtype}");
            assert!(answer.records.is_empty());
            assert!(answer.is_negative());
        }
    }

    #[test]
    fn ancestors_of_our_names_exist_but_hold_nothing() {
        let zone = vpc();
        for name in [
            "compute.internal",
            "ap-northeast-2.compute.internal",
            "example",
            ".",
        ] {
            let answer = zone.answer(name, RecordType::A);
            assert_eq!(answer.rcode, Rcode::NoError, "{name}");
            assert!(answer.records.is_empty(), "{name}");
        }
    }

    #[test]
    fn names_match_whatever_the_case_and_trailing_dot() {
        let zone = vpc();
        let upper = WEB_PRIVATE.to_ascii_uppercase() + ".";
        assert_eq!(
            zone.answer(&upper, RecordType::A).records,
            [a(WEB_PRIVATE, 60, [10, 0, 2, 238])]
        );
        let ep = endpoint_name(&plan());
        assert_eq!(
            zone.answer(&format!("{ep}."), RecordType::A).records.len(),
            2
        );
    }

    #[test]
    fn reverse_lookups_name_the_address() {
        let plan = plan();
        let vpc = Zone::new(&plan.vpc.records);
        // In the VPC the private name wins over the public name that maps to the same IP.
        assert_eq!(
            vpc.answer("238.2.0.10.in-addr.arpa", RecordType::PTR)
                .records,
            [AnswerRecord {
                name: "238.2.0.10.in-addr.arpa".into(),
                ttl: 60,
                data: AnswerData::Ptr(WEB_PRIVATE.into()),
            }]
        );
        let internet = Zone::new(&plan.internet.records);
        assert_eq!(
            internet
                .answer("10.100.51.198.in-addr.arpa.", RecordType::PTR)
                .records,
            [AnswerRecord {
                name: "10.100.51.198.in-addr.arpa".into(),
                ttl: 60,
                data: AnswerData::Ptr(WEB_PUBLIC.into()),
            }]
        );
        // The VPC resolver knows nothing of the public address.
        assert_eq!(
            vpc.answer("10.100.51.198.in-addr.arpa", RecordType::PTR)
                .rcode,
            Rcode::NxDomain
        );
        assert_eq!(
            vpc.answer("99.2.0.10.in-addr.arpa", RecordType::PTR).rcode,
            Rcode::NxDomain
        );
        // Part of the reverse tree above a known address is an empty non-terminal.
        assert_eq!(
            vpc.answer("2.0.10.in-addr.arpa", RecordType::PTR).rcode,
            Rcode::NoError
        );
    }

    #[test]
    fn any_returns_what_the_name_holds() {
        let zone = vpc();
        assert_eq!(
            zone.answer(WEB_PRIVATE, RecordType::ANY).records,
            [a(WEB_PRIVATE, 60, [10, 0, 2, 238])]
        );
        let ep = endpoint_name(&plan());
        assert_eq!(
            zone.answer(&ep, RecordType::ANY).records,
            [cname(&ep, 5, PRIMARY)]
        );
    }

    #[test]
    fn broken_tables_fail_safely() {
        let looping = Zone::new(&[
            record("a.test", 5, RecordData::Cname("b.test".into())),
            record("b.test", 5, RecordData::Cname("a.test".into())),
        ]);
        let answer = looping.answer("a.test", RecordType::A);
        assert_eq!(answer.rcode, Rcode::ServFail);
        assert!(answer.records.is_empty());

        let dangling = Zone::new(&[record("a.test", 5, RecordData::Cname("gone.test".into()))]);
        let answer = dangling.answer("a.test", RecordType::A);
        assert_eq!(answer.rcode, Rcode::NxDomain);
        assert_eq!(answer.records, [cname("a.test", 5, "gone.test")]);

        let both = Zone::new(&[
            record("a.test", 60, RecordData::A(Ipv4Addr::new(192, 0, 2, 1))),
            record("a.test", 5, RecordData::Cname("b.test".into())),
            record("b.test", 60, RecordData::A(Ipv4Addr::new(192, 0, 2, 2))),
            record("b.test", 60, RecordData::A(Ipv4Addr::new(192, 0, 2, 2))),
        ]);
        assert_eq!(
            both.answer("a.test", RecordType::A).records,
            [
                cname("a.test", 5, "b.test"),
                a("b.test", 60, [192, 0, 2, 2])
            ]
        );
    }

    // ---- over sockets -------------------------------------------------------------------

    /// UDP and TCP on one ephemeral port of 127.0.0.1, as `dig +tcp -p` expects.
    fn bind_pair() -> (std::net::UdpSocket, std::net::TcpListener, SocketAddr) {
        for _ in 0..20 {
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
            let addr = udp.local_addr().expect("udp address");
            if let Ok(tcp) = std::net::TcpListener::bind(addr) {
                return (udp, tcp, addr);
            }
        }
        panic!("no port free for both UDP and TCP on 127.0.0.1");
    }

    fn serve(zone: Zone) -> (Arc<ArcSwap<Zone>>, SocketAddr, JoinHandle<Result<()>>) {
        let (udp, tcp, addr) = bind_pair();
        let table = Arc::new(ArcSwap::from_pointee(zone));
        let task = spawn(table.clone(), vec![udp], vec![tcp]).expect("spawn dns");
        (table, addr, task)
    }

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut msg = Message::query();
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
        msg.to_vec().expect("encode query")
    }

    async fn ask_udp(server: SocketAddr, packet: &[u8]) -> Message {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        sock.send_to(packet, server).await.expect("send");
        let mut buf = vec![0u8; 4096];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("an answer within 5 s")
            .expect("recv");
        Message::from_vec(&buf[..n]).expect("decode answer")
    }

    async fn ask_tcp(server: SocketAddr, packet: &[u8]) -> Message {
        let mut stream = tokio::net::TcpStream::connect(server)
            .await
            .expect("connect");
        let len = u16::try_from(packet.len()).expect("short query");
        stream.write_all(&len.to_be_bytes()).await.expect("write");
        stream.write_all(packet).await.expect("write");
        let read = async {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut buf).await?;
            std::io::Result::Ok(buf)
        };
        let buf = tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("an answer within 5 s")
            .expect("read");
        Message::from_vec(&buf).expect("decode answer")
    }

    fn rdata(msg: &Message) -> Vec<String> {
        msg.answers
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.ttl, r.data))
            .collect()
    }

    #[test]
    fn refuses_to_serve_on_nothing() {
        let zone = Arc::new(ArcSwap::from_pointee(Zone::default()));
        let err = spawn(zone, Vec::new(), Vec::new()).expect_err("no sockets");
        assert_eq!(err.to_string(), "dns: no sockets to serve on");
    }

    #[tokio::test]
    async fn serves_udp_and_tcp_and_flips_on_swap() {
        let plan = plan();
        let ep = endpoint_name(&plan);
        let (table, addr, task) = serve(Zone::new(&plan.vpc.records));
        let q = query(&format!("{ep}."), RecordType::A);

        let before = ask_udp(addr, &q).await;
        assert_eq!(before.metadata.response_code, ResponseCode::NoError);
        assert!(before.metadata.recursion_available);
        assert!(!before.metadata.authoritative);
        assert_eq!(
            rdata(&before),
            [
                format!("{ep}. 5 {PRIMARY}."),
                format!("{PRIMARY}. 60 10.0.3.87")
            ]
        );
        assert_eq!(rdata(&ask_tcp(addr, &q).await), rdata(&before));

        table.store(Arc::new(failed_over(&plan)));
        let after = ask_udp(addr, &q).await;
        assert_eq!(
            rdata(&after),
            [
                format!("{ep}. 5 {STANDBY}."),
                format!("{STANDBY}. 60 10.0.1.64")
            ]
        );
        assert_eq!(rdata(&ask_tcp(addr, &q).await), rdata(&after));
        task.abort();
    }

    #[tokio::test]
    async fn negative_answers_carry_the_soa_and_come_at_once() {
        let (_table, addr, task) = serve(vpc());
        let nx = ask_udp(addr, &query("nowhere.example.", RecordType::A)).await;
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert!(nx.answers.is_empty());
        assert_eq!(nx.authorities.len(), 1);
        assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(nx.authorities[0].ttl, NEGATIVE_TTL);

        let nodata = ask_udp(addr, &query(&format!("{WEB_PRIVATE}."), RecordType::AAAA)).await;
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        assert_eq!(nodata.authorities.len(), 1);
        task.abort();
    }

    #[tokio::test]
    async fn keeps_answering_after_malformed_and_odd_requests() {
        let (_table, addr, task) = serve(vpc());
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        // Shorter than a header: dropped. A header promising a question that isn't there:
        // FORMERR. Neither may take the server down.
        sock.send_to(b"\x12", addr).await.expect("send");
        sock.send_to(
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03ab",
            addr,
        )
        .await
        .expect("send");

        let mut chaos = Message::query();
        let mut q = Query::query(
            Name::from_ascii("version.bind.").expect("name"),
            RecordType::TXT,
        );
        q.set_query_class(DNSClass::CH);
        chaos.add_query(q);
        let reply = ask_udp(addr, &chaos.to_vec().expect("encode")).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);

        let axfr = ask_tcp(addr, &query("example.", RecordType::AXFR)).await;
        assert_eq!(axfr.metadata.response_code, ResponseCode::Refused);

        let ok = ask_udp(addr, &query(&format!("{WEB_PRIVATE}."), RecordType::A)).await;
        assert_eq!(rdata(&ok), [format!("{WEB_PRIVATE}. 60 10.0.2.238")]);
        task.abort();
    }

    /// Runs a real client, or says why not. Returns its standard output.
    async fn run(program: &str, args: &[String]) -> Option<String> {
        let out = match tokio::process::Command::new(program)
            .args(args)
            .output()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                eprintln!("skipping the {program} check: {program} not runnable ({e})");
                return None;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        println!("$ {program} {}\n{text}", args.join(" "));
        // dig aligns columns with tabs; compare words, not layout.
        let words = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
        Some(text.lines().map(words).collect::<Vec<_>>().join("\n"))
    }

    #[tokio::test]
    async fn dig_and_nslookup_see_what_an_instance_would() {
        let plan = plan();
        let ep = endpoint_name(&plan);
        let (table, addr, task) = serve(Zone::new(&plan.vpc.records));
        let at = |extra: &[&str]| -> Vec<String> {
            let mut args = vec![
                "@127.0.0.1".to_string(),
                "-p".into(),
                addr.port().to_string(),
                "+tries=1".into(),
                "+time=3".into(),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            args
        };
        let Some(out) = run("dig", &at(&[&ep])).await else {
            task.abort();
            return;
        };
        assert!(out.contains("status: NOERROR"), "{out}");
        assert!(
            out.contains(&format!("{ep}. 5 IN CNAME {PRIMARY}.")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{PRIMARY}. 60 IN A 10.0.3.87")),
            "{out}"
        );
        assert!(
            !out.contains("recursion requested but not available"),
            "{out}"
        );

        let out = run("dig", &at(&["+tcp", "+short", "-x", "10.0.2.238"]))
            .await
            .unwrap_or_default();
        assert_eq!(out.trim(), format!("{WEB_PRIVATE}."));

        let out = run("dig", &at(&["no-such-host.example"]))
            .await
            .unwrap_or_default();
        assert!(out.contains("status: NXDOMAIN"), "{out}");

        let out = run("dig", &at(&["AAAA", WEB_PRIVATE]))
            .await
            .unwrap_or_default();
        assert!(
            out.contains("status: NOERROR") && out.contains("ANSWER: 0"),
            "{out}"
        );

        table.store(Arc::new(failed_over(&plan)));
        let out = run("dig", &at(&["+short", &ep])).await.unwrap_or_default();
        assert_eq!(out.trim(), format!("{STANDBY}.\n10.0.1.64"));

        let port = format!("-port={}", addr.port());
        if let Some(out) = run(
            "nslookup",
            &[
                port.clone(),
                "-timeout=3".into(),
                ep.clone(),
                "127.0.0.1".into(),
            ],
        )
        .await
        {
            assert!(
                out.contains(&format!("canonical name = {STANDBY}.")),
                "{out}"
            );
            assert!(out.contains("Address: 10.0.1.64"), "{out}");
        }
        if let Some(out) = run(
            "nslookup",
            &[
                port,
                "-timeout=3".into(),
                "10.0.2.238".into(),
                "127.0.0.1".into(),
            ],
        )
        .await
        {
            assert!(out.contains(&format!("name = {WEB_PRIVATE}.")), "{out}");
        }
        task.abort();
    }
}
