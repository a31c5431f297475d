use super::*;
use crate::kernel::conntrack::CtTuple;
use crate::topology::{self, Source};
use crate::trace::counters::RuleVerdict;
use crate::trace::dns::Lookup;
use crate::trace::packet::TCP;
use crate::trace::path;
use std::cell::RefCell;

/// A trace's observations on a lab, owned, for `Observed` to borrow.
struct Case {
    lab: Lab,
    plan: Plan,
    from: String,
    target: Target,
    request: Option<Leg>,
    reply: Option<Leg>,
    moved: HashMap<String, Vec<Moved>>,
    mappings: HashMap<String, Vec<CtEntry>>,
    sim_request: SimPath,
    sim_reply: Option<SimPath>,
    outcome: Outcome,
}

impl Case {
    /// A TCP trace from FROM to TO's `port` that saw nothing yet: the target resolved
    /// from the Plan's records and the path the Plan predicts.
    fn new(source: Source, from: &str, to: &str, port: u16) -> Case {
        let lab = topology::load(source, None).unwrap().lab;
        let plan = crate::plan::compile(&lab);
        let target = resolve::resolve(&plan, from, to, &|_, _| Lookup::NoServer).unwrap();
        let guess = Tuple {
            proto: TCP,
            src: plan.host(from).unwrap().private_ip,
            sport: 40000,
            dst: target.ip,
            dport: port,
        };
        let (sim_request, sim_reply) = path::round_trip(&plan, from, guess);
        Case {
            lab,
            plan,
            from: from.into(),
            target,
            request: None,
            reply: None,
            moved: HashMap::new(),
            mappings: HashMap::new(),
            sim_request,
            sim_reply,
            outcome: Outcome::TimedOut,
        }
    }

    fn builtin(from: &str, to: &str, port: u16) -> Case {
        Case::new(Source::Builtin, from, to, port)
    }

    /// A rule of `node` whose counter moved by `packets` during the trace.
    fn counted(
        &mut self,
        node: &str,
        chain: &str,
        comment: &str,
        verdict: RuleVerdict,
        packets: u64,
    ) {
        self.moved.entry(node.into()).or_default().push(Moved {
            chain: chain.into(),
            comment: comment.into(),
            verdict,
            packets,
        });
    }

    fn build(&self, route_get: RouteGet) -> Findings {
        build(
            &Observed {
                plan: &self.plan,
                lab: &self.lab,
                from: &self.from,
                target: &self.target,
                request: self.request.as_ref(),
                reply: self.reply.as_ref(),
                moved: &self.moved,
                mappings: &self.mappings,
                sim_request: &self.sim_request,
                sim_reply: self.sim_reply.as_ref(),
                outcome: &self.outcome,
            },
            route_get,
        )
    }
}

fn never_asked(q: &RouteQuery) -> Option<RouteLookup> {
    panic!("the route lookup was asked: {q:?}")
}

fn endpoint(s: &str) -> (Ipv4Addr, u16) {
    let (ip, port) = s.split_once(':').unwrap();
    (ip.parse().unwrap(), port.parse().unwrap())
}

/// A captured leg of `kind` packets, its hops written as tests/trace.rs prints them
/// (`node/iface dir src:port dst:port`), 10 µs apart from `start_us`.
fn leg(kind: &str, start_us: u64, hops: &[String]) -> Leg {
    Leg::new(
        hops.iter()
            .enumerate()
            .map(|(i, h)| {
                let f: Vec<&str> = h.split(' ').collect();
                let (node, iface) = f[0].split_once('/').unwrap();
                let (src, sport) = endpoint(f[2]);
                let (dst, dport) = endpoint(f[3]);
                Seen {
                    point: i,
                    node: node.into(),
                    iface: iface.into(),
                    dir: if f[1] == "in" { Dir::In } else { Dir::Out },
                    ts: Duration::from_micros(start_us + 10 * i as u64),
                    tuple: Tuple {
                        proto: TCP,
                        src,
                        sport,
                        dst,
                        dport,
                    },
                    kind: kind.into(),
                    repeats: 0,
                }
            })
            .collect(),
    )
}

