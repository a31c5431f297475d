use super::*;
use crate::topology::flow_fields::{DEFAULT_FORMAT, parse_format};

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

const WEB: [u8; 4] = [10, 0, 2, 238];
const LAPTOP: [u8; 4] = [203, 0, 113, 10];
const APP: [u8; 4] = [10, 0, 1, 101];
const NAT: [u8; 4] = [10, 0, 0, 4];
const SITE: [u8; 4] = [192, 0, 2, 80];

/// The built-in lab's interfaces: web (public-2c), app (private-2a), my-nat (public-2a).
fn interface(node: &str) -> Interface {
    let lab = crate::topology::load(crate::topology::Source::Builtin, None)
        .unwrap()
        .lab;
    interfaces(&lab)
        .into_iter()
        .find(|i| i.node == node)
        .unwrap()
}

fn lines(i: &Interface, fields: &[FlowField], records: &[Record]) -> Vec<String> {
    records.iter().map(|r| i.line(fields, r)).collect()
}

const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
  {"table": {"family": "inet", "name": "vpclab-flow"}},
  {"set": {"name": "seen", "elem": [
    {"elem": {"val": {"concat": ["192.0.2.66", "10.0.2.238", "tcp", 40000, 22]}, "counter": {"packets": 1, "bytes": 60}}},
    {"elem": {"val": {"concat": ["10.0.2.238", "203.0.113.10", "tcp", 80, 41000]}, "counter": {"packets": 4, "bytes": 900}}}]}},
  {"set": {"name": "seen-noport", "elem": [
    {"elem": {"val": {"concat": ["203.0.113.10", "10.0.2.238", "icmp"]}, "counter": {"packets": 2, "bytes": 168}}}]}},
  {"set": {"name": "accepted", "elem": [
    {"elem": {"val": {"concat": ["10.0.2.238", "203.0.113.10", "tcp", 80, 41000]}, "counter": {"packets": 4, "bytes": 900}}}]}},
  {"set": {"name": "accepted-noport", "elem": [
    {"elem": {"val": {"concat": ["203.0.113.10", "10.0.2.238", "icmp"]}, "counter": {"packets": 2, "bytes": 168}}}]}},
  {"set": {"name": "syn", "elem": [
    {"elem": {"val": {"concat": ["192.0.2.66", "10.0.2.238", "tcp", 40000, 22]}, "counter": {"packets": 1, "bytes": 60}}}]}},
  {"set": {"name": "fin", "elem": [
    {"elem": {"val": {"concat": ["10.0.2.238", "203.0.113.10", "tcp", 80, 41000]}, "counter": {"packets": 1, "bytes": 52}}}]}},
  {"set": {"name": "syn-ack", "elem": [
    {"elem": {"val": {"concat": ["10.0.2.238", "203.0.113.10", "tcp", 80, 41000]}, "counter": {"packets": 1, "bytes": 60}}}]}}]}"#;

const ROUTER: &str = r#"{"nftables": [
  {"set": {"name": "router", "elem": ["10.0.0.2"]}},
  {"set": {"name": "acl-outbound-rejected-noport", "elem": [
    {"elem": {"val": {"concat": ["10.0.2.238", "203.0.113.10", "icmp"]}, "counter": {"packets": 2, "bytes": 168}}}]}},
  {"set": {"name": "acl-inbound-rejected-udp", "elem": [
    {"elem": {"val": {"concat": ["203.0.113.10", "10.0.2.238", 5000, 53, "10.0.2.238"]}, "counter": {"packets": 3, "bytes": 210}}},
    {"elem": {"val": {"concat": ["203.0.113.10", "10.0.1.101", 5000, 53, "10.0.1.101"]}, "counter": {"packets": 9, "bytes": 630}}}]}}]}"#;

#[test]
fn a_listing_gives_every_flow_with_protocol_numbers_next_hops_and_no_ports_for_icmp() {
    let s = parse_listing(LISTING).unwrap();
    assert_eq!(
        s[&(Counts::Seen, flow([192, 0, 2, 66], WEB, 6, 40000, 22), None)],
        count(1, 60)
    );
    assert_eq!(
        s[&(Counts::Accepted, flow(LAPTOP, WEB, 1, 0, 0), None)],
        count(2, 168)
    );
    let r = parse_listing(ROUTER).unwrap();
    assert_eq!(r.len(), 3, "the router's own address set is no flow set");
    assert_eq!(
        r[&(
            Counts::AclInboundRejected,
            flow(LAPTOP, APP, 17, 5000, 53),
            Some(APP.into())
        )],
        count(9, 630)
    );
}

