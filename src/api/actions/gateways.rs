//! Internet gateways, Elastic IPs and NAT gateways. An internet gateway or an Elastic IP
//! belongs to the account until it is attached or used in a VPC; then it is in that VPC's
//! lab (`internet_gateway:`, `elastic_ips:`), under its ID as its name.

use super::edit;
use crate::api::account::{Address, DeletedNat, new_id};
use crate::api::error::{ApiError, ApiResult};
use crate::api::query::Params;
use crate::api::service::{
    Answer, Service, all_found, dry_run_error, filtered, ok, tag_filter, vpc_id,
};
use crate::api::xml::X;
use crate::lab::Running;
use crate::plan::aws_id;
use crate::topology::{ElasticIp, NatGateway, PublicIp, RouteTarget};
use std::net::Ipv4Addr;
use std::sync::Arc;

impl Service {
    pub fn create_internet_gateway(&mut self, p: &Params) -> Answer {
        let tags = p.tag_specifications("internet-gateway")?;
        if p.dry_run()? {
            return Err(dry_run_error());
        }
        let id = new_id("igw")?;
        self.account.data.internet_gateways.insert(id.clone(), None);
        self.set_tags(&id, &tags);
        self.save()?;
        Ok(X::new("body").child(self.igw_xml(&id, &id, None, "internetGateway")))
    }

    /// An internet gateway; `name` is its name in a lab file (its ID when it has none).
    fn igw_xml(&self, id: &str, name: &str, vpc: Option<String>, tag: &str) -> X {
        X::new(tag)
            .text("internetGatewayId", id)
            .text("ownerId", &self.owner_id)
            .list(
                "attachmentSet",
                vpc.map(|v| X::new("item").text("vpcId", v).text("state", "available")),
            )
            .list("tagSet", self.tag_set(id, name))
    }

    /// Every internet gateway in `region` (the account's, and those of labs from files),
    /// with the VPC it is attached to.
    fn internet_gateways(&self, region: &str) -> Vec<(String, Option<String>, String)> {
        let labs = self.labs(region);
        let mut out: Vec<(String, Option<String>, String)> = Vec::new();
        for r in &labs {
            if let Some(g) = &r.file_lab.internet_gateway {
                out.push((
                    aws_id("igw", &r.file_lab.name, g),
                    Some(vpc_id(&r.file_lab)),
                    g.clone(),
                ));
            }
        }
        for (id, lab) in &self.account.data.internet_gateways {
            if lab.is_none() {
                out.push((id.clone(), None, id.clone()));
            }
        }
        out
    }

    pub fn describe_internet_gateways(&self, p: &Params, region: &str) -> Answer {
        let asked = p.list("InternetGatewayId");
        let all: Vec<_> = self
            .internet_gateways(region)
            .into_iter()
            .filter(|g| asked.is_empty() || asked.contains(&g.0))
            .collect();
        let found: Vec<String> = all.iter().map(|g| g.0.clone()).collect();
        all_found(
            &asked,
            &found,
            "InvalidInternetGatewayID.NotFound",
            "internetGateway",
        )?;
        let all = filtered(all, &p.filters()?, |(id, vpc, name), f| match f {
            "internet-gateway-id" => Some(vec![id.clone()]),
            "attachment.vpc-id" => Some(vpc.iter().cloned().collect()),
            "attachment.state" => Some(vpc.iter().map(|_| "available".to_string()).collect()),
            _ => tag_filter(&self.tags(id, name), f),
        })?;
        let items: Vec<X> = all
            .into_iter()
            .map(|(id, vpc, name)| self.igw_xml(&id, &name, vpc, "item"))
            .collect();
        Ok(X::new("body").list("internetGatewaySet", items))
    }