/// A leg's hops as tests/trace.rs prints them, with their numbers.
fn hops(l: &LegReport) -> Vec<String> {
    l.hops
        .iter()
        .map(|h| {
            format!(
                "{} {}/{} {} {} {}",
                h.n,
                h.node,
                h.iface,
                h.dir.as_str(),
                ep(h.src, h.sport),
                ep(h.dst, h.dport)
            )
        })
        .collect()
}

fn numbered(first: usize, hops: &[String]) -> Vec<String> {
    hops.iter()
        .enumerate()
        .map(|(i, h)| format!("{} {h}", first + i))
        .collect()
}

fn steps(f: &Findings) -> Vec<String> {
    f.steps
        .iter()
        .map(|s| format!("({}) {} @{} {}", s.n, s.leg, s.hop, s.text))
        .collect()
}

const WEB: &str = "10.0.2.238";
const WEB_PUBLIC: &str = "198.51.100.10";
const APP: &str = "10.0.1.101";
const NAT_PRIVATE: &str = "10.0.0.4";
const NAT_EIP: &str = "198.51.100.11";
const EXAMPLE_WEB: &str = "203.0.113.60";

#[test]
fn the_internet_gateway_walk_through_names_its_static_nat_both_ways() {
    let mut c = Case::builtin("web", "example-web", 80);
    let p = 40001;
    let request = [
        format!("web/eth0 out {WEB}:{p} {EXAMPLE_WEB}:80"),
        format!("vpc-router/p-web in {WEB}:{p} {EXAMPLE_WEB}:80"),
        format!("vpc-router/to-igw out {WEB}:{p} {EXAMPLE_WEB}:80"),
        format!("my-igw/to-vpc in {WEB}:{p} {EXAMPLE_WEB}:80"),
        format!("my-igw/to-internet out {WEB_PUBLIC}:{p} {EXAMPLE_WEB}:80"),
        format!("internet/to-igw in {WEB_PUBLIC}:{p} {EXAMPLE_WEB}:80"),
        format!("internet/h-example-web out {WEB_PUBLIC}:{p} {EXAMPLE_WEB}:80"),
        format!("example-web/eth0 in {WEB_PUBLIC}:{p} {EXAMPLE_WEB}:80"),
    ];
    let reply = [
        format!("example-web/eth0 out {EXAMPLE_WEB}:80 {WEB_PUBLIC}:{p}"),
        format!("internet/h-example-web in {EXAMPLE_WEB}:80 {WEB_PUBLIC}:{p}"),
        format!("internet/to-igw out {EXAMPLE_WEB}:80 {WEB_PUBLIC}:{p}"),
        format!("my-igw/to-internet in {EXAMPLE_WEB}:80 {WEB_PUBLIC}:{p}"),
        format!("my-igw/to-vpc out {EXAMPLE_WEB}:80 {WEB}:{p}"),
        format!("vpc-router/to-igw in {EXAMPLE_WEB}:80 {WEB}:{p}"),
        format!("vpc-router/p-web out {EXAMPLE_WEB}:80 {WEB}:{p}"),
        format!("web/eth0 in {EXAMPLE_WEB}:80 {WEB}:{p}"),
    ];
    c.request = Some(leg("SYN", 1000, &request));
    c.reply = Some(leg("SYN-ACK", 1200, &reply));
    c.outcome = Outcome::Answered;
    let sg_out = "MyWebServer-SecurityGroup outbound: All traffic to 0.0.0.0/0";
    c.counted("web", "output", sg_out, RuleVerdict::Accept, 1);
    c.counted(
        "web",
        "input",
        "stateful: replies to allowed traffic return",
        RuleVerdict::Accept,
        1,
    );
    let out = format!("my-igw: static NAT {WEB} -> {WEB_PUBLIC} (web)");
    let back = format!("my-igw: static NAT {WEB_PUBLIC} -> {WEB} (web)");
    c.counted(
        "my-igw",
        "postrouting",
        &out,
        RuleVerdict::Snat {
            addr: Some(WEB_PUBLIC.parse().unwrap()),
        },
        4,
    );
    c.counted(
        "my-igw",
        "prerouting",
        &back,
        RuleVerdict::Dnat {
            addr: Some(WEB.parse().unwrap()),
        },
        2,
    );

    let f = c.build(&never_asked);
    assert!(f.reachable);
    assert!(f.stopped.is_none());
    let req = f.request.as_ref().unwrap();
    let rep = f.reply.as_ref().unwrap();
    assert_eq!(
        (req.packet.as_str(), rep.packet.as_str()),
        ("SYN", "SYN-ACK")
    );
    assert_eq!(hops(req), numbered(1, &request));
    assert_eq!(hops(rep), numbered(9, &reply), "numbered across both legs");
    assert_eq!(req.hops[4].t_us, 40.0, "from the request leaving web");
    assert_eq!(rep.hops[7].t_us, 270.0);
    assert_eq!(req.hops[0].allowed_by, [sg_out]);
    assert!(rep.hops.iter().all(|h| h.allowed_by.is_empty()));
    assert_eq!(f.expected.len(), 8);
    assert_eq!(f.expected[4], "my-igw/to-internet out");

    let t = &req.translations[..];
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].hop, t[0].node.as_str()), (5, "my-igw"));
    assert_eq!(
        (t[0].device.as_str(), t[0].by),
        ("internet gateway", "nat rule")
    );
    assert_eq!(t[0].changed, ["source"]);
    let rule = &t[0].rules[0];
    assert_eq!(
        (rule.chain.as_str(), rule.comment.as_str()),
        ("postrouting", out.as_str())
    );
    assert_eq!(rule.packets, Some(4));
    assert_eq!(
        rule.rule,
        format!("ip saddr {WEB} counter ip saddr set {WEB_PUBLIC} comment \"{out}\"")
    );
    assert!(
        t[0].mapping.is_none(),
        "the internet gateway keeps no mapping"
    );
    // The reply is rewritten by the other rule of the 1:1 pair, not a connection table.
    let t = &rep.translations[..];
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].hop, t[0].by), (13, "stateless rule"));
    assert_eq!(t[0].changed, ["destination"]);
    assert_eq!(t[0].rules[0].comment, back);
    assert_eq!(t[0].rules[0].packets, Some(2));

    assert_eq!(
        steps(&f),
        [
            format!(
                "(1) request @1 web sends from its private IP: source {WEB}:{p}, destination {EXAMPLE_WEB}:80"
            ),
            format!("(2) request @5 internet gateway: static NAT {WEB} → {WEB_PUBLIC}"),
            format!(
                "(3) reply @12 the reply comes back addressed to {WEB_PUBLIC}:{p} (web's public IP)"
            ),
            format!("(4) reply @13 internet gateway: static NAT {WEB_PUBLIC} → {WEB}"),
            format!("(5) reply @16 the reply reaches web at {WEB}:{p}"),
        ]
    );
}

