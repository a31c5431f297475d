//! Security groups: their rules (the console's types or a protocol with ports) and each
//! rule's peer (a CIDR, `my-ip` or another group).

use super::{Validator, loc, quoted_list};
use crate::topology::aws::{self, rule_type};
use crate::topology::file::{self, LabFile, S, Scalar};
use crate::topology::model::{Peer, Protocol, SecurityGroup, SgRule};
use ipnet::Ipv4Net;
use serde_saphyr::Location;
use std::net::Ipv4Addr;

/// What a rule matches: its protocol, its inclusive port range (`None`: all, or not
/// applicable) and the console's name for it ("SSH", "Custom TCP").
pub(super) type Traffic = (Protocol, Option<(u16, u16)>, String);

impl Validator {
    pub(super) fn security_groups(
        &mut self,
        f: &LabFile,
        my_ip: Option<Ipv4Addr>,
    ) -> Vec<SecurityGroup> {
        let names: Vec<&str> = f.security_groups.keys().map(|k| k.value.as_str()).collect();
        let mut out = Vec::new();
        for (key, g) in &f.security_groups {
            if key.value.is_empty() || key.value.len() > 255 {
                self.err(
                    loc(key),
                    "security group name must be 1 to 255 characters",
                    "AWS limits group names to 255 characters; shorten it",
                );
            }
            let rules = |v: &mut Self, list: &[S<file::SgRuleFile>], inbound: bool| {
                list.iter()
                    .filter_map(|r| v.sg_rule(r, inbound, &names, my_ip))
                    .collect::<Vec<_>>()
            };
            let inbound = rules(self, &g.inbound, true);
            let outbound = match &g.outbound {
                None => vec![SgRule {
                    protocol: Protocol::All,
                    ports: None,
                    peer: Peer::Cidr(Ipv4Net::default()),
                    label: "All traffic".into(),
                    description: Some("default outbound rule".into()),
                }],
                Some(list) => rules(self, list, false),
            };
            out.push(SecurityGroup {
                name: key.value.clone(),
                description: g.description.clone(),
                inbound,
                outbound,
            });
        }
        out
    }

    /// The groups a resource lists, as indexes into `groups`. Reports a group that is not
    /// defined, and an empty list at `at`: every instance and database needs a group.
    pub(super) fn attached_security_groups(
        &mut self,
        groups: &[SecurityGroup],
        list: &[S<String>],
        at: Location,
        owner: &str,
        empty_hint: &str,
    ) -> Vec<usize> {
        if list.is_empty() {
            self.err(at, format!("{owner} has no security group"), empty_hint);
        }
        let mut out = Vec::new();
        for s in list {
            match groups.iter().position(|g| g.name == s.value) {
                Some(i) => out.push(i),
                None => {
                    let defined = groups.iter().map(|g| g.name.as_str());
                    self.not_defined(s, "security group", defined);
                }
            }
        }
        out
    }

    fn sg_rule(
        &mut self,
        r: &S<file::SgRuleFile>,
        inbound: bool,
        groups: &[&str],
        my_ip: Option<Ipv4Addr>,
    ) -> Option<SgRule> {
        let rv = &r.value;
        let (protocol, ports, label) =
            self.rule_traffic(&rv.kind, &rv.protocol, &rv.port, r.referenced)?;
        let field_name = if inbound { "source" } else { "destination" };
        let peer_s = self.rule_peer(
            (&rv.source, &rv.destination),
            inbound,
            r.referenced,
            "a CIDR (0.0.0.0/0 for anywhere), `my-ip`, or a security group name",
        )?;
        let peer = if peer_s.value == "my-ip" {
            match my_ip {
                Some(ip) => Peer::MyIp(ip),
                None => {
                    self.err(
                        loc(peer_s),
                        "`my-ip` is used but no internet host is marked `my_ip: true`",
                        "mark your laptop under `internet:`, e.g. `my-laptop: { ip: 203.0.113.10, my_ip: true }`",
                    );
                    return None;
                }
            }
        } else if let Some(group) = groups.iter().position(|g| *g == peer_s.value) {
            Peer::Group(group)
        } else if peer_s.value.contains('/') || peer_s.value.parse::<Ipv4Addr>().is_ok() {
            let sc = S {
                value: Scalar(peer_s.value.clone()),
                referenced: peer_s.referenced,
                defined: peer_s.defined,
            };
            if !peer_s.value.contains('/') {
                self.err(
                    loc(peer_s),
                    format!("{field_name} `{}` needs a prefix length", peer_s.value),
                    format!("write `{}/32` for one address", peer_s.value),
                );
                return None;
            }
            Peer::Cidr(self.cidr(&sc, field_name)?)
        } else {
            self.err(
                loc(peer_s),
                format!("security group `{}` is not defined", peer_s.value),
                format!(
                    "a rule's {field_name} is a CIDR, `my-ip` or a security group; defined security groups: {}",
                    quoted_list(groups.iter().copied())
                ),
            );
            return None;
        };
        Some(SgRule {
            protocol,
            ports,
            peer,
            label,
            description: rv.description.clone(),
        })
    }