    pub fn attach_internet_gateway(&mut self, p: &Params, region: &str) -> Answer {
        let igw = p.require("InternetGatewayId")?.to_string();
        let vpc = p.require("VpcId")?;
        let r = self.vpc(region, vpc)?;
        match self.account.data.internet_gateways.get(&igw) {
            None => {
                return Err(
                    if self.internet_gateways(region).iter().any(|g| g.0 == igw) {
                        ApiError::new(
                            "Resource.AlreadyAssociated",
                            format!("resource {igw} is already attached to a network"),
                        )
                    } else {
                        ApiError::not_found(
                            "InvalidInternetGatewayID.NotFound",
                            "internetGateway",
                            &igw,
                        )
                    },
                );
            }
            Some(Some(_)) => {
                return Err(ApiError::new(
                    "Resource.AlreadyAssociated",
                    format!("resource {igw} is already attached to network {vpc}"),
                ));
            }
            Some(None) => {}
        }
        if let Some(g) = &r.file_lab.internet_gateway {
            return Err(ApiError::new(
                "Resource.AlreadyAssociated",
                format!(
                    "network {vpc} already has an internet gateway attached ({})",
                    aws_id("igw", &r.file_lab.name, g)
                ),
            ));
        }
        self.change(&r, p.dry_run()?, |lab| {
            lab.internet_gateway = Some(igw.clone());
            Ok(())
        })?;
        self.account
            .data
            .internet_gateways
            .insert(igw, Some(r.file_lab.name.clone()));
        self.save()?;
        Ok(ok())
    }

    /// The lab an internet gateway is attached to, and its name there.
    fn attached_igw(&self, region: &str, igw: &str) -> Option<(Arc<Running>, String)> {
        self.find(region, |r| {
            r.file_lab
                .internet_gateway
                .clone()
                .filter(|g| aws_id("igw", &r.file_lab.name, g) == igw)
        })
    }

    pub fn detach_internet_gateway(&mut self, p: &Params, region: &str) -> Answer {
        let igw = p.require("InternetGatewayId")?.to_string();
        let vpc = p.require("VpcId")?;
        let Some((r, name)) = self
            .attached_igw(region, &igw)
            .filter(|(r, _)| vpc_id(&r.file_lab) == vpc)
        else {
            self.vpc(region, vpc)?;
            if !self.account.data.internet_gateways.contains_key(&igw) {
                return Err(ApiError::not_found(
                    "InvalidInternetGatewayID.NotFound",
                    "internetGateway",
                    &igw,
                ));
            }
            return Err(ApiError::new(
                "Gateway.NotAttached",
                format!("resource {igw} is not attached to network {vpc}"),
            ));
        };
        let target = RouteTarget::InternetGateway(name.clone());
        if let Some(t) = r
            .file_lab
            .route_tables
            .iter()
            .find(|t| t.routes.iter().any(|x| x.target == target))
        {
            return Err(ApiError::dependency(format!(
                "Network {vpc} has routes through internet gateway {igw} (route table {}); delete them first",
                aws_id("rtb", &r.file_lab.name, &t.name)
            )));
        }
        if let Some(x) = r
            .file_lab
            .instances
            .iter()
            .find(|x| x.public_ip != PublicIp::None)
        {
            return Err(ApiError::dependency(format!(
                "Network {vpc} has some mapped public address(es) (instance {}); release them before detaching the gateway",
                x.id
            )));
        }
        self.change(&r, p.dry_run()?, |lab| {
            lab.internet_gateway = None;
            Ok(())
        })?;
        self.account.data.internet_gateways.insert(igw, None);
        self.save()?;
        Ok(ok())
    }

    pub fn delete_internet_gateway(&mut self, p: &Params, region: &str) -> Answer {
        let igw = p.require("InternetGatewayId")?.to_string();
        match self.account.data.internet_gateways.get(&igw) {
            Some(None) => {}
            Some(Some(_)) => {
                return Err(ApiError::dependency(format!(
                    "The internetGateway '{igw}' has dependencies and cannot be deleted (it is attached; detach it first)"
                )));
            }
            None if self.attached_igw(region, &igw).is_some() => {
                return Err(ApiError::dependency(format!(
                    "The internetGateway '{igw}' has dependencies and cannot be deleted (it is attached; detach it first)"
                )));
            }
            None => {
                return Err(ApiError::not_found(
                    "InvalidInternetGatewayID.NotFound",
                    "internetGateway",
                    &igw,
                ));
            }
        }
        if p.dry_run()? {
            return Err(dry_run_error());
        }
        self.account.data.internet_gateways.remove(&igw);
        self.account.data.tags.remove(&igw);
        self.save()?;
        Ok(ok())
    }