#[test]
fn the_nat_gateway_walk_through_has_the_write_ups_seven_steps() {
    let mut c = Case::builtin("app", "example-web", 80);
    let p = 40001;
    let request = [
        format!("app/eth0 out {APP}:{p} {EXAMPLE_WEB}:80"),
        format!("vpc-router/p-app in {APP}:{p} {EXAMPLE_WEB}:80"),
        format!("vpc-router/p-my-nat out {APP}:{p} {EXAMPLE_WEB}:80"),
        format!("my-nat/eth0 in {APP}:{p} {EXAMPLE_WEB}:80"),
        format!("my-nat/eth0 out {NAT_PRIVATE}:{p} {EXAMPLE_WEB}:80"),
        format!("vpc-router/p-my-nat in {NAT_PRIVATE}:{p} {EXAMPLE_WEB}:80"),
        format!("vpc-router/to-igw out {NAT_PRIVATE}:{p} {EXAMPLE_WEB}:80"),
        format!("my-igw/to-vpc in {NAT_PRIVATE}:{p} {EXAMPLE_WEB}:80"),
        format!("my-igw/to-internet out {NAT_EIP}:{p} {EXAMPLE_WEB}:80"),
        format!("internet/to-igw in {NAT_EIP}:{p} {EXAMPLE_WEB}:80"),
        format!("internet/h-example-web out {NAT_EIP}:{p} {EXAMPLE_WEB}:80"),
        format!("example-web/eth0 in {NAT_EIP}:{p} {EXAMPLE_WEB}:80"),
    ];
    let reply = [
        format!("example-web/eth0 out {EXAMPLE_WEB}:80 {NAT_EIP}:{p}"),
        format!("internet/h-example-web in {EXAMPLE_WEB}:80 {NAT_EIP}:{p}"),
        format!("internet/to-igw out {EXAMPLE_WEB}:80 {NAT_EIP}:{p}"),
        format!("my-igw/to-internet in {EXAMPLE_WEB}:80 {NAT_EIP}:{p}"),
        format!("my-igw/to-vpc out {EXAMPLE_WEB}:80 {NAT_PRIVATE}:{p}"),
        format!("vpc-router/to-igw in {EXAMPLE_WEB}:80 {NAT_PRIVATE}:{p}"),
        format!("vpc-router/p-my-nat out {EXAMPLE_WEB}:80 {NAT_PRIVATE}:{p}"),
        format!("my-nat/eth0 in {EXAMPLE_WEB}:80 {NAT_PRIVATE}:{p}"),
        format!("my-nat/eth0 out {EXAMPLE_WEB}:80 {APP}:{p}"),
        format!("vpc-router/p-my-nat in {EXAMPLE_WEB}:80 {APP}:{p}"),
        format!("vpc-router/p-app out {EXAMPLE_WEB}:80 {APP}:{p}"),
        format!("app/eth0 in {EXAMPLE_WEB}:80 {APP}:{p}"),
    ];
    c.request = Some(leg("SYN", 0, &request));
    c.reply = Some(leg("SYN-ACK", 300, &reply));
    c.outcome = Outcome::Answered;
    let pat = format!("my-nat: port address translation to {NAT_PRIVATE} (tcp)");
    let new_conn = "my-nat: new connections from the VPC to the internet";
    c.counted(
        "app",
        "output",
        "MyApp-SecurityGroup outbound: All traffic to 0.0.0.0/0",
        RuleVerdict::Accept,
        1,
    );
    c.counted("my-nat", "forward", new_conn, RuleVerdict::Accept, 1);
    c.counted(
        "my-nat",
        "postrouting",
        &pat,
        RuleVerdict::Snat {
            addr: Some(NAT_PRIVATE.parse().unwrap()),
        },
        1,
    );
    c.counted(
        "my-igw",
        "postrouting",
        &format!("my-igw: static NAT {NAT_PRIVATE} -> {NAT_EIP} (my-nat)"),
        RuleVerdict::Snat {
            addr: Some(NAT_EIP.parse().unwrap()),
        },
        4,
    );
    c.counted(
        "my-igw",
        "prerouting",
        &format!("my-igw: static NAT {NAT_EIP} -> {NAT_PRIVATE} (my-nat)"),
        RuleVerdict::Dnat {
            addr: Some(NAT_PRIVATE.parse().unwrap()),
        },
        2,
    );
    let entry = |sport: u16| CtEntry {
        proto: TCP,
        orig: CtTuple {
            src: APP.parse().unwrap(),
            dst: EXAMPLE_WEB.parse().unwrap(),
            sport: Some(sport),
            dport: Some(80),
        },
        reply: CtTuple {
            src: EXAMPLE_WEB.parse().unwrap(),
            dst: NAT_PRIVATE.parse().unwrap(),
            sport: Some(80),
            dport: Some(sport),
        },
        status: crate::kernel::conntrack::IPS_SRC_NAT,
        timeout: Some(350),
        tcp_state: Some(3),
    };
    // Another connection of app's through the same gateway is not this trace's mapping.
    c.mappings
        .insert("my-nat".into(), vec![entry(p + 1), entry(p)]);

    let f = c.build(&never_asked);
    assert!(f.reachable);
    let req = f.request.as_ref().unwrap();
    let rep = f.reply.as_ref().unwrap();
    assert_eq!(hops(req), numbered(1, &request));
    assert_eq!(hops(rep), numbered(13, &reply));
    assert_eq!(
        steps(&f),
        [
            format!(
                "(1) request @1 app sends from its private IP: source {APP}:{p}, destination {EXAMPLE_WEB}:80"
            ),
            format!(
                "(2) request @5 NAT gateway: {APP}:{p} → {NAT_PRIVATE}:{p} (source translated, port kept; mapping recorded)"
            ),
            format!("(3) request @9 internet gateway: static NAT {NAT_PRIVATE} → {NAT_EIP}"),
            format!(
                "(4) reply @16 the reply comes back addressed to {NAT_EIP}:{p} (my-nat's Elastic IP)"
            ),
            format!("(5) reply @17 internet gateway: static NAT {NAT_EIP} → {NAT_PRIVATE}"),
            format!(
                "(6) reply @21 NAT gateway: {NAT_PRIVATE}:{p} → {APP}:{p} (destination translated back from the recorded mapping)"
            ),
            format!("(7) reply @24 the reply reaches app at {APP}:{p}"),
        ]
    );
    // The rule whose counter moved made the mapping, and the mapping is this connection's.
    let t = &req.translations[0];
    assert_eq!(
        (t.node.as_str(), t.device.as_str(), t.by),
        ("my-nat", "NAT gateway", "nat rule")
    );
    assert_eq!(
        (t.rules[0].comment.as_str(), t.rules[0].packets),
        (pat.as_str(), Some(1))
    );
    assert_eq!(t.mapping, Some(entry(p)));
    assert_eq!(
        req.hops[4].allowed_by,
        [new_conn],
        "the NAT gateway forwarded it"
    );
    // On the way back conntrack reverses the mapping: no rule ran, the Plan names the
    // one that made it.
    let t = &rep.translations[1];
    assert_eq!((t.node.as_str(), t.by), ("my-nat", "conntrack"));
    assert_eq!(
        (t.rules[0].comment.as_str(), t.rules[0].packets),
        (pat.as_str(), None)
    );
    assert_eq!(t.rules[0].chain, "postrouting");
    assert!(
        t.mapping.is_none(),
        "the mapping is shown where it was recorded"
    );
    assert_eq!(rep.translations[0].by, "stateless rule");
}

