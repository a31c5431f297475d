//! Regions, availability zones, VPCs and subnets.

use crate::api::account::new_id;
use crate::api::error::{ApiError, ApiResult};
use crate::api::query::Params;
use crate::api::service::{
    Answer, Service, all_found, diagnostic_error, dry_run_error, filtered, ok, tag_filter, vpc_id,
};
use crate::api::xml::X;
use crate::lab::{self, Running};
use crate::plan::aws_id;
use crate::topology::{
    self, Lab, Peer, Protocol, Route, RouteTable, RouteTarget, SecurityGroup, SgRule, Subnet, Vpc,
    aws, export,
};
use ipnet::Ipv4Net;
use std::sync::Arc;

/// Where the EC2 API's VPCs take public addresses from (RFC 5737, TEST-NET-2).
pub const PUBLIC_POOL: &str = "198.51.100.0/24";

/// The name of the security group every VPC gets, as on AWS.
pub const DEFAULT_GROUP: &str = "default";

impl Service {
    pub fn describe_regions(&self, p: &Params) -> Answer {
        let asked = p.list("RegionName");
        let items = aws::REGIONS
            .iter()
            .filter(|(r, _)| asked.is_empty() || asked.iter().any(|a| a == r))
            .map(|(r, _)| {
                X::new("item")
                    .text("regionName", r)
                    .text("regionEndpoint", format!("ec2.{r}.amazonaws.com"))
                    .text("optInStatus", "opt-in-not-required")
            });
        Ok(X::new("body").list("regionInfo", items))
    }

    pub fn describe_availability_zones(&self, p: &Params, region: &str) -> Answer {
        let azs = aws::region_azs(region).ok_or_else(|| unsupported_region(region))?;
        let asked = p.list("ZoneName");
        let azs: Vec<String> = azs
            .into_iter()
            .filter(|z| asked.is_empty() || asked.contains(z))
            .collect();
        let azs = filtered(azs, &p.filters()?, |z, f| match f {
            "zone-name" => Some(vec![z.clone()]),
            "region-name" => Some(vec![region.to_string()]),
            "state" => Some(vec!["available".into()]),
            _ => None,
        })?;
        let items = azs.iter().map(|z| {
            X::new("item")
                .text("zoneName", z)
                .text("zoneState", "available")
                .text("regionName", region)
                .text("zoneId", zone_id(region, z))
                .text("zoneType", "availability-zone")
                .text("groupName", region)
                .text("networkBorderGroup", region)
                .text("optInStatus", "opt-in-not-required")
        });
        Ok(X::new("body").list("availabilityZoneInfo", items))
    }