    pub fn allocate_address(&mut self, p: &Params, region: &str) -> Answer {
        let tags = p.tag_specifications("elastic-ip")?;
        // Taken from the top of the pool down: the labs hand out auto-assigned public
        // addresses from the bottom up.
        let held: Vec<Ipv4Addr> = self
            .account
            .data
            .addresses
            .values()
            .map(|a| a.ip)
            .chain(self.labs(region).iter().flat_map(|r| {
                r.state
                    .allocations
                    .public
                    .values()
                    .copied()
                    .collect::<Vec<_>>()
            }))
            .collect();
        let ip = (4..=254u8)
            .rev()
            .map(|n| Ipv4Addr::new(198, 51, 100, n))
            .find(|ip| !held.contains(ip))
            .ok_or_else(|| {
                ApiError::new(
                    "AddressLimitExceeded",
                    "The maximum number of addresses has been reached.",
                )
            })?;
        if p.dry_run()? {
            return Err(dry_run_error());
        }
        let id = new_id("eipalloc")?;
        self.account
            .data
            .addresses
            .insert(id.clone(), Address { ip, lab: None });
        self.set_tags(&id, &tags);
        self.save()?;
        Ok(X::new("body")
            .text("publicIp", ip)
            .text("allocationId", id)
            .text("domain", "vpc")
            .text("publicIpv4Pool", "amazon")
            .text("networkBorderGroup", region))
    }

    pub fn describe_addresses(&self, p: &Params, region: &str) -> Answer {
        let labs = self.labs(region);
        let mut all: Vec<AddressRow> = Vec::new();
        for r in &labs {
            let lab = &r.file_lab;
            for (i, e) in lab.elastic_ips.iter().enumerate() {
                let by_nat = lab
                    .nat_gateways
                    .iter()
                    .find(|n| n.elastic_ip == i)
                    .map(|n| (None, n.private_ip));
                let by_instance = lab
                    .instances
                    .iter()
                    .find(|x| matches!(x.public_ip, PublicIp::Elastic { eip, .. } if eip == i))
                    .map(|x| (Some(x.id.clone()), x.private_ip));
                all.push((
                    aws_id("eipalloc", &lab.name, &e.name),
                    e.address,
                    e.name.clone(),
                    by_instance.or(by_nat),
                ));
            }
        }
        for (id, a) in &self.account.data.addresses {
            if a.lab.is_none() {
                all.push((id.clone(), a.ip, id.clone(), None));
            }
        }
        let asked = p.list("AllocationId");
        let ips = p.list("PublicIp");
        let all: Vec<_> = all
            .into_iter()
            .filter(|a| {
                (asked.is_empty() || asked.contains(&a.0))
                    && (ips.is_empty() || ips.contains(&a.1.to_string()))
            })
            .collect();
        let found: Vec<String> = all.iter().map(|a| a.0.clone()).collect();
        all_found(&asked, &found, "InvalidAllocationID.NotFound", "allocation")?;
        let all = filtered(all, &p.filters()?, |a, f| match f {
            "allocation-id" => Some(vec![a.0.clone()]),
            "public-ip" => Some(vec![a.1.to_string()]),
            "domain" => Some(vec!["vpc".into()]),
            "instance-id" => Some(a.3.iter().filter_map(|x| x.0.clone()).collect()),
            "private-ip-address" => Some(a.3.iter().map(|x| x.1.to_string()).collect()),
            _ => tag_filter(&self.tags(&a.0, &a.2), f),
        })?;
        let items = all.into_iter().map(|(id, ip, name, assoc)| {
            let mut x = X::new("item")
                .text("publicIp", ip)
                .text("allocationId", &id)
                .text("domain", "vpc")
                .text("publicIpv4Pool", "amazon")
                .text("networkBorderGroup", region);
            if let Some((instance, private)) = assoc {
                x = x
                    .text("associationId", id.replacen("eipalloc", "eipassoc", 1))
                    .opt("instanceId", instance)
                    .text("privateIpAddress", private)
                    .text("networkInterfaceOwnerId", &self.owner_id);
            }
            x.list("tagSet", self.tag_set(&id, &name))
        });
        Ok(X::new("body").list("addressesSet", items))
    }

