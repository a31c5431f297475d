//! Security groups and their rules. A rule the API adds is the lab file's rule: the
//! console's type when its protocol and ports are one (SSH, HTTP), else a custom one.

use super::edit;
use crate::api::error::{ApiError, ApiResult};
use crate::api::query::{IpPermission, Params};
use crate::api::service::{Answer, Service, all_found, filtered, ok, tag_filter, vpc_id};
use crate::api::xml::X;
use crate::lab::Running;
use crate::plan::aws_id;
use crate::topology::{Lab, Peer, Protocol, SecurityGroup, SgRule, aws, export};
use std::sync::Arc;

impl Service {
    pub fn create_security_group(&mut self, p: &Params, region: &str) -> Answer {
        let name = p.require("GroupName")?.to_string();
        let description = p.require("GroupDescription")?.to_string();
        let vpc = p.get("VpcId").ok_or_else(|| {
            ApiError::new(
                "VPCIdNotSpecified",
                "No default VPC for this user: give VpcId",
            )
        })?;
        if name.starts_with("sg-") {
            return Err(ApiError::invalid(
                "Group names may not be in the format sg-*",
            ));
        }
        let r = self.vpc(region, vpc)?;
        if r.file_lab.security_groups.iter().any(|g| g.name == name) {
            return Err(ApiError::new(
                "InvalidGroup.Duplicate",
                format!("The security group '{name}' already exists for VPC '{vpc}'"),
            ));
        }
        let tags = p.tag_specifications("security-group")?;
        self.change(&r, p.dry_run()?, |lab| {
            lab.security_groups.push(SecurityGroup {
                name: name.clone(),
                description: Some(description),
                inbound: vec![],
                outbound: vec![export::default_outbound()],
            });
            Ok(())
        })?;
        let id = aws_id("sg", &r.file_lab.name, &name);
        self.set_tags(&id, &tags);
        self.save()?;
        Ok(X::new("body")
            .text("return", "true")
            .text("groupId", &id)
            .list("tagSet", self.tag_set(&id, "")))
    }

    /// The lab and index of a group given by `GroupId` (or by `GroupName` in a VPC).
    pub fn security_group(&self, region: &str, id: &str) -> ApiResult<(Arc<Running>, usize)> {
        self.find(region, |r| {
            r.file_lab
                .security_groups
                .iter()
                .position(|g| aws_id("sg", &r.file_lab.name, &g.name) == id)
        })
        .ok_or_else(|| {
            ApiError::new(
                "InvalidGroup.NotFound",
                format!("The security group '{id}' does not exist"),
            )
        })
    }

    fn group_param(&self, p: &Params, region: &str) -> ApiResult<(Arc<Running>, usize)> {
        match (p.get("GroupId"), p.get("GroupName")) {
            (Some(id), _) => self.security_group(region, id),
            (None, Some(name)) => self
                .find(region, |r| {
                    r.file_lab
                        .security_groups
                        .iter()
                        .position(|g| g.name == name)
                })
                .ok_or_else(|| {
                    ApiError::new(
                        "InvalidGroup.NotFound",
                        format!("The security group '{name}' does not exist"),
                    )
                }),
            (None, None) => Err(ApiError::missing("GroupId")),
        }
    }

    pub fn authorize(&mut self, p: &Params, region: &str, inbound: bool) -> Answer {
        let (r, g) = self.group_param(p, region)?;
        let rules = rules_of(p, &r.file_lab, inbound)?;
        let group_id = aws_id("sg", &r.file_lab.name, &r.file_lab.security_groups[g].name);
        self.change(&r, p.dry_run()?, |lab| {
            let list = rules_mut(&mut lab.security_groups[g], inbound);
            for rule in &rules {
                if list.iter().any(|x| same_traffic(x, rule)) {
                    return Err(ApiError::new(
                        "InvalidPermission.Duplicate",
                        format!(
                            "the specified rule \"peer: {}, {}, ALLOW\" already exists",
                            peer_text(&rule.peer),
                            traffic_text(rule)
                        ),
                    ));
                }
                list.push(rule.clone());
            }
            Ok(())
        })?;
        let items = rules.iter().map(|rule| {
            self.rule_xml(
                &r.file_lab,
                &group_id,
                &r.file_lab.security_groups[g].name,
                rule,
                !inbound,
                "item",
            )
        });
        Ok(X::new("body")
            .text("return", "true")
            .list("securityGroupRuleSet", items.collect::<Vec<_>>()))
    }

