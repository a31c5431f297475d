//! The address a trace sends to, found as FROM would find it: a node's address as seen
//! from FROM's side of the internet gateway, a DNS name as FROM's resolver answers it
//! (split horizon: an EC2 public name is the private IP inside the VPC), or an IP. The
//! name is asked of the running resolver first (`dns::lookup`, passed in as `ask`); when
//! none answers, the records the Plan gives that resolver are used.

use super::dns::Lookup;
use crate::plan::firewall::{Addr, Match, Verdict};
use crate::plan::{Plan, RecordData, Role};
use anyhow::{Result, bail};
use serde::Serialize;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// What the user typed.
    pub spec: String,
    pub ip: Ipv4Addr,
    /// The node that answers at that address (where a temporary listener goes).
    pub node: Option<String>,
    /// How the address was found, for people.
    pub how: String,
}

fn on_internet(role: Role) -> bool {
    matches!(role, Role::InternetHost | Role::InternetRouter)
}

/// The internet gateways' 1:1 pairs (private, public), read from their source rewrites
/// (each pair has one, and one destination rewrite the other way).
pub fn static_nat_pairs(plan: &Plan) -> impl Iterator<Item = (Ipv4Addr, Ipv4Addr)> + '_ {
    plan.namespaces
        .iter()
        .filter(|n| n.role == Role::InternetGateway)
        .flat_map(|n| n.firewall.iter())
        .flat_map(|t| t.chains.iter())
        .flat_map(|c| c.rules.iter())
        .filter_map(|r| match (&r.verdict, r.matches.first()) {
            (Verdict::Snat { addr, .. }, Some(Match::Saddr(Addr::Net(private)))) => {
                Some((private.addr(), *addr))
            }
            _ => None,
        })
}

/// Public address → private address, through the internet gateway's static NAT.
pub fn public_to_private(plan: &Plan, public: Ipv4Addr) -> Option<Ipv4Addr> {
    static_nat_pairs(plan).find_map(|(pv, pb)| (pb == public).then_some(pv))
}

/// Private address → public address (the IGW's static NAT the other way).
pub fn private_to_public(plan: &Plan, private: Ipv4Addr) -> Option<Ipv4Addr> {
    static_nat_pairs(plan).find_map(|(pv, pb)| (pv == private).then_some(pb))
}

/// The node holding `ip` on an interface, or behind it through the internet gateway.
pub fn owner(plan: &Plan, ip: Ipv4Addr) -> Option<String> {
    let holds = |ip: Ipv4Addr| {
        plan.namespaces
            .iter()
            .filter(|n| {
                !matches!(
                    n.role,
                    Role::VpcRouter | Role::InternetRouter | Role::InternetGateway
                )
            })
            .find(|n| {
                n.addresses
                    .iter()
                    .any(|a| a.dev != "lo" && a.addr.addr() == ip)
            })
            .map(|n| n.node.clone())
    };
    holds(ip).or_else(|| holds(public_to_private(plan, ip)?))
}

/// The address of node `to` as node `from` reaches it.
fn node_address(plan: &Plan, from_internet: bool, to: &str) -> Result<(Ipv4Addr, String)> {
    let ns = plan.netns(to).expect("caller checked");
    let private = ns
        .addresses
        .iter()
        .find(|a| a.dev == "eth0")
        .map(|a| a.addr.addr());
    let Some(private) = private else {
        bail!(
            "`{to}` is the {}, not a host: give one of its addresses, or a host",
            super::report::device(plan, to)
        );
    };
    if on_internet(ns.role) {
        return Ok((private, format!("{to}'s address")));
    }
    if !from_internet {
        return Ok((
            private,
            format!("{to}'s private IP, as seen inside the VPC"),
        ));
    }
    match private_to_public(plan, private) {
        Some(public) => Ok((
            public,
            format!("{to}'s public IP as seen from the internet; private IP {private}"),
        )),
        None => Ok((
            private,
            format!("{to} has no public IP: its private IP, which the internet has no route to"),
        )),
    }
}

