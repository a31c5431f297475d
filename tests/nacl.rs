//! Network ACLs with real packets: rule order, the final `*`, the default ACL, traffic
//! inside a subnet, the never-filtered router services, statelessness (replies need their
//! own rules) and live changes through `vpclab apply` that cut what they now deny. Root only.

mod common;

use common::{Files, Lab, text, vpclab};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

/// Three subnets: `public-2a` (web, bastion) gets the ACL under test; `private-2a` (app)
/// and `private-2c` (worker) keep the default ACL. Every security group allows all TCP
/// inside the VPC, so whatever is blocked here is blocked by an ACL.
const LAB: &str = "region: ap-northeast-2
vpc: { name: acl-test, cidr: 10.0.0.0/16 }
public_ip_pool: 198.51.100.0/24
subnets:
  public-2a:  { az: ap-northeast-2a, cidr: 10.0.0.0/24, route_table: public }
  private-2a: { az: ap-northeast-2a, cidr: 10.0.1.0/24 }
  private-2c: { az: ap-northeast-2c, cidr: 10.0.3.0/24 }
route_tables:
  public: { 0.0.0.0/0: igw }
internet_gateway: igw
key_pairs: [key]
security_groups:
  open:
    inbound:
      - { protocol: tcp, port: 1-65535, source: 10.0.0.0/16 }
      - { type: http, source: 0.0.0.0/0 }
instances:
  web:     { subnet: public-2a, private_ip: 10.0.0.10, public_ip: auto, key_pair: key, security_groups: [open], services: [http] }
  bastion: { subnet: public-2a, private_ip: 10.0.0.20, security_groups: [open] }
  app:     { subnet: private-2a, private_ip: 10.0.1.10, security_groups: [open] }
  worker:  { subnet: private-2c, private_ip: 10.0.3.10, security_groups: [open] }
internet:
  laptop: { ip: 203.0.113.10, my_ip: true }
ACL";

/// The test lab with `acl` (a `network_acls:` section, or nothing) in it.
fn lab_text(acl: &str) -> String {
    LAB.replace("ACL", acl)
}

fn up(files: &Files, name: &str, acl: &str) -> Lab {
    let f = files.write("lab.yaml", &lab_text(acl));
    Lab::up(Some(f.to_str().unwrap()), name)
}

