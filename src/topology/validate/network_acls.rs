//! Network ACLs: the subnets each one guards (every subnet has at most one custom ACL; the
//! others keep the VPC's default) and their numbered, stateless rules.

use super::network::Network;
use super::{Validator, loc};
use crate::topology::file::{AclRuleFile, LabFile, S, Scalar};
use crate::topology::model::{AclAction, AclRule, NetworkAcl};
use std::collections::HashMap;

/// AWS's rule numbers: 32767 is the implicit `*` rule every direction ends with.
const RULE_NUMBERS: std::ops::RangeInclusive<u32> = 1..=32766;
/// AWS's default quota of rules per direction of one ACL.
pub const MAX_RULES: usize = 20;

impl Validator {
    pub(super) fn network_acls(&mut self, f: &LabFile, net: &Network) -> Vec<NetworkAcl> {
        let mut out = Vec::new();
        // Which ACL each subnet is associated with so far, and where.
        let mut associated: HashMap<String, (String, u64)> = HashMap::new();
        for (key, acl) in &f.network_acls {
            if key.value.is_empty() || key.value.len() > 255 {
                self.err(
                    loc(key),
                    "network ACL name must be 1 to 255 characters",
                    "AWS limits Name tags to 255 characters; shorten it",
                );
            }
            let mut subnets = Vec::new();
            for s in &acl.subnets {
                if let Some((other, line)) = associated.get(&s.value) {
                    let (other, line) = (other.clone(), *line);
                    self.err(
                        loc(s),
                        format!(
                            "subnet `{}` is already associated with network ACL `{other}` at line {line}",
                            s.value
                        ),
                        "a subnet has exactly one network ACL; remove it from one of them",
                    );
                    continue;
                }
                associated.insert(s.value.clone(), (key.value.clone(), loc(s).line()));
                if let Some(i) = self.subnet_ref(f, net, s) {
                    subnets.push(i);
                }
            }
            let inbound = self.acl_rules(&key.value, &acl.inbound, true);
            let outbound = self.acl_rules(&key.value, &acl.outbound, false);
            out.push(NetworkAcl {
                name: key.value.clone(),
                subnets,
                inbound,
                outbound,
            });
        }
        out
    }

    /// One direction's rules, sorted by number (the order they are evaluated in).
    fn acl_rules(&mut self, acl: &str, list: &[S<AclRuleFile>], inbound: bool) -> Vec<AclRule> {
        let direction = if inbound { "inbound" } else { "outbound" };
        if let Some(extra) = list.get(MAX_RULES) {
            self.err(
                extra.referenced,
                format!(
                    "network ACL `{acl}` has {} {direction} rules, more than {MAX_RULES}",
                    list.len()
                ),
                format!(
                    "AWS allows {MAX_RULES} rules per direction by default; merge rules (a port range or a wider CIDR covers several)"
                ),
            );
        }
        let mut numbers: HashMap<u16, u64> = HashMap::new();
        let mut out = Vec::new();
        for r in list {
            let Some(number) = self.acl_rule_number(&r.value.rule) else {
                continue;
            };
            if let Some(line) = numbers.get(&number) {
                self.err(
                    loc(&r.value.rule),
                    format!("{direction} rule number {number} is already used at line {line}"),
                    "rule numbers of one direction are unique: the lowest number that matches decides; renumber one of them",
                );
                continue;
            }
            numbers.insert(number, loc(&r.value.rule).line());
            if let Some(rule) = self.acl_rule(r, number, inbound) {
                out.push(rule);
            }
        }
        out.sort_by_key(|r| r.number);
        out
    }

    fn acl_rule_number(&mut self, s: &S<Scalar>) -> Option<u16> {
        let text = s.value.0.trim();
        match text.parse::<u32>() {
            Ok(n) if RULE_NUMBERS.contains(&n) => Some(n as u16),
            Ok(n) => {
                self.err(
                    loc(s),
                    format!("rule number {n} is out of range"),
                    "network ACL rule numbers are 1 to 32766 (32767 is the final `*` rule that denies)",
                );
                None
            }
            Err(_) => {
                self.err(
                    loc(s),
                    format!("rule number `{text}` is not a number"),
                    "write a whole number from 1 to 32766, like `100`",
                );
                None
            }
        }
    }

