//! DNS records of a lab, split horizon as on AWS: inside the VPC an EC2 public name
//! resolves to the private IP, on the internet to the public IP. The RDS endpoint is a
//! CNAME to the current primary with a 5 second TTL, so a failover shows within seconds.

use super::names::namespace_name;
use crate::topology::Lab;
use crate::topology::well_known::{
    INTERNET, INTERNET_DOMAIN, INTERNET_RESOLVER, RESOLVER_LINK_LOCAL, ROUTER,
};
use serde::Serialize;
use std::net::Ipv4Addr;

pub const EC2_TTL: u32 = 60;
pub const ENDPOINT_TTL: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsPlan {
    /// The Amazon-provided resolver at VPC base + 2 and 169.254.169.253.
    pub vpc: Resolver,
    /// The internet's resolver, used by the internet hosts.
    pub internet: Resolver,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolver {
    pub ns: String,
    pub listen: Vec<Ipv4Addr>,
    pub records: Vec<Record>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub name: String,
    pub ttl: u32,
    pub data: RecordData,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "value")]
pub enum RecordData {
    A(Ipv4Addr),
    #[serde(rename = "CNAME")]
    Cname(String),
}

fn a(name: String, ip: Ipv4Addr) -> Record {
    Record {
        name,
        ttl: EC2_TTL,
        data: RecordData::A(ip),
    }
}

pub fn compile(lab: &Lab) -> DnsPlan {
    let mut vpc = Vec::new();
    let mut inet = Vec::new();
    let private = |ip: Ipv4Addr, vpc: &mut Vec<Record>| vpc.push(a(lab.private_dns_name(ip), ip));
    for i in &lab.instances {
        private(i.private_ip, &mut vpc);
        if let Some(public) = i.public_ip.address() {
            vpc.push(a(lab.public_dns_name(public), i.private_ip));
            inet.push(a(lab.public_dns_name(public), public));
        }
    }
    for n in &lab.nat_gateways {
        private(n.private_ip, &mut vpc);
    }
    for d in &lab.databases {
        for n in d.nodes() {
            private(n.private_ip, &mut vpc);
            if let Some(public) = n.public_ip {
                vpc.push(a(lab.public_dns_name(public), n.private_ip));
                inet.push(a(lab.public_dns_name(public), public));
            }
        }
        let primary = &d.primary;
        vpc.push(endpoint(
            &d.endpoint,
            lab.private_dns_name(primary.private_ip),
        ));
        // A private database's endpoint still resolves on the internet, to a private
        // address nobody there can reach: what AWS publishes too.
        match primary.public_ip {
            Some(public) => inet.push(endpoint(&d.endpoint, lab.public_dns_name(public))),
            None => {
                inet.push(endpoint(
                    &d.endpoint,
                    lab.private_dns_name(primary.private_ip),
                ));
                inet.push(a(
                    lab.private_dns_name(primary.private_ip),
                    primary.private_ip,
                ));
            }
        }
    }
    for h in &lab.internet {
        let r = a(format!("{}.{INTERNET_DOMAIN}", h.name), h.ip);
        vpc.push(r.clone());
        inet.push(r);
    }
    DnsPlan {
        vpc: Resolver {
            ns: namespace_name(&lab.name, ROUTER),
            listen: vec![lab.vpc.dns_server(), RESOLVER_LINK_LOCAL],
            records: vpc,
        },
        internet: Resolver {
            ns: namespace_name(&lab.name, INTERNET),
            listen: vec![INTERNET_RESOLVER],
            records: inet,
        },
    }
}

/// The RDS endpoint: a CNAME with a short TTL, pointing at the current primary.
pub fn endpoint(endpoint: &str, target: String) -> Record {
    Record {
        name: endpoint.to_string(),
        ttl: ENDPOINT_TTL,
        data: RecordData::Cname(target),
    }
}
