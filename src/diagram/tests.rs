use super::layout::{Layout, Rect, Style, layout};
use super::*;
use crate::topology::testing::{builtin, lab_from};

/// Four AZs, sixteen subnets, two NAT gateways, seven instances in one subnet, two
/// databases, eight internet hosts.
const BIG: &str = r#"
name: big
region: us-east-1
vpc: { name: big-vpc, cidr: 10.20.0.0/16 }
public_ip_pool: 198.51.100.0/24
subnets:
  pub-a1:  { az: us-east-1a, cidr: 10.20.0.0/24, route_table: public }
  pub-a2:  { az: us-east-1a, cidr: 10.20.1.0/24, route_table: public }
  priv-a1: { az: us-east-1a, cidr: 10.20.2.0/24, route_table: private-a }
  priv-a2: { az: us-east-1a, cidr: 10.20.3.0/24, route_table: private-a }
  pub-b1:  { az: us-east-1b, cidr: 10.20.10.0/24, route_table: public }
  pub-b2:  { az: us-east-1b, cidr: 10.20.11.0/24, route_table: public }
  priv-b1: { az: us-east-1b, cidr: 10.20.12.0/24, route_table: private-b }
  priv-b2: { az: us-east-1b, cidr: 10.20.13.0/24, route_table: private-b }
  pub-c1:  { az: us-east-1c, cidr: 10.20.20.0/24, route_table: public }
  pub-c2:  { az: us-east-1c, cidr: 10.20.21.0/24, route_table: public }
  priv-c1: { az: us-east-1c, cidr: 10.20.22.0/24, route_table: private-a }
  priv-c2: { az: us-east-1c, cidr: 10.20.23.0/24, route_table: isolated }
  pub-d1:  { az: us-east-1d, cidr: 10.20.30.0/24, route_table: public }
  pub-d2:  { az: us-east-1d, cidr: 10.20.31.0/24, route_table: public }
  priv-d1: { az: us-east-1d, cidr: 10.20.32.0/24, route_table: private-b }
  priv-d2: { az: us-east-1d, cidr: 10.20.33.0/24, route_table: isolated }
route_tables:
  public: { 0.0.0.0/0: igw }
  private-a: { 0.0.0.0/0: nat-a }
  private-b: { 0.0.0.0/0: nat-b }
  isolated: {}
internet_gateway: igw
elastic_ips:
  eip-a: auto
  eip-b: auto
  web-eip: auto
nat_gateways:
  nat-a: { subnet: pub-a1, elastic_ip: eip-a }
  nat-b: { subnet: pub-b2, elastic_ip: eip-b }
security_groups:
  web-sg: { inbound: [ { type: http, source: 0.0.0.0/0 } ] }
  app-sg: { inbound: [ { type: ssh, source: 10.20.0.0/16 } ] }
  db-sg:
    inbound:
      - { type: mysql, source: web-sg }
      - { type: mysql, source: app-sg }
instances:
  web1: { subnet: pub-a1, public_ip: auto, security_groups: [web-sg] }
  web2: { subnet: pub-b1, public_ip: web-eip, security_groups: [web-sg, app-sg] }
  web3: { subnet: pub-c1, public_ip: auto, security_groups: [web-sg] }
  app1: { subnet: priv-a1, security_groups: [app-sg] }
  app2: { subnet: priv-a1, security_groups: [app-sg] }
  app3: { subnet: priv-a1, security_groups: [app-sg] }
  app4: { subnet: priv-a1, security_groups: [app-sg] }
  app5: { subnet: priv-a1, security_groups: [app-sg] }
  app6: { subnet: priv-a1, security_groups: [app-sg] }
  app7: { subnet: priv-a1, security_groups: [app-sg] }
  batch1: { subnet: priv-d1, security_groups: [app-sg] }
  batch2: { subnet: priv-b2, security_groups: [app-sg] }
db_subnet_groups:
  dbs: [priv-c2, priv-d2]
  dbs2: [priv-a2, priv-b1]
databases:
  orders:
    engine: mysql
    multi_az: true
    subnet_group: dbs
    master_username: admin
    security_groups: [db-sg]
  users:
    engine: mysql
    subnet_group: dbs2
    master_username: admin
    security_groups: [db-sg]