    pub fn create_vpc(&mut self, p: &Params, region: &str) -> Answer {
        let cidr_text = p.require("CidrBlock")?;
        let cidr: Ipv4Net = cidr_text.parse().map_err(|_| {
            ApiError::invalid(format!("Value ({cidr_text}) for parameter cidrBlock is invalid. This is not a valid CIDR block."))
        })?;
        if cidr.trunc() != cidr {
            return Err(ApiError::invalid(format!(
                "Value ({cidr_text}) for parameter cidrBlock is invalid. The network address is {}",
                cidr.trunc()
            )));
        }
        aws::region_azs(region).ok_or_else(|| unsupported_region(region))?;
        let tags = p.tag_specifications("vpc")?;
        let id = new_id("vpc")?;
        let taken: Vec<String> = lab::state::labs()
            .into_iter()
            .chain(self.account.data.labs.iter().cloned())
            .collect();
        // A lab is named after the VPC's Name tag when that is a valid lab name, else
        // after its ID (without the `0` that makes the ID one character too long).
        let name = tags
            .iter()
            .find(|(k, _)| k == "Name")
            .map(|(_, v)| v.clone())
            .filter(|n| topology::check_lab_name(n).is_ok() && !taken.contains(n))
            .unwrap_or_else(|| format!("vpc-{}", &id[5..]));
        let desired = Lab {
            name: name.clone(),
            description: Some("A VPC made through vpclab serve's EC2 API".into()),
            region: region.to_string(),
            vpc: Vpc {
                name: id.clone(),
                cidr,
                flow_logs: None,
            },
            public_ip_pool: PUBLIC_POOL.parse().expect("a valid block"),
            subnets: vec![],
            route_tables: vec![RouteTable {
                name: "main".into(),
                routes: vec![Route {
                    destination: cidr,
                    target: RouteTarget::Local,
                }],
            }],
            internet_gateway: None,
            elastic_ips: vec![],
            nat_gateways: vec![],
            key_pairs: vec![],
            security_groups: vec![SecurityGroup {
                name: DEFAULT_GROUP.into(),
                description: Some("default VPC security group".into()),
                inbound: vec![SgRule {
                    protocol: Protocol::All,
                    ports: None,
                    peer: Peer::Group(0),
                    label: "All traffic".into(),
                    description: None,
                }],
                outbound: vec![export::default_outbound()],
            }],
            network_acls: vec![],
            instances: vec![],
            db_subnet_groups: vec![],
            databases: vec![],
            internet: self.internet.clone(),
            expectations: vec![],
        };
        self.account.data.labs.insert(name.clone());
        let source = self.source(&name);
        self.account.data.labs.remove(&name);
        let text = export::to_yaml(&desired);
        let (checked, warnings) = topology::check(&text, &source, Some(&name));
        let checked = checked.ok_or_else(|| diagnostic_error(&warnings))?;
        if p.dry_run()? {
            return Err(dry_run_error());
        }
        crate::api::account::write_atomic(&self.account.lab_file(&name), text.as_bytes())
            .map_err(|e| ApiError::internal(format!("{e:#}")))?;
        self.account.data.labs.insert(name.clone());
        self.set_tags(&id, &tags);
        self.save()?;
        let loaded = topology::Loaded {
            lab: checked,
            warnings,
            source,
            text,
        };
        bring_up(&loaded)?;
        let r = self.vpc(region, &id)?;
        Ok(X::new("body").child(self.vpc_xml(&r, "vpc")))
    }

    fn vpc_xml(&self, r: &Running, tag: &str) -> X {
        let lab = &r.file_lab;
        let id = vpc_id(lab);
        X::new(tag)
            .text("vpcId", &id)
            .text("ownerId", &self.owner_id)
            .text("state", "available")
            .text("cidrBlock", lab.vpc.cidr)
            .text("dhcpOptionsId", aws_id("dopt", &lab.name, "default"))
            .text("instanceTenancy", "default")
            .text("isDefault", "false")
            .list(
                "cidrBlockAssociationSet",
                [X::new("item")
                    .text(
                        "associationId",
                        aws_id("vpc-cidr-assoc", &lab.name, "primary"),
                    )
                    .text("cidrBlock", lab.vpc.cidr)
                    .child(X::new("cidrBlockState").text("state", "associated"))],
            )
            .list("tagSet", self.tag_set(&id, &lab.name))
    }

    pub fn describe_vpcs(&self, p: &Params, region: &str) -> Answer {
        let asked = p.list("VpcId");
        let labs: Vec<Arc<Running>> = self
            .labs(region)
            .into_iter()
            .filter(|r| asked.is_empty() || asked.contains(&vpc_id(&r.file_lab)))
            .collect();
        let found: Vec<String> = labs.iter().map(|r| vpc_id(&r.file_lab)).collect();
        all_found(&asked, &found, "InvalidVpcID.NotFound", "vpc")?;
        let labs = filtered(labs, &p.filters()?, |r, f| {
            let id = vpc_id(&r.file_lab);
            match f {
                "vpc-id" => Some(vec![id]),
                "cidr" | "cidr-block-association.cidr-block" => {
                    Some(vec![r.file_lab.vpc.cidr.to_string()])
                }
                "state" => Some(vec!["available".into()]),
                "is-default" => Some(vec!["false".into()]),
                "owner-id" => Some(vec![self.owner_id.clone()]),
                _ => tag_filter(&self.tags(&id, &r.file_lab.name), f),
            }
        })?;
        Ok(X::new("body").list("vpcSet", labs.iter().map(|r| self.vpc_xml(r, "item"))))
    }