    pub fn revoke(&mut self, p: &Params, region: &str, inbound: bool) -> Answer {
        let (r, g) = self.group_param(p, region)?;
        let group_name = r.file_lab.security_groups[g].name.clone();
        let rule_ids = p.list("SecurityGroupRuleId");
        let rules = if rule_ids.is_empty() {
            rules_of(p, &r.file_lab, inbound)?
        } else {
            let group = &r.file_lab.security_groups[g];
            let list = if inbound {
                &group.inbound
            } else {
                &group.outbound
            };
            let mut v = Vec::new();
            for id in &rule_ids {
                let found = list
                    .iter()
                    .find(|x| rule_id(&r.file_lab, &group_name, x, !inbound) == *id);
                v.push(found.cloned().ok_or_else(|| {
                    ApiError::new(
                        "InvalidSecurityGroupRuleId.NotFound",
                        format!("The security group rule ID '{id}' does not exist"),
                    )
                })?);
            }
            v
        };
        self.change(&r, p.dry_run()?, |lab| {
            let list = rules_mut(&mut lab.security_groups[g], inbound);
            for rule in &rules {
                let Some(i) = list.iter().position(|x| same_traffic(x, rule)) else {
                    return Err(ApiError::new(
                        "InvalidPermission.NotFound",
                        format!(
                            "The specified rule does not exist in this security group ({}, {})",
                            peer_text(&rule.peer),
                            traffic_text(rule)
                        ),
                    ));
                };
                list.remove(i);
            }
            Ok(())
        })?;
        Ok(ok())
    }

    fn rule_xml(
        &self,
        lab: &Lab,
        group_id: &str,
        group_name: &str,
        rule: &SgRule,
        egress: bool,
        tag: &str,
    ) -> X {
        let (from, to) = ports_of(rule);
        let mut x = X::new(tag)
            .text(
                "securityGroupRuleId",
                rule_id(lab, group_name, rule, egress),
            )
            .text("groupId", group_id)
            .text("groupOwnerId", &self.owner_id)
            .text("isEgress", egress)
            .text("ipProtocol", protocol_number(rule.protocol))
            .text("fromPort", from)
            .text("toPort", to);
        x = match &rule.peer {
            Peer::Cidr(c) => x.text("cidrIpv4", c),
            Peer::MyIp(ip) => x.text("cidrIpv4", format!("{ip}/32")),
            Peer::Group(i) => x.child(
                X::new("referencedGroupInfo")
                    .text(
                        "groupId",
                        aws_id("sg", &lab.name, &lab.security_groups[*i].name),
                    )
                    .text("userId", &self.owner_id),
            ),
        };
        x.opt("description", rule.description.as_ref())
    }

    fn permissions_xml(&self, lab: &Lab, rules: &[SgRule]) -> Vec<X> {
        rules
            .iter()
            .map(|rule| {
                let mut x = X::new("item").text("ipProtocol", protocol_number(rule.protocol));
                if rule.protocol != Protocol::All {
                    let (from, to) = ports_of(rule);
                    x = x.text("fromPort", from).text("toPort", to);
                }
                let described = |x: X| x.opt("description", rule.description.as_ref());
                let (ranges, groups): (Vec<X>, Vec<X>) = match &rule.peer {
                    Peer::Cidr(c) => (vec![described(X::new("item").text("cidrIp", c))], vec![]),
                    Peer::MyIp(ip) => (
                        vec![described(X::new("item").text("cidrIp", format!("{ip}/32")))],
                        vec![],
                    ),
                    Peer::Group(i) => (
                        vec![],
                        vec![described(
                            X::new("item")
                                .text(
                                    "groupId",
                                    aws_id("sg", &lab.name, &lab.security_groups[*i].name),
                                )
                                .text("userId", &self.owner_id),
                        )],
                    ),
                };
                x.list("groups", groups)
                    .list("ipRanges", ranges)
                    .list("ipv6Ranges", [])
                    .list("prefixListIds", [])
            })
            .collect()
    }