internet:
  me: { ip: 203.0.113.10, my_ip: true }
  h1: { ip: 203.0.113.11 }
  h2: { ip: 203.0.113.12 }
  h3: { ip: 203.0.113.13 }
  h4: { ip: 203.0.113.14 }
  h5: { ip: 203.0.113.15 }
  h6: { ip: 203.0.113.16 }
  h7: { ip: 203.0.113.17 }
"#;

/// One AZ, one private subnet, one instance: no gateways, databases or internet.
const BARE: &str = r#"
name: bare
region: eu-west-1
vpc: { name: tiny, cidr: 10.1.0.0/16 }
subnets:
  only: { az: eu-west-1a, cidr: 10.1.0.0/24 }
security_groups:
  sg: {}
instances:
  box: { subnet: only, security_groups: [sg] }
"#;

/// Three AZs, an internet gateway with no hosts and no NAT gateway, one database.
const THREE: &str = r#"
name: three
region: eu-central-1
vpc: { name: three-vpc, cidr: 172.16.0.0/16 }
public_ip_pool: 198.51.100.0/24
subnets:
  pub-a: { az: eu-central-1a, cidr: 172.16.0.0/24, route_table: public }
  pub-b: { az: eu-central-1b, cidr: 172.16.1.0/24, route_table: public }
  pub-c: { az: eu-central-1c, cidr: 172.16.2.0/24, route_table: public }
  db-a: { az: eu-central-1a, cidr: 172.16.10.0/24 }
  db-c: { az: eu-central-1c, cidr: 172.16.12.0/24 }
route_tables:
  public: { 0.0.0.0/0: gw }
internet_gateway: gw
security_groups:
  web: { inbound: [ { type: http, source: 0.0.0.0/0 } ] }
  db: { inbound: [ { protocol: tcp, port: 3306, source: web } ] }
instances:
  w1: { subnet: pub-a, public_ip: auto, security_groups: [web] }
  w2: { subnet: pub-b, public_ip: auto, security_groups: [web] }
  w3: { subnet: pub-c, public_ip: auto, security_groups: [web] }
db_subnet_groups:
  g: [db-a, db-c]
databases:
  pg:
    engine: mysql
    multi_az: true
    subnet_group: g
    master_username: admin
    security_groups: [db]
"#;

/// Internet hosts but no internet gateway; long names; an instance with three groups.
const LONG: &str = r#"
name: long
region: ap-northeast-2
vpc: { name: a-very-long-vpc-name-for-testing-the-layout, cidr: 10.9.0.0/16 }
subnets:
  this-is-a-rather-long-private-subnet-name-2a: { az: ap-northeast-2a, cidr: 10.9.1.0/24 }
  private-2b: { az: ap-northeast-2b, cidr: 10.9.2.0/24 }
security_groups:
  sg-with-quite-a-long-name-for-the-instances: {}
  second-sg: {}
  third-sg: {}
instances:
  worker-with-a-long-name:
    subnet: private-2b
    security_groups: [sg-with-quite-a-long-name-for-the-instances, second-sg, third-sg]
internet:
  laptop: { ip: 203.0.113.10, my_ip: true }
"#;

fn all_labs() -> Vec<Lab> {
    vec![
        builtin(),
        lab_from(BIG),
        lab_from(BARE),
        lab_from(THREE),
        lab_from(LONG),
        lab_from(NACL),
    ]
}

/// The shipped network ACL lab: one subnet guarded by a custom ACL, one with the default.
const NACL: &str = include_str!("../../labs/nacl.yaml");

#[test]
fn a_subnet_shows_its_network_acl_unless_it_has_the_default() {
    let lab = lab_from(NACL);
    for format in [Format::Svg, Format::Dot, Format::Mermaid] {
        let out = render(&lab, format);
        assert_eq!(
            out.matches("network ACL public-acl").count(),
            1,
            "{format:?}: {out}"
        );
        assert!(!out.contains("network ACL default"), "{format:?}");
    }
    let mermaid = render(&lab, Format::Mermaid);
    assert!(mermaid.contains("public-2a · 10.0.0.0/24 · public · network ACL public-acl"));
    assert!(
        mermaid.contains("[\"private-2a · 10.0.1.0/24 · private\"]"),
        "{mermaid}"
    );
    assert!(!render(&builtin(), Format::Svg).contains("network ACL"));
}