#[test]
fn a_blocked_request_stops_at_the_security_group_that_counted_it() {
    let mut c = Case::builtin("stranger", "web", 22);
    let stranger = "192.0.2.66";
    let p = 40001;
    let request = [
        format!("stranger/eth0 out {stranger}:{p} {WEB_PUBLIC}:22"),
        format!("internet/h-stranger in {stranger}:{p} {WEB_PUBLIC}:22"),
        format!("internet/to-igw out {stranger}:{p} {WEB_PUBLIC}:22"),
        format!("my-igw/to-internet in {stranger}:{p} {WEB_PUBLIC}:22"),
        format!("my-igw/to-vpc out {stranger}:{p} {WEB}:22"),
        format!("vpc-router/to-igw in {stranger}:{p} {WEB}:22"),
        format!("vpc-router/p-web out {stranger}:{p} {WEB}:22"),
        format!("web/eth0 in {stranger}:{p} {WEB}:22"),
    ];
    c.request = Some(leg("SYN", 0, &request));
    let no_inbound = "MyWebServer-SecurityGroup: no inbound rule allows this";
    c.counted("web", "input", no_inbound, RuleVerdict::Drop, 1);
    c.counted(
        "my-igw",
        "prerouting",
        &format!("my-igw: static NAT {WEB_PUBLIC} -> {WEB} (web)"),
        RuleVerdict::Dnat {
            addr: Some(WEB.parse().unwrap()),
        },
        1,
    );

    let f = c.build(&never_asked);
    assert!(!f.reachable);
    assert!(f.reply.is_none());
    assert_eq!(hops(f.request.as_ref().unwrap()), numbered(1, &request));
    let s = f.stopped.as_ref().unwrap();
    assert_eq!(
        (s.leg, s.last_seen, s.node.as_str()),
        ("request", Some(8), "web")
    );
    assert_eq!(s.code, Some("ENI_SG_RULES_MISMATCH"));
    assert_eq!(
        s.reason,
        format!("security group: {no_inbound} (the inbound rules of web's security groups)")
    );
    let rule = s.rule.as_ref().unwrap();
    assert_eq!(
        (rule.chain.as_str(), rule.comment.as_str()),
        ("input", no_inbound)
    );
    assert_eq!(rule.packets, Some(1));
    assert!(
        rule.rule.ends_with(&format!("comment \"{no_inbound}\"")),
        "{}",
        rule.rule
    );
    assert_eq!(
        steps(&f),
        [
            format!(
                "(1) request @1 stranger sends from its address: source {stranger}:{p}, destination {WEB_PUBLIC}:22"
            ),
            format!("(2) request @5 internet gateway: static NAT {WEB_PUBLIC} → {WEB}"),
        ]
    );
}

