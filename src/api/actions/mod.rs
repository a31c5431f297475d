//! One file per kind of resource; `dispatch` sends each Action to its handler.

mod edit;
mod gateways;
mod instances;
pub mod network;
mod routes;
mod security_groups;
mod tags;

use super::error::ApiError;
use super::query::{Params, VERSION};
use super::service::{Answer, Service};

/// Every action the endpoint answers.
pub const ACTIONS: &[&str] = &[
    "DescribeRegions",
    "DescribeAvailabilityZones",
    "CreateVpc",
    "DescribeVpcs",
    "DeleteVpc",
    "ModifyVpcAttribute",
    "CreateSubnet",
    "DescribeSubnets",
    "DeleteSubnet",
    "ModifySubnetAttribute",
    "CreateInternetGateway",
    "AttachInternetGateway",
    "DetachInternetGateway",
    "DeleteInternetGateway",
    "DescribeInternetGateways",
    "CreateRouteTable",
    "AssociateRouteTable",
    "DisassociateRouteTable",
    "ReplaceRouteTableAssociation",
    "CreateRoute",
    "ReplaceRoute",
    "DeleteRoute",
    "DescribeRouteTables",
    "DeleteRouteTable",
    "AllocateAddress",
    "AssociateAddress",
    "DisassociateAddress",
    "ReleaseAddress",
    "DescribeAddresses",
    "CreateNatGateway",
    "DescribeNatGateways",
    "DeleteNatGateway",
    "CreateSecurityGroup",
    "AuthorizeSecurityGroupIngress",
    "AuthorizeSecurityGroupEgress",
    "RevokeSecurityGroupIngress",
    "RevokeSecurityGroupEgress",
    "DescribeSecurityGroups",
    "DescribeSecurityGroupRules",
    "DeleteSecurityGroup",
    "CreateKeyPair",
    "ImportKeyPair",
    "DescribeKeyPairs",
    "DeleteKeyPair",
    "RunInstances",
    "DescribeInstances",
    "StopInstances",
    "StartInstances",
    "RebootInstances",
    "TerminateInstances",
    "ModifyInstanceAttribute",
    "CreateTags",
    "DeleteTags",
    "DescribeTags",
];

pub fn dispatch(s: &mut Service, p: &Params, region: &str) -> Answer {
    let action = p.action()?;
    match p.get("Version") {
        Some(VERSION) => {}
        Some(v) => {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!("Version {v} is not supported; vpclab answers EC2 API version {VERSION}"),
            ));
        }
        None => return Err(ApiError::missing("Version")),
    }
    match action {
        "DescribeRegions" => s.describe_regions(p),
        "DescribeAvailabilityZones" => s.describe_availability_zones(p, region),
        "CreateVpc" => s.create_vpc(p, region),
        "DescribeVpcs" => s.describe_vpcs(p, region),
        "DeleteVpc" => s.delete_vpc(p, region),
        "ModifyVpcAttribute" => s.modify_vpc_attribute(p, region),
        "CreateSubnet" => s.create_subnet(p, region),
        "DescribeSubnets" => s.describe_subnets(p, region),
        "DeleteSubnet" => s.delete_subnet(p, region),
        "ModifySubnetAttribute" => s.modify_subnet_attribute(p, region),
        "CreateInternetGateway" => s.create_internet_gateway(p),
        "AttachInternetGateway" => s.attach_internet_gateway(p, region),
        "DetachInternetGateway" => s.detach_internet_gateway(p, region),
        "DeleteInternetGateway" => s.delete_internet_gateway(p, region),
        "DescribeInternetGateways" => s.describe_internet_gateways(p, region),
        "CreateRouteTable" => s.create_route_table(p, region),
        "AssociateRouteTable" => s.associate_route_table(p, region),
        "DisassociateRouteTable" => s.disassociate_route_table(p, region),
        "ReplaceRouteTableAssociation" => s.replace_route_table_association(p, region),
        "CreateRoute" => s.create_route(p, region, false),
        "ReplaceRoute" => s.create_route(p, region, true),
        "DeleteRoute" => s.delete_route(p, region),
        "DescribeRouteTables" => s.describe_route_tables(p, region),
        "DeleteRouteTable" => s.delete_route_table(p, region),
        "AllocateAddress" => s.allocate_address(p, region),
        "AssociateAddress" => s.associate_address(p, region),
        "DisassociateAddress" => s.disassociate_address(p, region),
        "ReleaseAddress" => s.release_address(p),
        "DescribeAddresses" => s.describe_addresses(p, region),
        "CreateNatGateway" => s.create_nat_gateway(p, region),
        "DescribeNatGateways" => s.describe_nat_gateways(p, region),
        "DeleteNatGateway" => s.delete_nat_gateway(p, region),
        "CreateSecurityGroup" => s.create_security_group(p, region),
        "AuthorizeSecurityGroupIngress" => s.authorize(p, region, true),
        "AuthorizeSecurityGroupEgress" => s.authorize(p, region, false),
        "RevokeSecurityGroupIngress" => s.revoke(p, region, true),
        "RevokeSecurityGroupEgress" => s.revoke(p, region, false),
        "DescribeSecurityGroups" => s.describe_security_groups(p, region),
        "DescribeSecurityGroupRules" => s.describe_security_group_rules(p, region),
        "DeleteSecurityGroup" => s.delete_security_group(p, region),
        "CreateKeyPair" => s.create_key_pair(p),
        "ImportKeyPair" => s.import_key_pair(p),
        "DescribeKeyPairs" => s.describe_key_pairs(p),
        "DeleteKeyPair" => s.delete_key_pair(p),
        "RunInstances" => s.run_instances(p, region),
        "DescribeInstances" => s.describe_instances(p, region),
        "StopInstances" => s.stop_start(p, region, true),
        "StartInstances" => s.stop_start(p, region, false),
        "RebootInstances" => s.reboot_instances(p, region),
        "TerminateInstances" => s.terminate_instances(p, region),
        "ModifyInstanceAttribute" => s.modify_instance_attribute(p, region),
        "CreateTags" => s.create_tags(p, region),
        "DeleteTags" => s.delete_tags(p, region),
        "DescribeTags" => s.describe_tags(p, region),
        other => Err(ApiError::new(
            "InvalidAction",
            format!(
                "The action {other} is not valid for this web service (vpclab answers: {})",
                ACTIONS.join(", ")
            ),
        )),
    }
}