    /// An allocation the account holds and no VPC uses: its address.
    fn free_address(&self, id: &str) -> ApiResult<Ipv4Addr> {
        match self.account.data.addresses.get(id) {
            Some(Address { ip, lab: None }) => Ok(*ip),
            Some(Address { lab: Some(_), .. }) => Err(ApiError::new(
                "Resource.AlreadyAssociated",
                format!("Elastic IP address [{id}] is already associated"),
            )),
            None => Err(ApiError::not_found(
                "InvalidAllocationID.NotFound",
                "allocation",
                id,
            )),
        }
    }

    pub fn release_address(&mut self, p: &Params) -> Answer {
        let id = p.require("AllocationId")?.to_string();
        match self.account.data.addresses.get(&id) {
            None => {
                return Err(ApiError::not_found(
                    "InvalidAllocationID.NotFound",
                    "allocation",
                    &id,
                ));
            }
            Some(Address { lab: Some(_), .. }) => {
                return Err(ApiError::new(
                    "InvalidIPAddress.InUse",
                    format!("Address {id} is in use; disassociate it first"),
                ));
            }
            Some(_) => {}
        }
        if p.dry_run()? {
            return Err(dry_run_error());
        }
        self.account.data.addresses.remove(&id);
        self.account.data.tags.remove(&id);
        self.save()?;
        Ok(ok())
    }

    pub fn associate_address(&mut self, p: &Params, region: &str) -> Answer {
        let id = p.require("AllocationId")?.to_string();
        let instance = p.require("InstanceId")?.to_string();
        let ip = self.free_address(&id)?;
        let (r, i) = self.instance(region, &instance)?;
        if matches!(r.file_lab.instances[i].public_ip, PublicIp::Elastic { .. }) {
            return Err(ApiError::new(
                "Resource.AlreadyAssociated",
                format!("instance {instance} already has an Elastic IP"),
            ));
        }
        self.change(&r, p.dry_run()?, |lab| {
            lab.elastic_ips.push(ElasticIp {
                name: id.clone(),
                address: ip,
            });
            let eip = lab.elastic_ips.len() - 1;
            lab.instances[i].public_ip = PublicIp::Elastic { eip, address: ip };
            Ok(())
        })?;
        self.account.data.addresses.insert(
            id.clone(),
            Address {
                ip,
                lab: Some(r.file_lab.name.clone()),
            },
        );
        self.save()?;
        Ok(X::new("body").text("associationId", id.replacen("eipalloc", "eipassoc", 1)))
    }

    pub fn disassociate_address(&mut self, p: &Params, region: &str) -> Answer {
        let assoc = p.require("AssociationId")?.to_string();
        let id = assoc.replacen("eipassoc", "eipalloc", 1);
        let found = self.find(region, |r| {
            let e = r
                .file_lab
                .elastic_ips
                .iter()
                .position(|e| aws_id("eipalloc", &r.file_lab.name, &e.name) == id)?;
            let x =
                r.file_lab.instances.iter().position(
                    |x| matches!(x.public_ip, PublicIp::Elastic { eip, .. } if eip == e),
                )?;
            Some((e, x))
        });
        let Some((r, (e, x))) = found else {
            return Err(ApiError::new(
                "InvalidAssociationID.NotFound",
                format!("The association ID '{assoc}' does not exist"),
            ));
        };
        let auto = self
            .account
            .data
            .instances
            .get(&r.file_lab.instances[x].id)
            .is_some_and(|i| i.public_ip_on_launch);
        self.change(&r, p.dry_run()?, |lab| {
            lab.instances[x].public_ip = if auto {
                // `auto` in the lab file: validation hands out a new address.
                PublicIp::Auto {
                    address: std::net::Ipv4Addr::UNSPECIFIED,
                }
            } else {
                PublicIp::None
            };
            edit::remove_elastic_ip(lab, e);
            Ok(())
        })?;
        if let Some(a) = self.account.data.addresses.get_mut(&id) {
            a.lab = None;
        }
        self.save()?;
        Ok(ok())
    }