/// Checks that every element is closed in order; returns the element count.
fn check_balanced(xml: &str) -> usize {
    let mut stack: Vec<String> = Vec::new();
    let mut count = 0;
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("unterminated tag") + start;
        let tag = &rest[start + 1..end];
        assert!(!tag.contains('<'), "`<` inside a tag: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().unwrap_or_else(|| panic!("stray </{name}>"));
            assert_eq!(open, name, "</{name}> closes <{open}>");
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap_or("").to_string();
            assert!(!name.is_empty(), "empty tag");
            stack.push(name);
            count += 1;
        } else {
            count += 1;
        }
        rest = &rest[end + 1..];
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    count
}

#[test]
fn svg_is_well_formed() {
    for lab in all_labs() {
        let svg = render(&lab, Format::Svg);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        assert!(check_balanced(&svg) > 10);
        // No raw ampersand that is not an entity.
        for (i, _) in svg.match_indices('&') {
            let tail = &svg[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| tail.starts_with(e)),
                "bare & at {i}"
            );
        }
    }
}

#[test]
fn svg_names_everything_in_the_hands_on() {
    let lab = builtin();
    let svg = render(&lab, Format::Svg);
    for s in &lab.subnets {
        assert!(svg.contains(&format!(">{}<", s.name)), "subnet {}", s.name);
        assert!(svg.contains(&s.cidr.to_string()), "cidr {}", s.cidr);
    }
    for i in &lab.instances {
        assert!(
            svg.contains(&format!(">{}<", i.name)),
            "instance {}",
            i.name
        );
        assert!(svg.contains(&i.private_ip.to_string()));
    }
    for d in &lab.databases {
        for n in d.nodes() {
            assert!(svg.contains(&format!(">{}<", n.name)), "db node {}", n.name);
            assert!(svg.contains(&n.private_ip.to_string()));
        }
        assert_eq!(svg.matches(&d.endpoint).count(), 1, "endpoint shown once");
    }
    for h in &lab.internet {
        assert!(svg.contains(&format!(">{}<", h.name)));
        assert!(svg.contains(&h.ip.to_string()));
    }
    for g in &lab.security_groups {
        assert!(svg.contains(&g.name), "security group {}", g.name);
    }
    let eip = lab.elastic_ips[lab.nat_gateways[0].elastic_ip]
        .address
        .to_string();
    assert_eq!(eip, "198.51.100.11");
    for needle in [
        "10.0.2.238",
        "198.51.100.10",
        eip.as_str(),
        ">my-igw<",
        ">my-nat<",
        ">my IP<",
        ">primary<",
        ">standby<",
        "my-vpc-01",
        "10.0.0.0/16",
        "ap-northeast-2a",
        "ap-northeast-2c",
        "0.0.0.0/0 → my-igw",
        "0.0.0.0/0 → my-nat",
        "tcp 3306 allowed by SG",
    ] {
        assert!(svg.contains(needle), "missing {needle}");
    }
}

#[test]
fn the_hands_on_draws_its_wires() {
    let l = layout(&builtin());
    let kinds: Vec<String> = l.wires.iter().map(|w| format!("{:?}", w.kind)).collect();
    for k in [
        "Internet",
        "NatRoute",
        "NatEgress",
        "SgAllow",
        "Replication",
    ] {
        // Each kind once in the picture, once in the legend at least.
        assert!(
            kinds.iter().filter(|x| *x == k).count() >= 2,
            "{k}: {kinds:?}"
        );
    }
    // Both private subnets route to the NAT gateway.
    assert_eq!(
        l.wires.iter().filter(|w| w.group == "nat0").count(),
        2,
        "private-2a and private-2c → my-nat"
    );
}

fn texts(l: &Layout) -> Vec<(Rect, String)> {
    l.texts.iter().map(|t| (t.bbox(), t.line.text())).collect()
}

fn cards(l: &Layout) -> Vec<Rect> {
    l.nodes
        .iter()
        .filter(|s| matches!(s.style, Style::Card(_)))
        .map(|s| s.rect)
        .collect()
}

#[test]
fn no_two_texts_overlap() {
    for lab in all_labs() {
        let l = layout(&lab);
        let t = texts(&l);
        for (i, (a, ta)) in t.iter().enumerate() {
            for (b, tb) in &t[i + 1..] {
                assert!(
                    !a.overlaps(b),
                    "{}: `{ta}` {a:?} overlaps `{tb}` {b:?}",
                    lab.name
                );
            }
        }
    }
}