/// Resolves TO for a trace from FROM; `ask(nameserver, name)` queries FROM's resolver.
pub fn resolve(
    plan: &Plan,
    from: &str,
    to: &str,
    ask: &dyn Fn(Ipv4Addr, &str) -> Lookup,
) -> Result<Target> {
    let Some(from_ns) = plan.netns(from) else {
        bail!(
            "lab `{}` has no node `{from}`\n  hint: nodes are {}",
            plan.lab,
            nodes(plan)
        );
    };
    if !matches!(
        from_ns.role,
        Role::Instance | Role::Database | Role::InternetHost
    ) {
        bail!(
            "`{from}` is the {}: a trace starts at a host (an instance, a database server or an internet host)",
            super::report::device(plan, from)
        );
    }
    let from_internet = on_internet(from_ns.role);
    let target = |ip: Ipv4Addr, how: String| Target {
        spec: to.to_string(),
        ip,
        node: owner(plan, ip),
        how,
    };
    if let Ok(ip) = to.parse::<Ipv4Addr>() {
        return Ok(target(ip, "an IP address".into()));
    }
    if plan.netns(to).is_some() {
        let (ip, how) = node_address(plan, from_internet, to)?;
        return Ok(target(ip, how));
    }
    // A DNS name: FROM's resolver, as FROM would ask it (the name, then with the search
    // domain).
    let (resolver, which) = if from_internet {
        (&plan.dns.internet, "the internet resolver")
    } else {
        (&plan.dns.vpc, "the VPC resolver")
    };
    let host = plan.host(from);
    let search = host.and_then(|h| h.search.clone());
    let mut candidates = vec![to.trim_end_matches('.').to_string()];
    if let Some(s) = &search {
        candidates.push(format!("{}.{s}", to.trim_end_matches('.')));
    }
    if let Some(nameserver) = host.map(|h| h.nameserver) {
        let mut answered = false;
        for name in &candidates {
            match ask(nameserver, name) {
                Lookup::Answer(ip, chain) => {
                    return Ok(target(
                        ip,
                        format!(
                            "DNS {}, answered by {which} at {nameserver}",
                            chain.join(", ")
                        ),
                    ));
                }
                Lookup::NoSuchName => answered = true,
                Lookup::NoServer => break,
            }
        }
        if answered {
            bail!("{which} at {nameserver} has no address for `{to}` (asked from {from})");
        }
    }
    // Nothing answered: the records the Plan gives FROM's resolver.
    for name in candidates {
        let mut current = name.clone();
        let mut chain = vec![];
        for _ in 0..8 {
            let Some(r) = resolver
                .records
                .iter()
                .find(|r| r.name.eq_ignore_ascii_case(&current))
            else {
                break;
            };
            match &r.data {
                RecordData::A(ip) => {
                    chain.push(format!("{current} A {ip}"));
                    return Ok(target(
                        *ip,
                        format!(
                            "DNS {}, from the Plan's records of {which}: no resolver answered {from}",
                            chain.join(", ")
                        ),
                    ));
                }
                RecordData::Cname(next) => {
                    chain.push(format!("{current} CNAME {next}"));
                    current = next.clone();
                }
            }
        }
    }
    bail!(
        "`{to}` is neither a node of lab `{}`, an IP address, nor a name {which} knows\n  hint: nodes are {}",
        plan.lab,
        nodes(plan)
    )
}