    pub fn create_nat_gateway(&mut self, p: &Params, region: &str) -> Answer {
        let subnet = p.require("SubnetId")?.to_string();
        let alloc = p.require("AllocationId")?.to_string();
        if p.get("ConnectivityType").is_some_and(|c| c != "public") {
            return Err(ApiError::new(
                "UnsupportedOperation",
                "vpclab makes public NAT gateways only",
            ));
        }
        let (r, s) = self.subnet(region, &subnet)?;
        let ip = self.free_address(&alloc)?;
        let tags = p.tag_specifications("natgateway")?;
        let name = super::network::object_name(&r.file_lab, &tags, "nat")?;
        let private_ip = match p.get("PrivateIpAddress") {
            Some(t) => t.parse().map_err(|_| {
                ApiError::invalid(format!(
                    "Value ({t}) for parameter privateIpAddress is invalid"
                ))
            })?,
            None => free_private_ip(&r.file_lab, s)?,
        };
        self.change(&r, p.dry_run()?, |lab| {
            lab.elastic_ips.push(ElasticIp {
                name: alloc.clone(),
                address: ip,
            });
            lab.nat_gateways.push(NatGateway {
                name: name.clone(),
                subnet: s,
                private_ip,
                elastic_ip: lab.elastic_ips.len() - 1,
            });
            Ok(())
        })?;
        self.account.data.addresses.insert(
            alloc.clone(),
            Address {
                ip,
                lab: Some(r.file_lab.name.clone()),
            },
        );
        let id = aws_id("nat", &r.file_lab.name, &name);
        self.set_tags(&id, &tags);
        self.account.data.deleted_nat_gateways.remove(&id);
        self.save()?;
        let (r, n) = self.nat_gateway(region, &id)?;
        let mut x = self.nat_xml(&r, n, "natGateway");
        // The answer to the call shows the gateway as AWS does at first.
        x = x.text("state", "pending");
        Ok(X::new("body").child(x))
    }

    pub fn nat_gateway(&self, region: &str, id: &str) -> ApiResult<(Arc<Running>, usize)> {
        self.find(region, |r| {
            r.file_lab
                .nat_gateways
                .iter()
                .position(|n| aws_id("nat", &r.file_lab.name, &n.name) == id)
        })
        .ok_or_else(|| {
            ApiError::new(
                "NatGatewayNotFound",
                format!("NAT gateway {id} was not found"),
            )
        })
    }

    /// A NAT gateway without its `state`, which the caller adds.
    fn nat_xml(&self, r: &Running, n: usize, tag: &str) -> X {
        let lab = &r.file_lab;
        let nat = &lab.nat_gateways[n];
        let id = aws_id("nat", &lab.name, &nat.name);
        let eip = &lab.elastic_ips[nat.elastic_ip];
        X::new(tag)
            .text("natGatewayId", &id)
            .text("vpcId", vpc_id(lab))
            .text(
                "subnetId",
                aws_id("subnet", &lab.name, &lab.subnets[nat.subnet].name),
            )
            .text("connectivityType", "public")
            .text(
                "createTime",
                crate::api::sigv4::iso8601(r.state.created as i64),
            )
            .list(
                "natGatewayAddressSet",
                [X::new("item")
                    .text("allocationId", aws_id("eipalloc", &lab.name, &eip.name))
                    .text("publicIp", eip.address)
                    .text("privateIp", nat.private_ip)
                    .text("networkInterfaceId", aws_id("eni", &lab.name, &nat.name))
                    .text("isPrimary", "true")
                    .text("status", "succeeded")],
            )
            .list("tagSet", self.tag_set(&id, &nat.name))
    }