    /// The rule's other end: `source` for an inbound rule, `destination` for an outbound one
    /// (shared by security-group and network ACL rules). `at` is the rule, `accepted` what the
    /// field may hold, for the hint when it is missing.
    pub(super) fn rule_peer<'a>(
        &mut self,
        (source, destination): (&'a Option<S<String>>, &'a Option<S<String>>),
        inbound: bool,
        at: Location,
        accepted: &str,
    ) -> Option<&'a S<String>> {
        let (peer_field, wrong_field, field_name, wrong_name) = if inbound {
            (source, destination, "source", "destination")
        } else {
            (destination, source, "destination", "source")
        };
        if let Some(w) = wrong_field {
            self.err(
                loc(w),
                format!(
                    "an {} rule has a `{field_name}`, not a `{wrong_name}`",
                    if inbound { "inbound" } else { "outbound" }
                ),
                format!("rename `{wrong_name}` to `{field_name}`"),
            );
            return None;
        }
        let Some(peer) = peer_field else {
            self.err(
                at,
                format!("the rule has no `{field_name}`"),
                format!("add `{field_name}:` with {accepted}"),
            );
            return None;
        };
        Some(peer)
    }

    /// What a rule matches, written as a console `type` or as `protocol` with `port`:
    /// shared by security-group and network ACL rules. `at` is the rule, for a rule that
    /// has neither.
    pub(super) fn rule_traffic(
        &mut self,
        kind: &Option<S<String>>,
        protocol: &Option<S<String>>,
        port: &Option<S<Scalar>>,
        at: Location,
    ) -> Option<Traffic> {
        let (proto, mut ports, label) = match (kind, protocol) {
            (Some(_), Some(p)) => {
                self.err(
                    loc(p),
                    "a rule has either `type` or `protocol`, not both",
                    "`type: ssh` already means tcp port 22; remove `protocol` (and `port`)",
                );
                return None;
            }
            (Some(t), None) => match rule_type(&t.value) {
                Some(rt) => {
                    if let Some(p) = port {
                        self.err(
                            loc(p),
                            format!("`type: {}` already sets the port", t.value),
                            "remove `port`, or use `protocol:` with `port:` for a custom rule",
                        );
                    }
                    (rt.protocol, rt.ports, rt.label.to_string())
                }
                None => {
                    self.err(
                        loc(t),
                        format!("unknown rule type `{}`", t.value),
                        format!(
                            "types are {}; or write `protocol:` and `port:`",
                            quoted_list(aws::RULE_TYPES.iter().map(|t| t.name))
                        ),
                    );
                    return None;
                }
            },
            (None, Some(p)) => {
                let parsed = match p.value.as_str() {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    "icmp" => Protocol::Icmp,
                    "all" | "-1" => Protocol::All,
                    other => {
                        self.err(
                            loc(p),
                            format!("unknown protocol `{other}`"),
                            "protocols are `tcp`, `udp`, `icmp` and `all`",
                        );
                        return None;
                    }
                };
                let label = match parsed {
                    Protocol::Tcp => "Custom TCP",
                    Protocol::Udp => "Custom UDP",
                    Protocol::Icmp => "All ICMP - IPv4",
                    Protocol::All => "All traffic",
                };
                (parsed, None, label.to_string())
            }
            (None, None) => {
                self.err(
                    at,
                    "the rule has neither `type` nor `protocol`",
                    "write e.g. `type: ssh`, or `protocol: tcp` with `port: 22`",
                );
                return None;
            }
        };
        if let Some(proto_s) = protocol {
            match (proto, port) {
                (Protocol::Tcp | Protocol::Udp, Some(p)) => ports = Some(self.port_range(p)?),
                (Protocol::Tcp | Protocol::Udp, None) => {
                    self.err(
                        loc(proto_s),
                        format!("a {} rule needs a port", proto.as_str()),
                        format!(
                            "add `port: 22` or a range like `port: 1024-65535`, or use `type: all-{}`",
                            proto.as_str()
                        ),
                    );
                    return None;
                }
                (Protocol::Icmp | Protocol::All, Some(p)) => {
                    self.err(
                        loc(p),
                        format!("ports don't apply to protocol `{}`", proto.as_str()),
                        "remove `port`, or use `tcp` or `udp`",
                    );
                    return None;
                }
                _ => {}
            }
        }
        Some((proto, ports, label))
    }

    pub(super) fn port_range(&mut self, p: &S<Scalar>) -> Option<(u16, u16)> {
        let text = p.value.0.trim();
        let parse = |s: &str| s.trim().parse::<u32>().ok().filter(|n| *n <= 65535);
        let range = match text.split_once('-') {
            Some((a, b)) => parse(a).zip(parse(b)),
            None => parse(text).map(|n| (n, n)),
        };
        match range {
            Some((a, b)) if a <= b => Some((a as u16, b as u16)),
            Some((a, b)) => {
                self.err(
                    loc(p),
                    format!("port range `{text}` starts after it ends"),
                    format!("write the lower port first: `{b}-{a}`"),
                );
                None
            }
            None => {
                self.err(
                    loc(p),
                    format!("port `{text}` is not a port number or range"),
                    "ports are 0 to 65535: write `22` or a range like `1024-65535`",
                );
                None
            }
        }
    }
}