fn nodes(plan: &Plan) -> String {
    let mut n: Vec<&str> = plan.namespaces.iter().map(|n| n.node.as_str()).collect();
    n.sort();
    n.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology;

    fn plan() -> Plan {
        let loaded = topology::load(topology::Source::Builtin, None).unwrap();
        crate::plan::compile(&loaded.lab)
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// No resolver runs: the Plan's records answer.
    fn resolve(p: &Plan, from: &str, to: &str) -> Result<Target> {
        super::resolve(p, from, to, &|_, _| Lookup::NoServer)
    }

    #[test]
    fn nodes_resolve_to_the_address_seen_from_the_senders_side() {
        let p = plan();
        assert_eq!(
            resolve(&p, "web", "example-web").unwrap().ip,
            ip("203.0.113.60")
        );
        let t = resolve(&p, "stranger", "web").unwrap();
        assert_eq!(
            (t.ip, t.node.as_deref()),
            (ip("198.51.100.10"), Some("web"))
        );
        assert_eq!(resolve(&p, "app", "web").unwrap().ip, ip("10.0.2.238"));
        let t = resolve(&p, "stranger", "app").unwrap();
        assert_eq!(t.ip, ip("10.0.1.101"));
        assert!(t.how.contains("no public IP"), "{}", t.how);
        assert_eq!(
            resolve(&p, "stranger", "my-nat").unwrap().ip,
            ip("198.51.100.11")
        );
        assert!(resolve(&p, "web", "vpc-router").is_err());
        assert!(resolve(&p, "my-igw", "web").is_err());
    }

    #[test]
    fn dns_names_resolve_split_horizon_and_follow_cnames() {
        let p = plan();
        let public_name = "ec2-198-51-100-10.ap-northeast-2.compute.amazonaws.com";
        assert_eq!(
            resolve(&p, "app", public_name).unwrap().ip,
            ip("10.0.2.238")
        );
        assert_eq!(
            resolve(&p, "my-laptop", public_name).unwrap().ip,
            ip("198.51.100.10")
        );
        assert_eq!(
            resolve(&p, "web", "example-web.example").unwrap().ip,
            ip("203.0.113.60")
        );
        // The search domain: ip-10-0-1-101 is app's private name.
        let t = resolve(&p, "web", "ip-10-0-1-101").unwrap();
        assert_eq!((t.ip, t.node.as_deref()), (ip("10.0.1.101"), Some("app")));
        let endpoint = p
            .dns
            .vpc
            .records
            .iter()
            .find(|r| r.name.contains(".rds."))
            .unwrap()
            .name
            .clone();
        let t = resolve(&p, "web", &endpoint).unwrap();
        assert_eq!(t.ip, ip("10.0.3.87"));
        assert!(t.how.contains("CNAME"), "{}", t.how);
        assert!(resolve(&p, "web", "nowhere.example").is_err());
        let t = resolve(&p, "web", "198.51.100.11").unwrap();
        assert_eq!(t.node.as_deref(), Some("my-nat"));
    }

    #[test]
    fn a_running_resolver_is_asked_first_as_from_would_ask_it() {
        let p = plan();
        let asked = std::cell::RefCell::new(vec![]);
        let ask = |ns: Ipv4Addr, name: &str| {
            asked.borrow_mut().push(format!("{ns} {name}"));
            if name == "db.ap-northeast-2.compute.internal" {
                Lookup::Answer(ip("10.0.1.64"), vec![format!("{name} A 10.0.1.64")])
            } else {
                Lookup::NoSuchName
            }
        };
        let t = super::resolve(&p, "web", "db", &ask).unwrap();
        assert_eq!(
            (t.ip, t.node.as_deref()),
            (ip("10.0.1.64"), Some("my-database-2a"))
        );
        assert!(t.how.contains("at 10.0.0.2"), "{}", t.how);
        assert_eq!(
            *asked.borrow(),
            ["10.0.0.2 db", "10.0.0.2 db.ap-northeast-2.compute.internal"]
        );
        // The resolver's "no such name" is final; nodes and IPs are not asked at all.
        assert!(
            super::resolve(&p, "web", "example-web.example", &|_, _| Lookup::NoSuchName).is_err()
        );
        let never = |_: Ipv4Addr, _: &str| -> Lookup { panic!("asked") };
        assert_eq!(
            super::resolve(&p, "web", "example-web", &never).unwrap().ip,
            ip("203.0.113.60")
        );
    }
}
