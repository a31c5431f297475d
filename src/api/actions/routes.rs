//! Route tables, their routes and their subnet associations. The main route table (the
//! lab's `main`) has the local route only: vpclab keeps it that way, so a route goes into
//! a route table made with CreateRouteTable.

use super::edit;
use crate::api::error::{ApiError, ApiResult};
use crate::api::query::Params;
use crate::api::service::{Answer, Service, all_found, filtered, ok, tag_filter, vpc_id};
use crate::api::xml::X;
use crate::lab::Running;
use crate::plan::aws_id;
use crate::topology::{Lab, Route, RouteTable, RouteTarget};
use ipnet::Ipv4Net;
use std::sync::Arc;

impl Service {
    pub fn create_route_table(&mut self, p: &Params, region: &str) -> Answer {
        let vpc = p.require("VpcId")?;
        let r = self.vpc(region, vpc)?;
        let tags = p.tag_specifications("route-table")?;
        let name = super::network::object_name(&r.file_lab, &tags, "rtb")?;
        self.change(&r, p.dry_run()?, |lab| {
            lab.route_tables.push(RouteTable {
                name: name.clone(),
                routes: vec![Route {
                    destination: lab.vpc.cidr,
                    target: RouteTarget::Local,
                }],
            });
            Ok(())
        })?;
        let id = aws_id("rtb", &r.file_lab.name, &name);
        self.set_tags(&id, &tags);
        self.save()?;
        let (r, t) = self.route_table(region, &id)?;
        Ok(X::new("body").child(self.route_table_xml(&r, t, "routeTable")))
    }

    pub fn route_table(&self, region: &str, id: &str) -> ApiResult<(Arc<Running>, usize)> {
        self.find(region, |r| {
            r.file_lab
                .route_tables
                .iter()
                .position(|t| aws_id("rtb", &r.file_lab.name, &t.name) == id)
        })
        .ok_or_else(|| ApiError::not_found("InvalidRouteTableID.NotFound", "routeTable", id))
    }

    fn route_table_xml(&self, r: &Running, t: usize, tag: &str) -> X {
        let lab = &r.file_lab;
        let table = &lab.route_tables[t];
        let id = aws_id("rtb", &lab.name, &table.name);
        let routes = table.routes.iter().map(|route| {
            let x = X::new("item")
                .text("destinationCidrBlock", route.destination)
                .text("state", "active");
            match &route.target {
                RouteTarget::Local => x
                    .text("gatewayId", "local")
                    .text("origin", "CreateRouteTable"),
                RouteTarget::InternetGateway(g) => x
                    .text("gatewayId", aws_id("igw", &lab.name, g))
                    .text("origin", "CreateRoute"),
                RouteTarget::NatGateway(n) => x
                    .text(
                        "natGatewayId",
                        aws_id("nat", &lab.name, &lab.nat_gateways[*n].name),
                    )
                    .text("origin", "CreateRoute"),
            }
        });
        let mut associations: Vec<X> = lab
            .subnets
            .iter()
            .filter(|s| s.route_table == t && t != 0)
            .map(|s| {
                X::new("item")
                    .text("main", "false")
                    .text(
                        "routeTableAssociationId",
                        aws_id("rtbassoc", &lab.name, &s.name),
                    )
                    .text("routeTableId", &id)
                    .text("subnetId", aws_id("subnet", &lab.name, &s.name))
                    .child(X::new("associationState").text("state", "associated"))
            })
            .collect();
        if t == 0 {
            associations.push(
                X::new("item")
                    .text("main", "true")
                    .text(
                        "routeTableAssociationId",
                        aws_id("rtbassoc", &lab.name, "main"),
                    )
                    .text("routeTableId", &id)
                    .child(X::new("associationState").text("state", "associated")),
            );
        }
        X::new(tag)
            .text("routeTableId", &id)
            .text("vpcId", vpc_id(lab))
            .text("ownerId", &self.owner_id)
            .list("routeSet", routes)
            .list("associationSet", associations)
            .list("propagatingVgwSet", [])
            .list(
                "tagSet",
                self.tag_set(&id, if t == 0 { "" } else { &table.name }),
            )
    }