    pub fn delete_vpc(&mut self, p: &Params, region: &str) -> Answer {
        let id = p.require("VpcId")?;
        let r = self.vpc(region, id)?;
        let lab = &r.file_lab;
        // AWS refuses while anything the user made is still in it; the main route
        // table and the default security group go with the VPC.
        let blockers: Vec<String> = lab
            .subnets
            .iter()
            .map(|s| format!("subnet {}", aws_id("subnet", &lab.name, &s.name)))
            .chain(
                lab.internet_gateway
                    .iter()
                    .map(|g| format!("internet gateway {}", aws_id("igw", &lab.name, g))),
            )
            .chain(
                lab.route_tables
                    .iter()
                    .skip(1)
                    .map(|t| format!("route table {}", aws_id("rtb", &lab.name, &t.name))),
            )
            .chain(
                lab.security_groups
                    .iter()
                    .filter(|g| g.name != DEFAULT_GROUP)
                    .map(|g| format!("security group {}", aws_id("sg", &lab.name, &g.name))),
            )
            .collect();
        if let Some(b) = blockers.first() {
            return Err(ApiError::dependency(format!(
                "The vpc '{id}' has dependencies and cannot be deleted ({b}{})",
                if blockers.len() > 1 {
                    format!(" and {} more", blockers.len() - 1)
                } else {
                    String::new()
                }
            )));
        }
        if p.dry_run()? {
            return Err(dry_run_error());
        }
        let name = lab.name.clone();
        let report = lab::down::down(&name);
        if !report.failures.is_empty() {
            return Err(ApiError::internal(format!(
                "removing lab `{name}`: {}\n  hint: `sudo vpclab down {name}` finishes it",
                report.failures.join("; ")
            )));
        }
        if self.account.data.labs.remove(&name) {
            let _ = std::fs::remove_file(self.account.lab_file(&name));
        }
        self.account.data.tags.remove(id);
        self.save()?;
        Ok(ok())
    }

    pub fn modify_vpc_attribute(&mut self, p: &Params, region: &str) -> Answer {
        let id = p.require("VpcId")?;
        self.vpc(region, id)?;
        // The lab's VPC always resolves names and gives instances DNS hostnames, which is
        // what these attributes turn on; turning them off is not something it models.
        for attr in ["EnableDnsHostnames.Value", "EnableDnsSupport.Value"] {
            if p.bool(attr)? == Some(false) {
                return Err(ApiError::new(
                    "UnsupportedOperation",
                    format!(
                        "vpclab's VPCs always have DNS support and hostnames on; {attr}=false can't be set"
                    ),
                ));
            }
        }
        Ok(ok())
    }

    pub fn create_subnet(&mut self, p: &Params, region: &str) -> Answer {
        let vpc = p.require("VpcId")?;
        let cidr_text = p.require("CidrBlock")?;
        let cidr: Ipv4Net = cidr_text.parse().map_err(|_| {
            ApiError::invalid(format!("Value ({cidr_text}) for parameter cidrBlock is invalid. This is not a valid CIDR block."))
        })?;
        let azs = aws::region_azs(region).ok_or_else(|| unsupported_region(region))?;
        let az = match p.get("AvailabilityZone") {
            Some(az) => az.to_string(),
            None => azs[0].clone(),
        };
        if !azs.contains(&az) {
            return Err(ApiError::invalid(format!(
                "Value ({az}) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: {}.",
                azs.join(", ")
            )));
        }
        let r = self.vpc(region, vpc)?;
        let tags = p.tag_specifications("subnet")?;
        let name = object_name(&r.file_lab, &tags, "subnet")?;
        self.change(&r, p.dry_run()?, |lab| {
            lab.subnets.push(Subnet {
                name: name.clone(),
                az,
                cidr,
                route_table: 0,
                public: false,
                flow_logs: None,
            });
            Ok(())
        })?;
        let id = aws_id("subnet", &r.file_lab.name, &name);
        self.set_tags(&id, &tags);
        self.save()?;
        let (r, i) = self.subnet(region, &id)?;
        Ok(X::new("body").child(self.subnet_xml(&r, i, "subnet")))
    }