#[test]
fn everything_fits_on_the_canvas_and_in_its_box() {
    for lab in all_labs() {
        let l = layout(&lab);
        let canvas = Rect {
            x: 0,
            y: 0,
            w: l.width,
            h: l.height,
        };
        let inside = |a: &Rect, b: &Rect| {
            a.x >= b.x && a.y >= b.y && a.right() <= b.right() && a.bottom() <= b.bottom()
        };
        for (r, t) in texts(&l) {
            assert!(inside(&r, &canvas), "{}: `{t}` off the canvas", lab.name);
        }
        let cards = cards(&l);
        // Each card's text stays inside the card it starts in.
        for (r, t) in texts(&l) {
            if let Some(c) = cards.iter().find(|c| c.overlaps(&r)) {
                assert!(
                    inside(&r, c),
                    "{}: `{t}` {r:?} spills out of {c:?}",
                    lab.name
                );
            }
        }
        // Cards never overlap each other, and sit inside a subnet (or the internet box, or
        // straddle the VPC's edge, for the internet gateway).
        for (i, a) in cards.iter().enumerate() {
            for b in &cards[i + 1..] {
                assert!(
                    !a.overlaps(b),
                    "{}: cards {a:?} and {b:?} overlap",
                    lab.name
                );
            }
        }
        let holders: Vec<Rect> = l
            .containers
            .iter()
            .filter(|s| {
                matches!(
                    s.style,
                    Style::PublicSubnet | Style::PrivateSubnet | Style::Internet | Style::Region
                )
            })
            .map(|s| s.rect)
            .collect();
        for c in &cards {
            assert!(
                holders.iter().any(|h| inside(c, h)),
                "{}: loose card {c:?}",
                lab.name
            );
        }
    }
}

/// Does the axis-aligned segment pass through the rectangle's interior?
fn crosses(p: (i32, i32), q: (i32, i32), r: &Rect) -> bool {
    let (x0, x1) = (p.0.min(q.0), p.0.max(q.0));
    let (y0, y1) = (p.1.min(q.1), p.1.max(q.1));
    x0 < r.right() && x1 > r.x && y0 < r.bottom() && y1 > r.y
}

#[test]
fn wires_cross_no_text_and_no_card() {
    for lab in all_labs() {
        let l = layout(&lab);
        let t = texts(&l);
        let cards = cards(&l);
        for w in &l.wires {
            for seg in w.points.windows(2) {
                for (r, s) in &t {
                    assert!(
                        !crosses(seg[0], seg[1], r),
                        "{}: {:?} crosses `{s}`",
                        lab.name,
                        w.kind
                    );
                }
                for c in &cards {
                    assert!(
                        !crosses(seg[0], seg[1], c),
                        "{}: {:?} crosses {c:?}",
                        lab.name,
                        w.kind
                    );
                }
            }
            for seg in w.points.windows(2) {
                assert!(
                    seg[0].0 == seg[1].0 || seg[0].1 == seg[1].1,
                    "{}: wires are orthogonal",
                    lab.name
                );
            }
        }
    }
}

#[test]
fn big_labs_are_capped() {
    let lab = lab_from(BIG);
    assert_eq!(lab.subnets.len(), 16);
    let svg = render(&lab, Format::Svg);
    assert!(
        svg.contains("+4 more instances"),
        "seven instances: three drawn"
    );
    assert!(svg.contains("+3 more hosts"), "eight hosts: five drawn");
    for s in &lab.subnets {
        assert!(svg.contains(&format!(">{}<", s.name)));
    }
    assert!(!svg.contains(">app4<"));
    let l = layout(&lab);
    assert!(
        l.width < 2000 && l.height < 2000,
        "{}x{}",
        l.width,
        l.height
    );
}

#[test]
fn labs_without_gateways_databases_or_internet() {
    let lab = lab_from(BARE);
    let l = layout(&lab);
    assert!(l.wires.is_empty());
    assert!(!l.containers.iter().any(|s| s.style == Style::Internet));
    let svg = render(&lab, Format::Svg);
    assert!(svg.contains(">box<") && svg.contains(">only<"));
    assert!(!svg.contains("<defs>"), "no markers without wires");
    assert!(render(&lab, Format::Dot).contains("subgraph cluster_sn0"));
    assert!(render(&lab, Format::Mermaid).contains("subgraph sn0"));
}

#[test]
fn an_internet_without_a_gateway_is_not_wired() {
    let l = layout(&lab_from(LONG));
    assert!(l.wires.is_empty());
    let svg = render(&lab_from(LONG), Format::Svg);
    assert!(svg.contains("(the VPC has no internet gateway)"));
    assert!(svg.contains("+2 more security groups"));
}