    pub fn describe_security_groups(&self, p: &Params, region: &str) -> Answer {
        let asked = p.list("GroupId");
        let names = p.list("GroupName");
        let labs = self.labs(region);
        let mut all: Vec<(usize, usize, String)> = Vec::new();
        for (l, r) in labs.iter().enumerate() {
            for (g, group) in r.file_lab.security_groups.iter().enumerate() {
                let id = aws_id("sg", &r.file_lab.name, &group.name);
                if (asked.is_empty() || asked.contains(&id))
                    && (names.is_empty() || names.contains(&group.name))
                {
                    all.push((l, g, id));
                }
            }
        }
        let found: Vec<String> = all.iter().map(|a| a.2.clone()).collect();
        if let Some(missing) = asked.iter().find(|a| !found.contains(a)) {
            return Err(ApiError::new(
                "InvalidGroup.NotFound",
                format!("The security group '{missing}' does not exist"),
            ));
        }
        let all = filtered(all, &p.filters()?, |(l, g, id), f| {
            let lab = &labs[*l].file_lab;
            let group = &lab.security_groups[*g];
            match f {
                "group-id" => Some(vec![id.clone()]),
                "group-name" => Some(vec![group.name.clone()]),
                "vpc-id" => Some(vec![vpc_id(lab)]),
                "description" => Some(group.description.iter().cloned().collect()),
                _ => tag_filter(&self.tags(id, ""), f),
            }
        })?;
        let items = all.iter().map(|(l, g, id)| {
            let lab = &labs[*l].file_lab;
            let group = &lab.security_groups[*g];
            X::new("item")
                .text("ownerId", &self.owner_id)
                .text("groupId", id)
                .text("groupName", &group.name)
                .text(
                    "groupDescription",
                    group.description.clone().unwrap_or_default(),
                )
                .text("vpcId", vpc_id(lab))
                .text(
                    "securityGroupArn",
                    format!("arn:aws:ec2:{region}:{}:security-group/{id}", self.owner_id),
                )
                .list("ipPermissions", self.permissions_xml(lab, &group.inbound))
                .list(
                    "ipPermissionsEgress",
                    self.permissions_xml(lab, &group.outbound),
                )
                .list("tagSet", self.tag_set(id, ""))
        });
        Ok(X::new("body").list("securityGroupInfo", items.collect::<Vec<_>>()))
    }

    pub fn describe_security_group_rules(&self, p: &Params, region: &str) -> Answer {
        let asked = p.list("SecurityGroupRuleId");
        let labs = self.labs(region);
        let mut all: Vec<(X, String, String)> = Vec::new(); // rule, rule ID, group ID
        for r in &labs {
            let lab = &r.file_lab;
            for g in &lab.security_groups {
                let gid = aws_id("sg", &lab.name, &g.name);
                for (rules, egress) in [(&g.inbound, false), (&g.outbound, true)] {
                    for rule in rules {
                        let id = rule_id(lab, &g.name, rule, egress);
                        all.push((
                            self.rule_xml(lab, &gid, &g.name, rule, egress, "item"),
                            id,
                            gid.clone(),
                        ));
                    }
                }
            }
        }
        let all: Vec<_> = all
            .into_iter()
            .filter(|a| asked.is_empty() || asked.contains(&a.1))
            .collect();
        let found: Vec<String> = all.iter().map(|a| a.1.clone()).collect();
        all_found(
            &asked,
            &found,
            "InvalidSecurityGroupRuleId.NotFound",
            "security group rule",
        )?;
        let all = filtered(all, &p.filters()?, |(_, id, gid), f| match f {
            "group-id" => Some(vec![gid.clone()]),
            "security-group-rule-id" => Some(vec![id.clone()]),
            _ => None,
        })?;
        Ok(X::new("body").list("securityGroupRuleSet", all.into_iter().map(|a| a.0)))
    }

    pub fn delete_security_group(&mut self, p: &Params, region: &str) -> Answer {
        let (r, g) = self.group_param(p, region)?;
        let name = r.file_lab.security_groups[g].name.clone();
        let id = aws_id("sg", &r.file_lab.name, &name);
        if name == super::network::DEFAULT_GROUP
            && self.account.data.labs.contains(&r.file_lab.name)
        {
            return Err(ApiError::new(
                "CannotDelete",
                format!(
                    "the specified group: \"{id}\" name: \"default\" cannot be deleted by a user"
                ),
            ));
        }
        self.change(&r, p.dry_run()?, |lab| {
            edit::remove_security_group(lab, g, &id)
        })?;
        self.account.data.tags.remove(&id);
        self.save()?;
        Ok(X::new("body").text("return", "true").text("groupId", id))
    }
}