#[test]
fn accepted_and_rejected_flows_become_version_2_records_in_aws_field_order() {
    let web = interface("web");
    let now = web.counters(&parse_listing(LISTING).unwrap(), &Listing::new());
    let r = web.records(&growth(&Counters::new(), &now), 100, 160);
    let id = &web.id;
    assert_eq!(
        lines(&web, &DEFAULT_FORMAT, &r),
        [
            format!("2 123456789012 {id} 203.0.113.10 10.0.2.238 0 0 1 2 168 100 160 ACCEPT OK"),
            format!(
                "2 123456789012 {id} 10.0.2.238 203.0.113.10 80 41000 6 4 900 100 160 ACCEPT OK"
            ),
            format!("2 123456789012 {id} 192.0.2.66 10.0.2.238 40000 22 6 1 60 100 160 REJECT OK"),
        ]
    );
}

#[test]
fn only_the_growth_since_the_last_interval_is_logged_and_a_quiet_one_says_nodata() {
    let web = interface("web");
    let first = web.counters(&parse_listing(LISTING).unwrap(), &Listing::new());
    let mut more = first.clone();
    let reply = flow(WEB, LAPTOP, 6, 80, 41000);
    more.insert((Counts::Seen, reply), count(6, 1000));
    more.insert((Counts::Accepted, reply), count(6, 1000));
    let r = web.records(&growth(&first, &more), 160, 220);
    assert_eq!(
        lines(&web, &DEFAULT_FORMAT, &r),
        [format!(
            "2 123456789012 {} 10.0.2.238 203.0.113.10 80 41000 6 2 100 160 220 ACCEPT OK",
            web.id
        )]
    );
    let quiet = web.records(&growth(&more, &more), 220, 280);
    assert_eq!(
        lines(&web, &DEFAULT_FORMAT, &quiet),
        [format!(
            "2 123456789012 {} - - - - - - - 220 280 - NODATA",
            web.id
        )]
    );
}

#[test]
fn a_counter_that_went_down_belongs_to_a_table_made_anew() {
    let k = (Counts::Accepted, flow(WEB, LAPTOP, 6, 80, 41000));
    let before = Counters::from([(k, count(50, 5000))]);
    let after = Counters::from([(k, count(3, 300))]);
    assert_eq!(growth(&before, &after)[&k], count(3, 300));
}

#[test]
fn dns_metadata_time_service_router_dhcp_and_multicast_traffic_is_not_logged() {
    let web = interface("web");
    let mut grown = Counters::new();
    for server in [
        [10, 0, 0, 2],
        [169, 254, 169, 253],
        [169, 254, 169, 254],
        [169, 254, 169, 123],
        [10, 0, 2, 1],
        [10, 0, 0, 1],
    ] {
        for c in [Counts::Seen, Counts::Accepted] {
            grown.insert((c, flow(WEB, server, 17, 5000, 53)), count(1, 60));
            grown.insert((c, flow(server, WEB, 17, 53, 5000)), count(1, 90));
        }
    }
    for c in [Counts::Seen, Counts::Accepted] {
        grown.insert(
            (c, flow(WEB, [255, 255, 255, 255], 17, 68, 67)),
            count(1, 300),
        );
        grown.insert((c, flow(WEB, [224, 0, 0, 22], 2, 0, 0)), count(1, 40));
    }
    assert_eq!(web.records(&grown, 0, 5)[0].flow, None);
}

/// AWS's documented case: the security group allows the ping and its reply, the outbound
/// network ACL denies the reply.
#[test]
fn a_ping_whose_reply_the_outbound_acl_denies_is_accept_for_the_request_and_reject_for_the_reply() {
    let web = interface("web");
    let (request, reply) = (flow(LAPTOP, WEB, 1, 0, 0), flow(WEB, LAPTOP, 1, 0, 0));
    let own = Listing::from([
        ((Counts::Seen, request, None), count(4, 336)),
        ((Counts::Accepted, request, None), count(4, 336)),
        ((Counts::Seen, reply, None), count(4, 336)),
        ((Counts::Accepted, reply, None), count(4, 336)),
    ]);
    let router = parse_listing(ROUTER).unwrap();
    let now = web.counters(&own, &router);
    let r = web.records(&growth(&Counters::new(), &now), 0, 60);
    let id = &web.id;
    assert_eq!(
        lines(&web, &DEFAULT_FORMAT, &r),
        [
            format!("2 123456789012 {id} 203.0.113.10 10.0.2.238 0 0 1 4 336 0 60 ACCEPT OK"),
            // Two of the four replies only: the router's listing above counted two.
            format!("2 123456789012 {id} 10.0.2.238 203.0.113.10 0 0 1 2 168 0 60 ACCEPT OK"),
            format!("2 123456789012 {id} 203.0.113.10 10.0.2.238 5000 53 17 3 210 0 60 REJECT OK"),
            format!("2 123456789012 {id} 10.0.2.238 203.0.113.10 0 0 1 2 168 0 60 REJECT OK"),
        ]
    );
}