#[test]
fn names_are_escaped() {
    let mut lab = builtin();
    lab.description = Some("a <b> & \"c\" 'd'".into());
    lab.instances[0].name = "web<&>".into();
    let svg = render(&lab, Format::Svg);
    check_balanced(&svg);
    assert!(svg.contains("a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;"));
    assert!(svg.contains(">web&lt;&amp;&gt;<"));
    let dot = render(&lab, Format::Dot);
    assert!(dot.contains(r#"EC2 web<&>\nprivate"#));
    lab.instances[0].name = "say \"hi\"".into();
    assert!(render(&lab, Format::Dot).contains(r#"EC2 say \"hi\"\n"#));
    let mermaid = render(&lab, Format::Mermaid);
    assert!(mermaid.contains("EC2 say #quot;hi#quot;<br/>"));
}

#[test]
fn output_is_deterministic() {
    for f in [Format::Svg, Format::Dot, Format::Mermaid] {
        for (a, b) in all_labs().iter().zip(all_labs().iter()) {
            assert_eq!(render(a, f), render(b, f));
        }
    }
}

#[test]
fn dot_has_the_clusters() {
    let lab = builtin();
    let dot = render(&lab, Format::Dot);
    assert!(dot.starts_with("digraph \"handson\" {"));
    for c in [
        "subgraph cluster_internet",
        "subgraph cluster_cloud",
        "subgraph cluster_region",
        "subgraph cluster_vpc",
        "subgraph cluster_az0",
        "subgraph cluster_az1",
        "subgraph cluster_sn0",
        "subgraph cluster_sn3",
    ] {
        assert!(dot.contains(c), "missing {c}");
    }
    for name in [
        "my-igw",
        "my-nat",
        "web",
        "app",
        "my-database-2c",
        "my-database-2a",
        "my-laptop",
    ] {
        assert!(dot.contains(name), "missing {name}");
    }
    assert!(dot.contains("10.0.2.238") && dot.contains("198.51.100.11"));
    assert!(dot.contains("inst0 -> db0p"), "web → database");
    assert!(dot.contains("nat0 -> sn1 [dir=back, lhead=cluster_sn1"));
    assert_eq!(dot.matches('{').count(), dot.matches('}').count());
}

/// Renders the dot output with Graphviz when it is installed.
#[test]
fn dot_renders_with_graphviz() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    for lab in all_labs() {
        let Ok(mut child) = Command::new("dot")
            .arg("-Tsvg")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            eprintln!("graphviz not installed; skipping");
            return;
        };
        let text = render(&lab, Format::Dot);
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            lab.name,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}: {}",
            lab.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn mermaid_is_a_flowchart_with_subgraphs() {
    for lab in all_labs() {
        let m = render(&lab, Format::Mermaid);
        assert!(m.starts_with("flowchart TB\n"));
        let opens = m
            .lines()
            .filter(|l| l.trim_start().starts_with("subgraph "))
            .count();
        let ends = m.lines().filter(|l| l.trim() == "end").count();
        assert_eq!(opens, ends, "{}: subgraph/end balance", lab.name);
        for l in m.lines().skip(1) {
            let l = l.trim_start();
            let id: String = l
                .strip_prefix("subgraph ")
                .unwrap_or(l)
                .chars()
                .take_while(|c| !matches!(c, '[' | ' '))
                .collect();
            if l == "end" || l.starts_with("style ") {
                continue;
            }
            assert!(
                !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()),
                "{}: id `{id}` in `{l}`",
                lab.name
            );
            // Every label is quoted.
            if let Some(i) = l.find('[') {
                assert!(
                    l[i + 1..].starts_with('"') && l.ends_with("\"]"),
                    "unquoted: {l}"
                );
            }
        }
    }
    let m = render(&builtin(), Format::Mermaid);
    for s in [
        "subgraph cloud",
        "subgraph region",
        "subgraph vpc",
        "subgraph az0",
        "subgraph sn0",
    ] {
        assert!(m.contains(s), "missing {s}");
    }
    assert!(m.contains("host0 <--> igw"));
    assert!(m.contains("sn1 -.->|\"0.0.0.0/0\"| nat0"));
    assert!(m.contains("inst0 -->|\"tcp 3306 allowed by SG\"| db0p"));
    assert!(m.contains("10.0.2.238") && m.contains("198.51.100.11"));
}