    fn acl_rule(&mut self, r: &S<AclRuleFile>, number: u16, inbound: bool) -> Option<AclRule> {
        let rv = &r.value;
        let action = match rv.action.value.as_str() {
            "allow" => Some(AclAction::Allow),
            "deny" => Some(AclAction::Deny),
            other => {
                self.err(
                    loc(&rv.action),
                    format!("unknown action `{other}`"),
                    "a network ACL rule's action is `allow` or `deny`",
                );
                None
            }
        };
        let traffic = self.rule_traffic(&rv.kind, &rv.protocol, &rv.port, r.referenced);
        let field_name = if inbound { "source" } else { "destination" };
        let peer_s = self.rule_peer(
            (&rv.source, &rv.destination),
            inbound,
            r.referenced,
            "a CIDR (0.0.0.0/0 for anywhere)",
        )?;
        if !peer_s.value.contains('/') {
            let hint = if peer_s.value.parse::<std::net::Ipv4Addr>().is_ok() {
                format!("write `{}/32` for one address", peer_s.value)
            } else {
                "network ACL rules know no security groups or `my-ip`: write a CIDR like `10.0.0.0/16`".to_string()
            };
            self.err(
                loc(peer_s),
                format!(
                    "a network ACL rule's {field_name} is a CIDR, not `{}`",
                    peer_s.value
                ),
                hint,
            );
            return None;
        }
        let scalar = S {
            value: Scalar(peer_s.value.clone()),
            referenced: peer_s.referenced,
            defined: peer_s.defined,
        };
        let peer = self.cidr(&scalar, field_name)?;
        let (protocol, ports, label) = traffic?;
        Some(AclRule {
            number,
            protocol,
            ports,
            peer,
            action: action?,
            label,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::topology::{AclAction, Protocol, Source, check};

    const ACL: &str = "network_acls:
  private-acl:
    subnets: [private-2a, private-2c]
    inbound:
      - { rule: 200, protocol: tcp, port: 1024-65535, source: 0.0.0.0/0, action: allow }
      - { rule: 100, type: ssh, source: 10.0.0.0/16, action: allow }
    outbound:
      - { rule: 100, protocol: all, destination: 0.0.0.0/0, action: deny }
";

    /// The built-in lab with `acl` inserted before its instances.
    fn with_acl(acl: &str) -> String {
        edit("instances:\n", &format!("{acl}instances:\n"))
    }

    #[test]
    fn rules_are_sorted_by_number_and_subnets_resolved() {
        let (lab, d) = check(&with_acl(ACL), &Source::Builtin, None);
        let lab = lab.unwrap_or_else(|| panic!("{:?}", d.errors().collect::<Vec<_>>()));
        let acl = &lab.network_acls[0];
        assert_eq!(acl.name, "private-acl");
        let names: Vec<&str> = acl
            .subnets
            .iter()
            .map(|s| lab.subnets[*s].name.as_str())
            .collect();
        assert_eq!(names, ["private-2a", "private-2c"]);
        let numbers: Vec<u16> = acl.inbound.iter().map(|r| r.number).collect();
        assert_eq!(numbers, [100, 200]);
        assert_eq!(acl.inbound[0].ports, Some((22, 22)));
        assert_eq!(
            acl.inbound[0].describe(true),
            "100 allow tcp 22 from 10.0.0.0/16"
        );
        assert_eq!(acl.outbound[0].protocol, Protocol::All);
        assert_eq!(acl.outbound[0].action, AclAction::Deny);
        let private = lab.subnets.iter().position(|s| s.name == "private-2a");
        let public = lab.subnets.iter().position(|s| s.name == "public-2a");
        assert!(lab.network_acl_of(private.unwrap()).is_some());
        assert!(lab.network_acl_of(public.unwrap()).is_none());
    }

    #[test]
    fn every_acl_mistake_is_reported_where_it_is_written() {
        let acl = "network_acls:
  one:
    subnets: [private-2a, nowhere]
    inbound:
      - { rule: 100, type: ssh, source: 10.0.0.0/16, action: allow }
      - { rule: 100, type: http, source: 0.0.0.0/0, action: allow }
      - { rule: 0, type: http, source: 0.0.0.0/0, action: allow }
      - { rule: 40000, type: http, source: 0.0.0.0/0, action: allow }
      - { rule: 300, type: http, source: web-sg, action: allow }
      - { rule: 400, type: http, source: 0.0.0.0/0, action: maybe }
  two:
    subnets: [private-2a]
";
        let text = with_acl(acl);
        let errs = errors(&text);
        let msgs: Vec<String> = errs.iter().map(|e| e.2.clone()).collect();
        let first = pos(&text, "rule: 100, type: ssh", "100").0;
        let one_line = pos(&text, "subnets: [private-2a, nowhere]", "private").0;
        assert_eq!(
            msgs,
            [
                "subnet `nowhere` is not defined".to_string(),
                format!("inbound rule number 100 is already used at line {first}"),
                "rule number 0 is out of range".into(),
                "rule number 40000 is out of range".into(),
                "a network ACL rule's source is a CIDR, not `web-sg`".into(),
                "unknown action `maybe`".into(),
                format!(
                    "subnet `private-2a` is already associated with network ACL `one` at line {one_line}"
                ),
            ]
        );
        assert_eq!(
            (errs[1].0, errs[1].1),
            pos(&text, "rule: 100, type: http", "100")
        );
    }

    #[test]
    fn more_than_twenty_rules_in_a_direction_is_an_error_at_the_twenty_first() {
        let mut acl =
            String::from("network_acls:\n  big:\n    subnets: [private-2a]\n    outbound:\n");
        for n in 1..=21 {
            acl += &format!(
                "      - {{ rule: {n}, protocol: tcp, port: {n}, destination: 0.0.0.0/0, action: allow }}\n"
            );
        }
        let text = with_acl(&acl);
        let (line, col, m) = one_error(&text);
        assert_eq!(m, "network ACL `big` has 21 outbound rules, more than 20");
        assert_eq!((line, col), pos(&text, "rule: 21,", "{"));
    }

    #[test]
    fn an_acl_without_rules_is_valid_and_denies_everything() {
        let text = with_acl("network_acls:\n  closed: { subnets: [public-2c] }\n");
        let (lab, _) = check(&text, &Source::Builtin, None);
        let lab = lab.unwrap();
        assert!(lab.network_acls[0].inbound.is_empty());
        assert!(lab.network_acls[0].outbound.is_empty());
    }
}