    pub fn describe_route_tables(&self, p: &Params, region: &str) -> Answer {
        let asked = p.list("RouteTableId");
        let labs = self.labs(region);
        let mut all: Vec<(usize, usize, String)> = Vec::new();
        for (l, r) in labs.iter().enumerate() {
            for (t, table) in r.file_lab.route_tables.iter().enumerate() {
                let id = aws_id("rtb", &r.file_lab.name, &table.name);
                if asked.is_empty() || asked.contains(&id) {
                    all.push((l, t, id));
                }
            }
        }
        let found: Vec<String> = all.iter().map(|a| a.2.clone()).collect();
        all_found(&asked, &found, "InvalidRouteTableID.NotFound", "routeTable")?;
        let all = filtered(all, &p.filters()?, |(l, t, id), f| {
            let lab = &labs[*l].file_lab;
            let subnets = || {
                lab.subnets
                    .iter()
                    .filter(|s| s.route_table == *t && *t != 0)
            };
            match f {
                "route-table-id" => Some(vec![id.clone()]),
                "vpc-id" => Some(vec![vpc_id(lab)]),
                "association.main" => Some(vec![(*t == 0).to_string()]),
                "association.subnet-id" => Some(
                    subnets()
                        .map(|s| aws_id("subnet", &lab.name, &s.name))
                        .collect(),
                ),
                "association.route-table-association-id" => Some(
                    subnets()
                        .map(|s| aws_id("rtbassoc", &lab.name, &s.name))
                        .collect(),
                ),
                _ => tag_filter(
                    &self.tags(
                        id,
                        if *t == 0 {
                            ""
                        } else {
                            &lab.route_tables[*t].name
                        },
                    ),
                    f,
                ),
            }
        })?;
        let items = all
            .iter()
            .map(|(l, t, _)| self.route_table_xml(&labs[*l], *t, "item"));
        Ok(X::new("body").list("routeTableSet", items))
    }

    pub fn delete_route_table(&mut self, p: &Params, region: &str) -> Answer {
        let id = p.require("RouteTableId")?.to_string();
        let (r, t) = self.route_table(region, &id)?;
        if t == 0 {
            return Err(ApiError::dependency(format!(
                "The routeTable '{id}' has dependencies and cannot be deleted (it is the VPC's main route table)"
            )));
        }
        if let Some(s) = r.file_lab.subnets.iter().find(|s| s.route_table == t) {
            return Err(ApiError::dependency(format!(
                "The routeTable '{id}' has dependencies and cannot be deleted (subnet {} is associated with it)",
                aws_id("subnet", &r.file_lab.name, &s.name)
            )));
        }
        self.change(&r, p.dry_run()?, |lab| {
            edit::remove_route_table(lab, t);
            Ok(())
        })?;
        self.account.data.tags.remove(&id);
        self.save()?;
        Ok(ok())
    }

    pub fn associate_route_table(&mut self, p: &Params, region: &str) -> Answer {
        let table = p.require("RouteTableId")?.to_string();
        let subnet = p.require("SubnetId")?.to_string();
        let (r, t) = self.route_table(region, &table)?;
        let (rs, s) = self.subnet(region, &subnet)?;
        if rs.file_lab.name != r.file_lab.name {
            return Err(ApiError::invalid(format!(
                "Route table {table} and subnet {subnet} belong to different networks"
            )));
        }
        let current = r.file_lab.subnets[s].route_table;
        if current != 0 {
            return Err(ApiError::new(
                "Resource.AlreadyAssociated",
                format!(
                    "the specified association for route table {} conflicts with an existing association",
                    aws_id(
                        "rtb",
                        &r.file_lab.name,
                        &r.file_lab.route_tables[current].name
                    )
                ),
            ));
        }
        self.change(&r, p.dry_run()?, |lab| {
            lab.subnets[s].route_table = t;
            Ok(())
        })?;
        Ok(X::new("body")
            .text(
                "associationId",
                aws_id("rtbassoc", &r.file_lab.name, &r.file_lab.subnets[s].name),
            )
            .child(X::new("associationState").text("state", "associated")))
    }

    /// The lab and subnet index of a route table association.
    fn association(&self, region: &str, id: &str) -> ApiResult<(Arc<Running>, usize)> {
        self.find(region, |r| {
            r.file_lab.subnets.iter().position(|s| {
                s.route_table != 0 && aws_id("rtbassoc", &r.file_lab.name, &s.name) == id
            })
        })
        .ok_or_else(|| {
            ApiError::new(
                "InvalidAssociationID.NotFound",
                format!("The association ID '{id}' does not exist"),
            )
        })
    }

    pub fn disassociate_route_table(&mut self, p: &Params, region: &str) -> Answer {
        let assoc = p.require("AssociationId")?;
        let (r, s) = self.association(region, assoc)?;
        self.change(&r, p.dry_run()?, |lab| {
            lab.subnets[s].route_table = 0;
            Ok(())
        })?;
        Ok(ok())
    }