#[test]
fn an_inbound_acl_rejection_belongs_to_the_interface_it_was_bound_for() {
    let app = interface("app");
    let now = app.counters(&Listing::new(), &parse_listing(ROUTER).unwrap());
    assert_eq!(
        now.into_iter().collect::<Vec<_>>(),
        [(
            (Counts::AclInboundRejected, flow(LAPTOP, APP, 17, 5000, 53)),
            count(9, 630)
        )]
    );
}

#[test]
fn a_nat_gateway_logs_each_hop_with_its_own_address_and_the_original_ends() {
    let nat = interface("my-nat");
    assert_eq!(nat.instance_id, None);
    // app -> site:80, translated to my-nat:1234; the reply comes back the same way.
    let out = flow(APP, SITE, 6, 40000, 80);
    let out_translated = flow(NAT, SITE, 6, 1234, 80);
    let back = flow(SITE, NAT, 6, 80, 1234);
    let back_translated = flow(SITE, APP, 6, 80, 40000);
    let grown = Counters::from([
        ((Counts::Arrived, out), count(5, 400)),
        ((Counts::Left, out_translated), count(5, 400)),
        ((Counts::Arrived, back), count(4, 1200)),
        ((Counts::Left, back_translated), count(4, 1200)),
        ((Counts::Syn, out), count(1, 60)),
        ((Counts::Syn, out_translated), count(1, 60)),
    ]);
    let fields = parse_format(
        "${instance-id} ${srcaddr} ${dstaddr} ${pkt-srcaddr} ${pkt-dstaddr} ${flow-direction} ${traffic-path} ${tcp-flags}",
    )
    .unwrap();
    assert_eq!(
        lines(&nat, &fields, &nat.records(&grown, 0, 60)),
        [
            // The AWS documentation's example, hop by hop (in, then out).
            "- 10.0.1.101 10.0.0.4 10.0.1.101 192.0.2.80 ingress - 2",
            "- 192.0.2.80 10.0.0.4 192.0.2.80 10.0.0.4 ingress - 0",
            "- 10.0.0.4 192.0.2.80 10.0.0.4 192.0.2.80 egress 2 2",
            "- 10.0.0.4 10.0.1.101 192.0.2.80 10.0.1.101 egress 1 0",
        ]
    );
}

#[test]
fn a_custom_format_writes_its_fields_in_its_order_with_the_highest_version() {
    let web = interface("web");
    let fields = parse_format(
        "${version} ${vpc-id} ${subnet-id} ${instance-id} ${interface-id} ${type} ${region} ${az-id} ${tcp-flags} ${action} ${sublocation-id}",
    )
    .unwrap();
    let grown = Counters::from([
        ((Counts::Seen, flow(LAPTOP, WEB, 1, 0, 0)), count(1, 84)),
        ((Counts::Accepted, flow(LAPTOP, WEB, 1, 0, 0)), count(1, 84)),
    ]);
    let lab = "handson";
    assert_eq!(
        lines(&web, &fields, &web.records(&grown, 0, 60)),
        [format!(
            "4 {} {} {} {} IPv4 ap-northeast-2 apne2-az3 - ACCEPT -",
            aws_id("vpc", lab, "my-vpc-01"),
            aws_id("subnet", lab, "public-2c"),
            web.instance_id.as_deref().unwrap(),
            web.id
        )]
    );
    // A quiet interval still names the interface's VPC and subnet, and nothing else.
    let quiet = web.line(&fields, &web.records(&Counters::new(), 0, 60)[0]);
    assert!(
        quiet.ends_with("- ap-northeast-2 apne2-az3 - - -"),
        "{quiet}"
    );
}

#[test]
fn tcp_flags_are_ored_over_the_interval() {
    let web = interface("web");
    let now = web.counters(&parse_listing(LISTING).unwrap(), &Listing::new());
    let fields = parse_format("srcport dstport tcp-flags action").unwrap();
    assert_eq!(
        lines(
            &web,
            &fields,
            &web.records(&growth(&Counters::new(), &now), 0, 5)
        ),
        ["0 0 - ACCEPT", "80 41000 19 ACCEPT", "40000 22 2 REJECT"]
    );
}

#[test]
fn a_line_reads_back_as_json_with_numbers_and_nulls() {
    let fields = DEFAULT_FORMAT.to_vec();
    assert_eq!(header_fields(&header(&fields)), Some(fields.clone()));
    assert_eq!(header_fields("2 123456789012 eni-0abc"), None);
    let r = record_json(
        &fields,
        "2 123456789012 eni-0abc - - - - - - - 220 280 - NODATA",
    )
    .unwrap();
    assert_eq!(r["version"], 2);
    assert_eq!(r["interface_id"], "eni-0abc");
    assert!(r["srcaddr"].is_null());
    assert_eq!(r["start"], 220);
    assert_eq!(r["log_status"], "NODATA");
    assert_eq!(record_json(&fields, "2 123456789012"), None);
}