fn apply(lab: &Lab, file: &Path) -> String {
    let o = vpclab()
        .arg("apply")
        .arg(file)
        .args(["--name", &lab.name])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Echoes every line back, on a thread, for every connection `l` accepts.
fn echo(l: TcpListener) {
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// Listens on `node` at `port` on all its addresses and echoes.
fn serve(lab: &Lab, node: &str, port: u16) {
    echo(lab.listen(node, &format!("0.0.0.0:{port}")));
}

/// Whether a TCP handshake from `from` to `addr` completes.
fn reaches(lab: &Lab, from: &str, addr: &str) -> bool {
    lab.connect(from, addr).is_ok()
}

/// Sends a line on `c` and says whether it came back within `wait`.
fn answered(c: &mut TcpStream, wait: Duration) -> bool {
    c.set_read_timeout(Some(wait)).unwrap();
    if c.write_all(b"ping\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 5];
    c.read_exact(&mut buf).is_ok() && &buf == b"ping\n"
}

#[test]
fn the_lowest_matching_rule_decides_the_star_denies_and_the_default_acl_allows_all() {
    require_root!();
    let files = Files::new("t-na-order");
    let lab = up(
        &files,
        "t-na-order",
        "network_acls:
  web-acl:
    subnets: [public-2a]
    inbound:
      - { rule: 200, protocol: tcp, port: 8000-8999, source: 10.0.0.0/16, action: allow }
      - { rule: 100, protocol: tcp, port: 8080, source: 10.0.1.0/24, action: deny }
    outbound:
      - { rule: 100, protocol: tcp, port: 1024-65535, destination: 10.0.0.0/16, action: allow }
",
    );
    for port in [8080, 8081, 9500] {
        serve(&lab, "web", port);
        serve(&lab, "worker", port);
    }
    // Rule 100 (deny) comes before rule 200 (allow) although the file lists it second.
    assert!(!reaches(&lab, "app", "10.0.0.10:8080"), "rule 100 denies");
    assert!(reaches(&lab, "app", "10.0.0.10:8081"), "rule 200 allows");
    // Rule 100 is for 10.0.1.0/24 only: from private-2c rule 200 allows port 8080.
    assert!(reaches(&lab, "worker", "10.0.0.10:8080"));
    // No rule matches port 9500: the final `*` rule denies it.
    assert!(!reaches(&lab, "app", "10.0.0.10:9500"), "`*` denies");
    // private-2a and private-2c have the default ACL: anything goes between them.
    for port in [8080, 8081, 9500] {
        assert!(reaches(&lab, "app", &format!("10.0.3.10:{port}")), "{port}");
    }
}

#[test]
fn a_deny_all_acl_leaves_its_own_subnet_dns_and_metadata_alone() {
    require_root!();
    let files = Files::new("t-na-closed");
    // No rules at all: a custom ACL with nothing in it denies everything.
    let lab = up(
        &files,
        "t-na-closed",
        "network_acls:\n  closed: { subnets: [public-2a] }\n",
    );
    serve(&lab, "web", 8081);
    serve(&lab, "app", 8081);
    assert!(!reaches(&lab, "app", "10.0.0.10:8081"), "in: denied");
    assert!(!reaches(&lab, "web", "10.0.1.10:8081"), "out: denied");
    // Two instances of one subnet: their bridge switches the traffic, no ACL sees it.
    assert!(reaches(&lab, "bastion", "10.0.0.10:8081"));
    // The Amazon DNS server and the metadata service answer whatever the ACL says.
    let o = lab.exec(
        "web",
        &[
            "nslookup",
            "-timeout=1",
            "ip-10-0-0-20.ap-northeast-2.compute.internal",
        ],
    );
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("10.0.0.20"),
        "{}",
        text(&o)
    );
    let o = lab.exec(
        "web",
        &[
            "curl",
            "-s",
            "-m",
            "2",
            "http://169.254.169.254/latest/meta-data/local-ipv4",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "10.0.0.10",
        "{}",
        text(&o)
    );
}

#[test]
fn without_outbound_ephemeral_ports_http_fails_though_the_security_group_allows_it() {
    require_root!();
    let files = Files::new("t-na-eph");
    let forgot = "network_acls:
  web-acl:
    subnets: [public-2a]
    inbound:
      - { rule: 100, type: http, source: 0.0.0.0/0, action: allow }
    outbound:
      - { rule: 100, type: http, destination: 0.0.0.0/0, action: allow }
";
    let lab = up(&files, "t-na-eph", forgot);
    // The request gets in, the web server answers, the answer never gets out.
    assert!(!reaches(&lab, "laptop", "198.51.100.10:80"));
    let fixed = format!(
        "{forgot}      - {{ rule: 200, protocol: tcp, port: 1024-65535, destination: 0.0.0.0/0, action: allow }}\n"
    );
    let out = apply(&lab, &files.write("fixed.yaml", &lab_text(&fixed)));
    assert!(
        out.contains("~ network acl web-acl: + outbound 200 allow tcp 1024-65535 to 0.0.0.0/0"),
        "{out}"
    );
    assert!(reaches(&lab, "laptop", "198.51.100.10:80"), "fixed live");
    let o = lab.http_status("web", "http://10.0.0.10/", 2);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "200", "{}", text(&o));
}

#[test]
fn an_acl_change_through_apply_cuts_an_established_connection() {
    require_root!();
    let files = Files::new("t-na-cut");
    let allow = "network_acls:
  web-acl:
    subnets: [public-2a]
    inbound:
      - { rule: 100, protocol: tcp, port: 8081, source: 10.0.1.0/24, action: allow }
    outbound:
      - { rule: 100, protocol: tcp, port: 1024-65535, destination: 10.0.1.0/24, action: allow }
";
    let lab = up(&files, "t-na-cut", allow);
    serve(&lab, "web", 8081);
    let mut held = lab.connect("app", "10.0.0.10:8081").unwrap();
    assert!(answered(&mut held, Duration::from_secs(1)));
    // Rule 50 now denies what rule 100 allowed. Unlike a security group, an ACL keeps no
    // connection state, so the next packet of the held connection meets the new rule.
    let deny = allow.replace(
        "    inbound:\n",
        "    inbound:\n      - { rule: 50, protocol: tcp, port: 8081, source: 10.0.1.0/24, action: deny }\n",
    );
    let out = apply(&lab, &files.write("deny.yaml", &lab_text(&deny)));
    assert!(
        out.contains("~ network acl web-acl: + inbound 50 deny tcp 8081 from 10.0.1.0/24"),
        "{out}"
    );
    assert!(
        !answered(&mut held, Duration::from_secs(1)),
        "the held connection is cut"
    );
    // And back: the same connection works again once the rule is gone.
    // TCP retransmits what was dropped, with a backoff of a few seconds by now.
    apply(&lab, &files.write("allow.yaml", &lab_text(allow)));
    assert!(
        answered(&mut held, Duration::from_secs(10)),
        "stateless: allowed again, it flows again"
    );
}