#[test]
fn a_request_no_rule_counted_is_explained_by_the_kernels_route_lookup_where_it_vanished() {
    let lab = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/labs/public-ip-private-subnet.yaml"
    );
    let mut c = Case::new(Source::File(lab.into()), "stuck", "example-web", 80);
    let stuck = c.plan.host("stuck").unwrap().private_ip;
    let request = [
        format!("stuck/eth0 out {stuck}:40001 {EXAMPLE_WEB}:80"),
        format!("vpc-router/p-stuck in {stuck}:40001 {EXAMPLE_WEB}:80"),
    ];
    c.request = Some(leg("SYN", 0, &request));
    let asked = RefCell::new(vec![]);
    let unreachable = |q: &RouteQuery| {
        asked
            .borrow_mut()
            .push(format!("{} {} {} {}", q.netns, q.iif, q.dst, q.src));
        Some(RouteLookup::Unreachable("Network is unreachable".into()))
    };
    let f = c.build(&unreachable);
    assert!(!f.reachable);
    let s = f.stopped.as_ref().unwrap();
    assert_eq!(
        (s.leg, s.last_seen, s.node.as_str()),
        ("request", Some(2), "vpc-router")
    );
    assert_eq!(s.code, Some("NO_ROUTE_TO_DESTINATION"));
    assert_eq!(
        s.reason,
        format!(
            "no route: route table isolated (rtb-0889c6b584455b01a) of the VPC router has no route to {EXAMPLE_WEB} \
             (`ip route get {EXAMPLE_WEB} from {stuck} iif br-isolated-a` in vpc-router: Network is unreachable)"
        )
    );
    assert!(s.rule.is_none());
    // Asked where the request entered: the subnet's bridge routes, not the veth.
    assert_eq!(
        *asked.borrow(),
        [format!(
            "vpclab-noigw.vpc-router br-isolated-a {EXAMPLE_WEB} {stuck}"
        )]
    );

    // When the kernel has a route (or cannot be asked) the report says where the
    // request was last seen and that no rule counted it.
    for answer in [
        Some(RouteLookup::Via {
            oif: Some(7),
            gateway: None,
        }),
        None,
    ] {
        let f = c.build(&|_| answer.clone());
        let s = f.stopped.as_ref().unwrap();
        assert_eq!((s.node.as_str(), s.code), ("vpc-router", None));
        assert_eq!(
            s.reason,
            "the request was last seen at vpc-router/p-stuck (in) and no drop rule counted it"
        );
    }
}