/// The rules a call's `IpPermissions` (or its older top-level `IpProtocol`, `FromPort`,
/// `ToPort`, `CidrIp`) describe.
fn rules_of(p: &Params, lab: &Lab, _inbound: bool) -> ApiResult<Vec<SgRule>> {
    let mut perms = p.ip_permissions()?;
    if perms.is_empty()
        && let Some(proto) = p.get("IpProtocol")
    {
        perms.push(IpPermission {
            protocol: proto.to_string(),
            from_port: p.int("FromPort")?,
            to_port: p.int("ToPort")?,
            ip_ranges: p
                .get("CidrIp")
                .map(|c| (c.to_string(), None))
                .into_iter()
                .collect(),
            groups: p
                .get("SourceSecurityGroupName")
                .map(|g| (g.to_string(), None))
                .into_iter()
                .collect(),
        });
    }
    if perms.is_empty() {
        return Err(ApiError::missing("IpPermissions"));
    }
    let mut out = Vec::new();
    for perm in perms {
        let protocol = match perm.protocol.to_ascii_lowercase().as_str() {
            "tcp" | "6" => Protocol::Tcp,
            "udp" | "17" => Protocol::Udp,
            "icmp" | "1" => Protocol::Icmp,
            "-1" | "all" => Protocol::All,
            other => {
                return Err(ApiError::invalid(format!(
                    "Invalid value '{other}' for IP protocol. Unknown protocol."
                )));
            }
        };
        let ports = match protocol {
            Protocol::Tcp | Protocol::Udp => {
                let (Some(from), Some(to)) = (perm.from_port, perm.to_port) else {
                    return Err(ApiError::invalid(
                        "Invalid value 'null' for portRange. Must specify both from and to ports with TCP/UDP.",
                    ));
                };
                if !(0..=65535).contains(&from) || !(0..=65535).contains(&to) || from > to {
                    return Err(ApiError::invalid(format!(
                        "Invalid value '{from}-{to}' for portRange: ports are 0 to 65535, the first not after the last"
                    )));
                }
                Some((from as u16, to as u16))
            }
            Protocol::Icmp | Protocol::All => None,
        };
        let label = aws::RULE_TYPES
            .iter()
            .find(|t| t.protocol == protocol && t.ports == ports)
            .map(|t| t.label)
            .unwrap_or(match protocol {
                Protocol::Tcp => "Custom TCP",
                Protocol::Udp => "Custom UDP",
                Protocol::Icmp => "All ICMP - IPv4",
                Protocol::All => "All traffic",
            })
            .to_string();
        if perm.ip_ranges.is_empty() && perm.groups.is_empty() {
            return Err(ApiError::missing("IpRanges or Groups (the rule's source)"));
        }
        for (cidr, description) in &perm.ip_ranges {
            let net = cidr
                .parse()
                .map_err(|_| ApiError::invalid(format!("CIDR block {cidr} is malformed")))?;
            out.push(SgRule {
                protocol,
                ports,
                peer: Peer::Cidr(net),
                label: label.clone(),
                description: description.clone(),
            });
        }
        for (group, description) in &perm.groups {
            let g = lab
                .security_groups
                .iter()
                .position(|x| x.name == *group || aws_id("sg", &lab.name, &x.name) == *group)
                .ok_or_else(|| {
                    ApiError::new(
                        "InvalidGroup.NotFound",
                        format!(
                            "The security group '{group}' does not exist in VPC '{}'",
                            vpc_id(lab)
                        ),
                    )
                })?;
            out.push(SgRule {
                protocol,
                ports,
                peer: Peer::Group(g),
                label: label.clone(),
                description: description.clone(),
            });
        }
    }
    Ok(out)
}

/// Two rules match the same traffic from the same peer (descriptions aside).
fn same_traffic(a: &SgRule, b: &SgRule) -> bool {
    a.protocol == b.protocol && a.ports == b.ports && a.peer == b.peer
}

fn ports_of(rule: &SgRule) -> (i64, i64) {
    match (rule.protocol, rule.ports) {
        (_, Some((a, b))) => (a.into(), b.into()),
        (Protocol::Tcp | Protocol::Udp, None) => (0, 65535),
        _ => (-1, -1),
    }
}

fn protocol_number(p: Protocol) -> &'static str {
    match p {
        Protocol::All => "-1",
        p => p.as_str(),
    }
}

fn peer_text(p: &Peer) -> String {
    match p {
        Peer::Cidr(c) => c.to_string(),
        Peer::MyIp(ip) => format!("{ip}/32"),
        Peer::Group(g) => format!("group {g}"),
    }
}

fn traffic_text(r: &SgRule) -> String {
    let (a, b) = ports_of(r);
    format!("{}, {a}-{b}", protocol_number(r.protocol))
}

fn rule_id(lab: &Lab, group: &str, rule: &SgRule, egress: bool) -> String {
    let key = format!(
        "{group}/{egress}/{}/{}",
        traffic_text(rule),
        peer_text(&rule.peer)
    );
    aws_id("sgr", &lab.name, &key)
}

/// A group's inbound or outbound rules, as the call's direction picks.
fn rules_mut(group: &mut SecurityGroup, inbound: bool) -> &mut Vec<SgRule> {
    if inbound {
        &mut group.inbound
    } else {
        &mut group.outbound
    }
}