    pub fn describe_nat_gateways(&self, p: &Params, region: &str) -> Answer {
        let asked = p.list("NatGatewayId");
        let mut items: Vec<(String, String, String, X)> = Vec::new(); // id, vpc, subnet, xml
        for r in self.labs(region) {
            for n in 0..r.file_lab.nat_gateways.len() {
                let nat = &r.file_lab.nat_gateways[n];
                let id = aws_id("nat", &r.file_lab.name, &nat.name);
                let subnet = aws_id(
                    "subnet",
                    &r.file_lab.name,
                    &r.file_lab.subnets[nat.subnet].name,
                );
                let x = self.nat_xml(&r, n, "item").text("state", "available");
                items.push((id, vpc_id(&r.file_lab), subnet, x));
            }
        }
        for (id, d) in &self.account.data.deleted_nat_gateways {
            let x = X::new("item")
                .text("natGatewayId", id)
                .text("vpcId", &d.vpc_id)
                .text("subnetId", &d.subnet_id)
                .text("connectivityType", "public")
                .text("state", "deleted")
                .list(
                    "natGatewayAddressSet",
                    [X::new("item")
                        .text("allocationId", &d.allocation_id)
                        .text("publicIp", d.public_ip)
                        .text("privateIp", d.private_ip)],
                )
                .list("tagSet", self.tag_set(id, ""));
            items.push((id.clone(), d.vpc_id.clone(), d.subnet_id.clone(), x));
        }
        let items: Vec<_> = items
            .into_iter()
            .filter(|i| asked.is_empty() || asked.contains(&i.0))
            .collect();
        let found: Vec<String> = items.iter().map(|i| i.0.clone()).collect();
        if let Some(missing) = asked.iter().find(|a| !found.contains(a)) {
            return Err(ApiError::new(
                "NatGatewayNotFound",
                format!("NAT gateway {missing} was not found"),
            ));
        }
        let deleted = |id: &str| self.account.data.deleted_nat_gateways.contains_key(id);
        let items = filtered(items, &p.filters()?, |(id, vpc, subnet, _), f| match f {
            "nat-gateway-id" => Some(vec![id.clone()]),
            "vpc-id" => Some(vec![vpc.clone()]),
            "subnet-id" => Some(vec![subnet.clone()]),
            "state" => Some(vec![
                if deleted(id) { "deleted" } else { "available" }.to_string(),
            ]),
            _ => tag_filter(&self.tags(id, ""), f),
        })?;
        Ok(X::new("body").list("natGatewaySet", items.into_iter().map(|i| i.3)))
    }

    pub fn delete_nat_gateway(&mut self, p: &Params, region: &str) -> Answer {
        let id = p.require("NatGatewayId")?.to_string();
        let (r, n) = self.nat_gateway(region, &id)?;
        let lab = &r.file_lab;
        let nat = &lab.nat_gateways[n];
        let eip = &lab.elastic_ips[nat.elastic_ip];
        let record = DeletedNat {
            vpc_id: vpc_id(lab),
            subnet_id: aws_id("subnet", &lab.name, &lab.subnets[nat.subnet].name),
            allocation_id: aws_id("eipalloc", &lab.name, &eip.name),
            public_ip: eip.address,
            private_ip: nat.private_ip,
        };
        let account_eip = self.account.data.addresses.contains_key(&eip.name);
        let eip_index = nat.elastic_ip;
        self.change(&r, p.dry_run()?, |lab| {
            edit::remove_nat_gateway(lab, n);
            // An Elastic IP the account allocated goes back to it; one from a lab file
            // stays in the file, unused.
            if account_eip {
                edit::remove_elastic_ip(lab, eip_index);
            }
            Ok(())
        })?;
        if let Some(a) = self.account.data.addresses.get_mut(&record.allocation_id) {
            a.lab = None;
        }
        self.account
            .data
            .deleted_nat_gateways
            .insert(id.clone(), record);
        self.save()?;
        Ok(X::new("body").text("natGatewayId", id))
    }
}

/// An Elastic IP as DescribeAddresses lists it: allocation ID, address, name in its lab,
/// and what holds it (an instance's ID, or none for a NAT gateway) at which private IP.
type AddressRow = (String, Ipv4Addr, String, Option<(Option<String>, Ipv4Addr)>);

/// The first address of subnet `s` that AWS would hand out and nothing holds.
pub fn free_private_ip(lab: &crate::topology::Lab, s: usize) -> ApiResult<Ipv4Addr> {
    let subnet = &lab.subnets[s];
    let used: Vec<Ipv4Addr> = crate::topology::private_ips_by_subnet(lab)
        .get(&subnet.name)
        .map(|v| v.iter().map(|(ip, _)| *ip).collect())
        .unwrap_or_default();
    let base = u32::from(subnet.cidr.network());
    let size = 1u32 << (32 - subnet.cidr.prefix_len());
    // The first four and the last address of a subnet are AWS's.
    (4..size - 1)
        .map(|o| Ipv4Addr::from(base + o))
        .find(|ip| !used.contains(ip))
        .ok_or_else(|| {
            ApiError::new(
                "InsufficientFreeAddressesInSubnet",
                format!("subnet {} has no free address", subnet.name),
            )
        })
}