    /// The lab and index of subnet `id`.
    pub fn subnet(&self, region: &str, id: &str) -> ApiResult<(Arc<Running>, usize)> {
        self.find(region, |r| {
            r.file_lab
                .subnets
                .iter()
                .position(|s| aws_id("subnet", &r.file_lab.name, &s.name) == id)
        })
        .ok_or_else(|| ApiError::not_found("InvalidSubnetID.NotFound", "subnet", id))
    }

    fn subnet_xml(&self, r: &Running, i: usize, tag: &str) -> X {
        let lab = &r.file_lab;
        let s = &lab.subnets[i];
        let id = aws_id("subnet", &lab.name, &s.name);
        let used = topology::private_ips_by_subnet(lab)
            .get(&s.name)
            .map_or(0, Vec::len);
        let free = (1u64 << (32 - s.cidr.prefix_len())) - 5 - used as u64;
        X::new(tag)
            .text("subnetId", &id)
            .text(
                "subnetArn",
                format!("arn:aws:ec2:{}:{}:subnet/{id}", lab.region, self.owner_id),
            )
            .text("state", "available")
            .text("ownerId", &self.owner_id)
            .text("vpcId", vpc_id(lab))
            .text("cidrBlock", s.cidr)
            .text("availableIpAddressCount", free)
            .text("availabilityZone", &s.az)
            .text("availabilityZoneId", zone_id(&lab.region, &s.az))
            .text("defaultForAz", "false")
            .text(
                "mapPublicIpOnLaunch",
                self.account.data.map_public_ip_on_launch.contains(&id),
            )
            .list("tagSet", self.tag_set(&id, &s.name))
    }

    pub fn describe_subnets(&self, p: &Params, region: &str) -> Answer {
        let asked = p.list("SubnetId");
        let mut all = Vec::new();
        for r in self.labs(region) {
            for i in 0..r.file_lab.subnets.len() {
                all.push((r.file_lab.name.clone(), i));
            }
        }
        let labs: Vec<Arc<Running>> = self.labs(region);
        let lab_of = |name: &str| {
            labs.iter()
                .find(|r| r.file_lab.name == name)
                .expect("listed above")
        };
        let id_of =
            |(l, i): &(String, usize)| aws_id("subnet", l, &lab_of(l).file_lab.subnets[*i].name);
        let all: Vec<(String, usize)> = all
            .into_iter()
            .filter(|s| asked.is_empty() || asked.contains(&id_of(s)))
            .collect();
        let found: Vec<String> = all.iter().map(id_of).collect();
        all_found(&asked, &found, "InvalidSubnetID.NotFound", "subnet")?;
        let all = filtered(all, &p.filters()?, |s, f| {
            let lab = &lab_of(&s.0).file_lab;
            let sub = &lab.subnets[s.1];
            let id = id_of(s);
            match f {
                "subnet-id" => Some(vec![id]),
                "vpc-id" => Some(vec![vpc_id(lab)]),
                "cidr-block" | "cidr" | "cidrBlock" => Some(vec![sub.cidr.to_string()]),
                "availability-zone" | "availabilityZone" => Some(vec![sub.az.clone()]),
                "state" => Some(vec!["available".into()]),
                "map-public-ip-on-launch" => Some(vec![
                    self.account
                        .data
                        .map_public_ip_on_launch
                        .contains(&id)
                        .to_string(),
                ]),
                _ => tag_filter(&self.tags(&id, &sub.name), f),
            }
        })?;
        let items: Vec<X> = all
            .iter()
            .map(|(l, i)| self.subnet_xml(lab_of(l), *i, "item"))
            .collect();
        Ok(X::new("body").list("subnetSet", items))
    }

    pub fn delete_subnet(&mut self, p: &Params, region: &str) -> Answer {
        let id = p.require("SubnetId")?.to_string();
        let (r, i) = self.subnet(region, &id)?;
        self.change(&r, p.dry_run()?, |lab| {
            super::edit::remove_subnet(lab, i, &id)
        })?;
        self.account.data.tags.remove(&id);
        self.account.data.map_public_ip_on_launch.remove(&id);
        self.save()?;
        Ok(ok())
    }

