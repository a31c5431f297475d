//! `vpclab apply` on running labs: each kind of live change, what must not move (namespaces,
//! processes, held connections), refused and invalid edits changing nothing. Root only.

mod common;

use common::{Files, Lab, text, vpclab};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

const BUILTIN: &str = include_str!("../labs/handson.yaml");

fn apply(lab: &Lab, file: &Path, extra: &[&str]) -> Output {
    vpclab()
        .arg("apply")
        .arg(file)
        .args(["--name", &lab.name])
        .args(extra)
        .output()
        .unwrap()
}

fn applied(lab: &Lab, file: &Path) -> String {
    let o = apply(lab, file, &[]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every namespace of the lab with its inode: a namespace made again gets another one.
fn namespace_identities(lab: &Lab) -> Vec<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut v: Vec<(String, u64)> = common::namespaces_of(&lab.name)
        .into_iter()
        .map(|n| {
            let ino = std::fs::metadata(format!("/run/netns/{n}")).unwrap().ino();
            (n, ino)
        })
        .collect();
    v.sort();
    v
}

/// The lab's recorded processes: (node, program, pid).
fn processes(lab: &Lab) -> Vec<(String, String, i64)> {
    let st: serde_json::Value = serde_json::from_slice(
        &std::fs::read(format!("/run/vpclab/{}/state.json", lab.name)).unwrap(),
    )
    .unwrap();
    let mut v: Vec<(String, String, i64)> = st["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["node"].as_str().unwrap().to_string(),
                p["what"].as_str().unwrap().to_string(),
                p["pid"].as_i64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn probe_passes(lab: &Lab) {
    let o = vpclab().args(["probe", &lab.name]).output().unwrap();
    assert!(o.status.success(), "probe after apply:\n{}", text(&o));
}

fn can_connect(lab: &Lab, from: &str, addr: &str) -> bool {
    lab.connect(from, addr).is_ok()
}

/// The write-up's "edit inbound rules: SSH from my IP", live: new connections follow the
/// rule at once, a removed rule leaves an established connection alone (security groups
/// are stateful), and nothing else in the lab moves.
#[test]
fn a_security_group_rule_changes_live_and_nothing_else_moves() {
    require_root!();
    let files = Files::new("t-apsg");
    let ssh_rule = "      - { type: ssh, source: my-ip }\n";
    assert!(BUILTIN.contains(ssh_rule));
    let without = files.write("without-ssh.yaml", &BUILTIN.replace(ssh_rule, ""));
    let with = files.write("with-ssh.yaml", BUILTIN);
    let lab = Lab::up(Some(without.to_str().unwrap()), "t-apsg");
    let web = "198.51.100.10:22";
    assert!(!can_connect(&lab, "my-laptop", web), "no ssh rule yet");

    // A connection to the web server, held across the edits.
    let mut held = lab.connect("my-laptop", "198.51.100.10:80").unwrap();
    let namespaces = namespace_identities(&lab);
    let procs = processes(&lab);

    let dry = apply(&lab, &with, &["--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        !can_connect(&lab, "my-laptop", web),
        "--dry-run changes nothing"
    );

    let out = applied(&lab, &with);
    assert!(
        out.contains(
            "~ security group MyWebServer-SecurityGroup: + inbound tcp 22 from my-ip (203.0.113.10)"
        ),
        "{out}"
    );
    assert!(out.contains("applied 1 change in "), "{out}");
    assert!(
        can_connect(&lab, "my-laptop", web),
        "ssh from my IP is open"
    );
    assert!(!can_connect(&lab, "stranger", web), "and only from my IP");
    probe_passes(&lab);

    // An ssh connection made now survives the rule's removal; a new one is refused.
    let mut ssh = lab.connect("my-laptop", web).unwrap();
    ssh.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut banner = String::new();
    BufReader::new(&mut ssh).read_line(&mut banner).unwrap();
    assert!(banner.starts_with("SSH-2.0-"), "{banner:?}");
    let out = applied(&lab, &without);
    assert!(
        out.contains(
            "~ security group MyWebServer-SecurityGroup: - inbound tcp 22 from my-ip (203.0.113.10)"
        ),
        "{out}"
    );
    assert!(
        !can_connect(&lab, "my-laptop", web),
        "new connections are refused"
    );
    ssh.write_all(b"SSH-2.0-vpclab-test\r\n").unwrap();
    let mut kexinit = [0u8; 64];
    let n = ssh
        .read(&mut kexinit)
        .expect("the tracked connection goes on");
    assert!(n > 0, "sshd answered on the established connection");

    held.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    held.write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    held.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");

    assert_eq!(
        namespace_identities(&lab),
        namespaces,
        "no namespace was made again"
    );
    assert_eq!(processes(&lab), procs, "no process was restarted");
    drop(lab);
    assert_eq!(common::leftovers("t-apsg"), Vec::<String>::new());
}

/// Instances, subnets and routes come and go in a running lab; existing objects keep their
/// addresses (the NAT gateway keeps 10.0.0.4 when an instance is added before it).
#[test]
fn instances_subnets_and_routes_change_live() {
    require_root!();
    let files = Files::new("t-apin");
    let lab = Lab::up(None, "t-apin");
    let base = files.write("base.yaml", BUILTIN);
    let more = BUILTIN
        .replace(
            "  private-2c: ",
            "  public-2b:  { az: ap-northeast-2c, cidr: 10.0.4.0/24, route_table: public }\n  private-2c: ",
        )
        .replace(
            "instances:\n",
            "instances:\n  early:\n    subnet: public-2a\n    public_ip: auto\n    key_pair: aws-study\n    security_groups: [MyWebServer-SecurityGroup]\n    services: [ssh]\n  app2:\n    subnet: private-2c\n    public_ip: none\n    key_pair: aws-study\n    security_groups: [MyApp-SecurityGroup]\n    services: [ssh]\n",
        );
    assert!(more.contains("public-2b") && more.contains("app2"));
    let more = files.write("more.yaml", &more);
    let nat_addr = || {
        let o = lab.exec("my-nat", &["ip", "-4", "-br", "addr", "show", "eth0"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(nat_addr().contains("10.0.0.4/24"), "{}", nat_addr());
    let kept_namespaces = namespace_identities(&lab);
    let kept_procs = processes(&lab);

    let out = applied(&lab, &more);
    for line in [
        "+ subnet public-2b",
        "+ instance early",
        "+ instance app2",
        "~ route table public: + subnet public-2b",
        "applied 4 changes in ",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(
        nat_addr().contains("10.0.0.4/24"),
        "the NAT gateway kept its address: {}",
        nat_addr()
    );
    let early = lab.exec("early", &["ip", "-4", "-br", "addr", "show", "eth0"]);
    assert!(
        String::from_utf8_lossy(&early.stdout).contains("10.0.0.5/24"),
        "{}",
        text(&early)
    );
    // app2 (10.0.3.x) answers ssh from web (its group allows the VPC), and reaches the
    // internet through the NAT gateway; its private DNS name resolves.
    let app2_ip = {
        let o = lab.exec("app2", &["ip", "-4", "-br", "addr", "show", "eth0"]);
        let s = String::from_utf8_lossy(&o.stdout).into_owned();
        s.split_whitespace()
            .find(|w| w.starts_with("10.0.3."))
            .unwrap_or_else(|| panic!("app2 has no address: {s}"))
            .split('/')
            .next()
            .unwrap()
            .to_string()
    };
    assert!(can_connect(&lab, "web", &format!("{app2_ip}:22")));
    let o = lab.http_status("app2", "http://example-web.example/", 3);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "200", "{}", text(&o));
    let name = format!(
        "ip-{}.ap-northeast-2.compute.internal",
        app2_ip.replace('.', "-")
    );
    let o = lab.exec("web", &["nslookup", &name]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&app2_ip),
        "{}",
        text(&o)
    );
    probe_passes(&lab);
    // What was there before is untouched: the same namespaces and processes.
    let now = namespace_identities(&lab);
    for ns in &kept_namespaces {
        assert!(now.contains(ns), "{ns:?} was made again or removed");
    }
    let procs = processes(&lab);
    for p in &kept_procs {
        assert!(procs.contains(p), "{p:?} was restarted or stopped");
    }

    // The private route table loses its way out, then gets it back.
    let no_nat = files.write(
        "no-nat.yaml",
        &BUILTIN.replace("  private:\n    0.0.0.0/0: my-nat\n", "  private: {}\n"),
    );
    let out = applied(&lab, &no_nat);
    assert!(out.contains("~ route table"), "{out}");
    assert!(
        out.contains("- instance app2") && out.contains("- subnet public-2b"),
        "{out}"
    );
    let o = lab.http_status("app", "http://203.0.113.60/", 2);
    assert_ne!(
        String::from_utf8_lossy(&o.stdout),
        "200",
        "no route to the NAT gateway"
    );
    applied(&lab, &base);
    let o = lab.http_status("app", "http://203.0.113.60/", 3);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "200", "{}", text(&o));
    assert_eq!(namespace_identities(&lab), kept_namespaces);
    probe_passes(&lab);
    let again = applied(&lab, &base);
    assert_eq!(again.trim(), "no changes");
    drop(lab);
    assert_eq!(common::leftovers("t-apin"), Vec::<String>::new());
}

/// Edits AWS can't make in place are refused, every one at once, and an invalid file is
/// reported like `up` reports it; neither changes anything.
#[test]
fn refused_and_invalid_edits_change_nothing() {
    require_root!();
    let files = Files::new("t-apno");
    let lab = Lab::up(None, "t-apno");
    let state = || std::fs::read_to_string(format!("/run/vpclab/{}/state.json", lab.name)).unwrap();
    let before = (state(), namespace_identities(&lab));

    // The VPC's CIDR, and the web server moved to another subnet: AWS changes neither.
    let refused = files.write(
        "refused.yaml",
        &BUILTIN
            .replace("cidr: 10.0.0.0/16", "cidr: 10.0.0.0/17")
            .replace(
                "    subnet: public-2c\n    private_ip: 10.0.2.238",
                "    subnet: public-2a\n    private_ip: 10.0.0.238",
            ),
    );
    let o = apply(&lab, &refused, &[]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("AWS fixes a VPC's CIDR block"), "{err}");
    assert!(
        err.contains("stays in the subnet it was launched in"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");

    let invalid = files.write(
        "invalid.yaml",
        &BUILTIN.replace("cidr: 10.0.3.0/24", "cidr: 10.0.3.0/33"),
    );
    let o = apply(&lab, &invalid, &[]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("invalid.yaml:"),
        "errors name FILE:LINE:COL: {err}"
    );

    assert_eq!((state(), namespace_identities(&lab)), before);
    let not_up = vpclab()
        .args(["apply", "--name", "t-apnone"])
        .output()
        .unwrap();
    assert!(!not_up.status.success());
    assert!(
        String::from_utf8_lossy(&not_up.stderr).contains("is not up"),
        "{}",
        text(&not_up)
    );
}

/// Services, Elastic IPs, internet hosts and a NAT gateway come and go in a running lab, each
/// with the lab's expectations edited to match and the probe suite passing after it.
#[test]
fn services_elastic_ips_internet_hosts_and_nat_gateways_change_live() {
    require_root!();
    let files = Files::new("t-apgw");
    let lab = Lab::up(None, "t-apgw");
    let edit = |from: &str, to: &str, text: &str| {
        assert!(text.contains(from), "the lab file has no {from:?}");
        text.replacen(from, to, 1)
    };
    // web: no https any more, and an Elastic IP instead of its auto-assigned address; a new
    // internet host.
    let mut v1 = edit(
        "    services: [ssh, http, https]\n",
        "    services: [ssh, http]\n",
        BUILTIN,
    );
    v1 = edit(
        "  - { from: my-laptop, to: web, check: https, result: ok }\n",
        "  - { from: my-laptop, to: web, check: https, result: blocked }\n  - { from: web, to: partner, check: http, result: ok, seen_as: web }\n",
        &v1,
    );
    v1 = edit(
        "  my-nat-eip: auto\n",
        "  my-nat-eip: auto\n  web-eip: auto\n",
        &v1,
    );
    v1 = edit(
        "    private_ip: 10.0.2.238\n    public_ip: auto\n",
        "    private_ip: 10.0.2.238\n    public_ip: web-eip\n",
        &v1,
    );
    v1 = edit(
        "  stranger:    { ip: 192.0.2.66 }\n",
        "  stranger:    { ip: 192.0.2.66 }\n  partner:     { ip: 203.0.113.70, services: [http] }\n",
        &v1,
    );
    let v1_path = files.write("v1.yaml", &v1);
    let pid_of = |node: &str, what: &str| {
        processes(&lab)
            .into_iter()
            .find(|(n, w, _)| n == node && w == what)
            .map(|(_, _, pid)| pid)
    };
    let (sshd, nginx) = (pid_of("web", "sshd"), pid_of("web", "nginx"));
    assert!(can_connect(&lab, "my-laptop", "198.51.100.10:80"));

    let out = applied(&lab, &v1_path);
    for line in [
        "+ elastic ip web-eip",
        "~ instance web:",
        "+ internet host partner",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    probe_passes(&lab);
    assert_eq!(pid_of("web", "sshd"), sshd, "sshd was left alone");
    assert_ne!(
        pid_of("web", "nginx"),
        nginx,
        "nginx restarted without https"
    );
    assert!(
        !can_connect(&lab, "my-laptop", "198.51.100.10:80"),
        "the auto IP was released"
    );
    assert!(
        can_connect(&lab, "my-laptop", "198.51.100.12:80"),
        "the Elastic IP answers"
    );
    assert!(
        !can_connect(&lab, "my-laptop", "198.51.100.12:443"),
        "https is gone"
    );

    // The NAT gateway deleted (its Elastic IP stays allocated), then created again.
    let mut v2 = edit(
        "  private:\n    0.0.0.0/0: my-nat\n",
        "  private: {}\n",
        &v1,
    );
    v2 = edit(
        "nat_gateways:\n  my-nat: { subnet: public-2a, elastic_ip: my-nat-eip }\n",
        "",
        &v2,
    );
    v2 = edit(
        "  - { from: app, to: example-web, check: http, result: ok, seen_as: my-nat-eip }\n",
        "  - { from: app, to: example-web, check: http, result: blocked }\n",
        &v2,
    );
    let v2_path = files.write("v2.yaml", &v2);
    let out = applied(&lab, &v2_path);
    assert!(out.contains("- nat gateway my-nat"), "{out}");
    assert!(!common::namespaces_of(&lab.name).contains(&lab.ns("my-nat")));
    probe_passes(&lab);
    let out = applied(&lab, &v1_path);
    assert!(out.contains("+ nat gateway my-nat"), "{out}");
    probe_passes(&lab);

    // And back to the lab as `up` made it.
    let base = files.write("base.yaml", BUILTIN);
    let out = applied(&lab, &base);
    assert!(
        out.contains("- elastic ip web-eip") && out.contains("- internet host partner"),
        "{out}"
    );
    probe_passes(&lab);
    drop(lab);
    assert_eq!(common::leftovers("t-apgw"), Vec::<String>::new());
}

/// An instance's auto-assigned public IP switched off and on, and a subnet moved to another
/// route table, live.
#[test]
fn public_ips_and_route_table_associations_change_live() {
    require_root!();
    let files = Files::new("t-apip");
    let lab = Lab::up(None, "t-apip");
    let base = files.write("base.yaml", BUILTIN);
    let no_public = files.write(
        "no-public.yaml",
        &BUILTIN
            .replacen(
                "    private_ip: 10.0.2.238\n    public_ip: auto\n",
                "    private_ip: 10.0.2.238\n    public_ip: none\n",
                1,
            )
            // No public DNS name to expect any more.
            .replacen(
                "  - { from: my-laptop, to: web, check: dns, answer: public }\n",
                "",
                1,
            ),
    );
    let moved = files.write(
        "moved.yaml",
        &BUILTIN.replacen(
            "  private-2a: { az: ap-northeast-2a, cidr: 10.0.1.0/24, route_table: private }",
            "  private-2a: { az: ap-northeast-2a, cidr: 10.0.1.0/24, route_table: public }",
            1,
        ),
    );
    let app_out = || {
        let o = lab.http_status("app", "http://203.0.113.60/", 2);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };

    let out = applied(&lab, &no_public);
    assert!(
        out.contains("~ instance web: public ip auto -> none") || out.contains("~ instance web:"),
        "{out}"
    );
    assert!(
        !can_connect(&lab, "my-laptop", "198.51.100.10:80"),
        "no public IP, no way in"
    );
    applied(&lab, &base);
    assert!(
        can_connect(&lab, "my-laptop", "198.51.100.10:80"),
        "a public IP again"
    );

    assert_eq!(app_out(), "200");
    let out = applied(&lab, &moved);
    assert!(out.contains("~ route table"), "{out}");
    assert_ne!(
        app_out(),
        "200",
        "the public route table sends app to the internet gateway, which has no public IP for it"
    );
    applied(&lab, &base);
    assert_eq!(app_out(), "200");
    probe_passes(&lab);
}

/// The built-in lab with more instances in the web servers' group, each with sshd.
fn with_web_instances(names: &[&str]) -> String {
    let instances: String = names
        .iter()
        .map(|n| {
            format!(
                "  {n}:\n    subnet: public-2c\n    public_ip: auto\n    key_pair: aws-study\n    security_groups: [MyWebServer-SecurityGroup]\n    services: [ssh]\n"
            )
        })
        .collect();
    // After the built-in instances, so they keep their addresses (the web server 198.51.100.10).
    let lab = BUILTIN.replace(
        "\ndb_subnet_groups:",
        &format!("{instances}\ndb_subnet_groups:"),
    );
    assert!(lab.len() > BUILTIN.len());
    lab
}

const SSH_RULE: &str = "      - { type: ssh, source: my-ip }\n";

/// The lab table of `node`, as `nft -a list table` prints it.
fn nft_table(lab: &Lab, node: &str) -> String {
    let o = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns(node), "nft", "-a", "list", "table"])
        .args(["inet", "vpclab"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Rule lines without their handles and with their counters at zero.
fn without_handles_and_counts(table: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| {
            let l = l.split(" # handle ").next().unwrap();
            match (l.find("counter packets "), l.find(" bytes ")) {
                (Some(a), Some(b)) if b > a => {
                    let after =
                        l[b + " bytes ".len()..].trim_start_matches(|c: char| c.is_ascii_digit());
                    format!("{}counter{after}", &l[..a])
                }
                _ => l.to_string(),
            }
        })
        .collect()
}

/// `(comment, handle)` of every rule of a listing.
fn handles(table: &str) -> Vec<(String, String)> {
    table
        .lines()
        .filter_map(|l| {
            let (rule, handle) = l.split_once(" # handle ")?;
            let comment = rule.split_once("comment ")?.1;
            Some((comment.to_string(), handle.to_string()))
        })
        .collect()
}

/// A rule added to a group reaches each member's table in place: the rules that stay keep
/// their kernel handles and counts (the table was not loaded again), and the edited table
/// lists exactly like that of an instance launched into the group by the same apply.
#[test]
fn a_security_group_rule_edits_member_tables_in_place() {
    require_root!();
    let files = Files::new("t-apinpl");
    let without = files.write("without-ssh.yaml", &BUILTIN.replace(SSH_RULE, ""));
    let with = files.write("with-ssh.yaml", &with_web_instances(&["extra"]));
    let lab = Lab::up(Some(without.to_str().unwrap()), "t-apinpl");
    let before = nft_table(&lab, "web");
    let out = applied(&lab, &with);
    assert!(out.contains("+ inbound tcp 22 from my-ip"), "{out}");
    let after = nft_table(&lab, "web");
    let (kept, added) = (handles(&before), handles(&after));
    assert_eq!(added.len(), kept.len() + 1, "{after}");
    for rule in &kept {
        assert!(added.contains(rule), "{rule:?} was loaded again:\n{after}");
    }
    assert_eq!(
        without_handles_and_counts(&after),
        without_handles_and_counts(&nft_table(&lab, "extra")),
        "edited in place and loaded fresh list alike"
    );
    assert!(can_connect(&lab, "my-laptop", "198.51.100.10:22"));
    drop(lab);
    assert_eq!(common::leftovers("t-apinpl"), Vec::<String>::new());
}

/// A group's rule change when one member's namespace is gone: the other members get the
/// rule, the apply names the namespace that failed and points at `repair`, and `repair`
/// brings the whole lab to the file.
#[test]
fn a_member_that_cannot_be_changed_is_reported_and_repair_converges() {
    require_root!();
    let files = Files::new("t-apfail");
    let with = with_web_instances(&["extra1", "extra2"]);
    let without = files.write("without-ssh.yaml", &with.replace(SSH_RULE, ""));
    let with = files.write("with-ssh.yaml", &with);
    let lab = Lab::up(Some(without.to_str().unwrap()), "t-apfail");
    let gone = lab.ns("extra2");
    let o = std::process::Command::new("ip")
        .args(["netns", "delete", &gone])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));

    let o = apply(&lab, &with, &[]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains(&format!("{gone}: ")), "{t}");
    assert!(t.contains("sudo vpclab repair t-apfail"), "{t}");
    assert!(
        can_connect(&lab, "my-laptop", "198.51.100.10:22"),
        "the members that could be changed were"
    );
    assert!(nft_table(&lab, "extra1").contains("SSH 22 from my IP"));

    let r = vpclab().args(["repair", &lab.name]).output().unwrap();
    assert!(r.status.success(), "{}", text(&r));
    assert!(nft_table(&lab, "extra2").contains("SSH 22 from my IP"));
    probe_passes(&lab);
    let again = apply(&lab, &with, &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("no changes"));
    drop(lab);
    assert_eq!(common::leftovers("t-apfail"), Vec::<String>::new());
}