    pub fn replace_route_table_association(&mut self, p: &Params, region: &str) -> Answer {
        let assoc = p.require("AssociationId")?.to_string();
        let table = p.require("RouteTableId")?.to_string();
        let (r, s) = self.association(region, &assoc)?;
        let (rt, t) = self.route_table(region, &table)?;
        if rt.file_lab.name != r.file_lab.name {
            return Err(ApiError::invalid(format!(
                "Route table {table} is in another network than association {assoc}"
            )));
        }
        self.change(&r, p.dry_run()?, |lab| {
            lab.subnets[s].route_table = t;
            Ok(())
        })?;
        Ok(X::new("body")
            .text("newAssociationId", &assoc)
            .child(X::new("associationState").text("state", "associated")))
    }

    pub fn create_route(&mut self, p: &Params, region: &str, replace: bool) -> Answer {
        let table = p.require("RouteTableId")?.to_string();
        let dest = destination(p)?;
        let (r, t) = self.route_table(region, &table)?;
        if t == 0 {
            return Err(ApiError::new(
                "UnsupportedOperation",
                format!(
                    "vpclab keeps the main route table {table} local-only; create a route table (CreateRouteTable), add the route there and associate the subnets with it"
                ),
            ));
        }
        let target = self.route_target(p, &r.file_lab)?;
        self.change(&r, p.dry_run()?, |lab| {
            let routes = &mut lab.route_tables[t].routes;
            let existing = routes.iter().position(|x| x.destination == dest);
            match (existing, replace) {
                (Some(_), false) => Err(ApiError::new(
                    "RouteAlreadyExists",
                    format!("The route identified by {dest} already exists."),
                )),
                (None, true) => Err(ApiError::new(
                    "InvalidRoute.NotFound",
                    format!("no route with destination-cidr-block {dest} in route table {table}"),
                )),
                (Some(i), true) => {
                    routes[i].target = target;
                    Ok(())
                }
                (None, false) => {
                    routes.push(Route {
                        destination: dest,
                        target,
                    });
                    Ok(())
                }
            }
        })?;
        Ok(ok())
    }

    /// A route's target: the VPC's internet gateway (`GatewayId`) or a NAT gateway.
    fn route_target(&self, p: &Params, lab: &Lab) -> ApiResult<RouteTarget> {
        if let Some(g) = p.get("GatewayId") {
            return match &lab.internet_gateway {
                Some(name) if aws_id("igw", &lab.name, name) == g => {
                    Ok(RouteTarget::InternetGateway(name.clone()))
                }
                _ if self.account.data.internet_gateways.contains_key(g) => Err(ApiError::new(
                    "Gateway.NotAttached",
                    format!("Gateway {g} is not attached to network {}", vpc_id(lab)),
                )),
                _ => Err(ApiError::not_found(
                    "InvalidInternetGatewayID.NotFound",
                    "internetGateway",
                    g,
                )),
            };
        }
        if let Some(n) = p.get("NatGatewayId") {
            return lab
                .nat_gateways
                .iter()
                .position(|x| aws_id("nat", &lab.name, &x.name) == n)
                .map(RouteTarget::NatGateway)
                .ok_or_else(|| {
                    ApiError::new(
                        "InvalidNatGatewayID.NotFound",
                        format!("The natGateway ID '{n}' does not exist"),
                    )
                });
        }
        Err(ApiError::missing("GatewayId or NatGatewayId"))
    }

    pub fn delete_route(&mut self, p: &Params, region: &str) -> Answer {
        let table = p.require("RouteTableId")?.to_string();
        let dest = destination(p)?;
        let (r, t) = self.route_table(region, &table)?;
        if dest == r.file_lab.vpc.cidr {
            return Err(ApiError::invalid(format!(
                "cannot remove local route {dest} in route table {table}"
            )));
        }
        self.change(&r, p.dry_run()?, |lab| {
            let routes = &mut lab.route_tables[t].routes;
            let before = routes.len();
            routes.retain(|x| x.destination != dest);
            if routes.len() == before {
                return Err(ApiError::new(
                    "InvalidRoute.NotFound",
                    format!("no route with destination-cidr-block {dest} in route table {table}"),
                ));
            }
            Ok(())
        })?;
        Ok(ok())
    }
}

fn destination(p: &Params) -> ApiResult<Ipv4Net> {
    let d = p.require("DestinationCidrBlock")?;
    d.parse().map_err(|_| {
        ApiError::invalid(format!(
            "Value ({d}) for parameter destinationCidrBlock is invalid. This is not a valid CIDR block."
        ))
    })
}