    pub fn modify_subnet_attribute(&mut self, p: &Params, region: &str) -> Answer {
        let id = p.require("SubnetId")?.to_string();
        self.subnet(region, &id)?;
        match p.bool("MapPublicIpOnLaunch.Value")? {
            Some(true) => {
                self.account.data.map_public_ip_on_launch.insert(id);
            }
            Some(false) => {
                self.account.data.map_public_ip_on_launch.remove(&id);
            }
            None => {
                return Err(ApiError::new(
                    "UnsupportedOperation",
                    "vpclab changes only MapPublicIpOnLaunch of a subnet",
                ));
            }
        }
        self.save()?;
        Ok(ok())
    }
}

/// Brings a new lab up: the EC2 API's VPCs start with no instance, so no key pair is
/// needed yet.
pub fn bring_up(loaded: &topology::Loaded) -> ApiResult<()> {
    let opts = lab::up::Options {
        databases: false,
        ..Default::default()
    };
    lab::up::up(loaded, &opts, &mut lab::progress::Progress::new(false))
        .map(|_| ())
        .map_err(|e| ApiError::internal(format!("bring up lab `{}`: {e:#}", loaded.lab.name)))
}

fn unsupported_region(region: &str) -> ApiError {
    ApiError::new(
        "InvalidParameterValue",
        format!(
            "vpclab does not know region '{region}'; it knows {}",
            aws::REGIONS
                .iter()
                .map(|(r, _)| *r)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

/// `apne2-az1`: AWS's zone IDs, here the region's short form and the zone's position.
fn zone_id(region: &str, az: &str) -> String {
    // us-east-1 is use1, ap-northeast-2 apne2: compass words by their initials.
    let short: String = region
        .split('-')
        .map(|part| {
            let mut p = part.to_string();
            for (word, initial) in [
                ("north", "n"),
                ("south", "s"),
                ("east", "e"),
                ("west", "w"),
                ("central", "c"),
            ] {
                p = p.replace(word, initial);
            }
            p
        })
        .collect();
    let letter = az.chars().last().unwrap_or('a');
    format!("{short}-az{}", (letter as u8).saturating_sub(b'a') + 1)
}

/// The name a new object gets in its lab: its `Name` tag when that is a valid, unused
/// resource name, else its new ID (which `aws_id` then gives back as its ID).
pub fn object_name(lab: &Lab, tags: &[(String, String)], prefix: &str) -> ApiResult<String> {
    if let Some((_, n)) = tags.iter().find(|(k, _)| k == "Name")
        && valid_object_name(n)
        && !names_in(lab).contains(n)
    {
        return Ok(n.clone());
    }
    new_id(prefix)
}

fn valid_object_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !topology::well_known::RESERVED_NODE_NAMES.contains(&n)
        && n != "main"
}

/// Every name the lab uses, of any kind, so a new one clashes with none.
fn names_in(lab: &Lab) -> Vec<String> {
    let mut v: Vec<String> = lab.subnets.iter().map(|s| s.name.clone()).collect();
    v.extend(lab.route_tables.iter().map(|t| t.name.clone()));
    v.extend(lab.internet_gateway.clone());
    v.extend(lab.elastic_ips.iter().map(|e| e.name.clone()));
    v.extend(lab.nat_gateways.iter().map(|n| n.name.clone()));
    v.extend(lab.instances.iter().map(|i| i.name.clone()));
    v.extend(lab.internet.iter().map(|h| h.name.clone()));
    v.extend(
        lab.databases
            .iter()
            .flat_map(|d| std::iter::once(d.name.clone()).chain(d.nodes().map(|n| n.name.clone()))),
    );
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_ids_follow_aws_short_region_names() {
        assert_eq!(zone_id("ap-northeast-2", "ap-northeast-2c"), "apne2-az3");
        assert_eq!(zone_id("us-east-1", "us-east-1a"), "use1-az1");
    }
}
