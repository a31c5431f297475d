//! Removing an object from a lab model: refused while something still uses it (AWS's
//! DependencyViolation), and every index that pointed past it moved down by one.

use crate::api::error::{ApiError, ApiResult};
use crate::topology::{Lab, Peer, PublicIp, RouteTarget};

pub fn remove_subnet(lab: &mut Lab, i: usize, id: &str) -> ApiResult<()> {
    let user = lab
        .instances
        .iter()
        .find(|x| x.subnet == i)
        .map(|x| format!("instance {}", x.id))
        .or_else(|| {
            lab.nat_gateways.iter().find(|n| n.subnet == i).map(|n| {
                format!(
                    "NAT gateway {}",
                    crate::plan::aws_id("nat", &lab.name, &n.name)
                )
            })
        })
        .or_else(|| {
            lab.db_subnet_groups
                .iter()
                .find(|g| g.subnets.contains(&i))
                .map(|g| format!("DB subnet group {}", g.name))
        });
    if let Some(u) = user {
        return Err(ApiError::dependency(format!(
            "The subnet '{id}' has dependencies and cannot be deleted ({u} is in it)"
        )));
    }
    lab.subnets.remove(i);
    let down = |x: &mut usize| {
        if *x > i {
            *x -= 1
        }
    };
    for a in &mut lab.network_acls {
        a.subnets.retain(|s| *s != i);
        a.subnets.iter_mut().for_each(down);
    }
    Ok(())
}

pub fn remove_route_table(lab: &mut Lab, i: usize) {
    lab.route_tables.remove(i);
    for s in &mut lab.subnets {
        if s.route_table > i {
            s.route_table -= 1;
        }
    }
}

pub fn remove_elastic_ip(lab: &mut Lab, i: usize) {
    lab.elastic_ips.remove(i);
    for n in &mut lab.nat_gateways {
        if n.elastic_ip > i {
            n.elastic_ip -= 1;
        }
    }
    for x in &mut lab.instances {
        if let PublicIp::Elastic { eip, .. } = &mut x.public_ip
            && *eip > i
        {
            *eip -= 1;
        }
    }
}

/// Removes NAT gateway `i`. Routes through it go too: AWS would keep them as
/// `blackhole`, which a lab's route table can't hold.
pub fn remove_nat_gateway(lab: &mut Lab, i: usize) {
    lab.nat_gateways.remove(i);
    for t in &mut lab.route_tables {
        t.routes.retain(|r| r.target != RouteTarget::NatGateway(i));
        for r in &mut t.routes {
            if let RouteTarget::NatGateway(n) = &mut r.target
                && *n > i
            {
                *n -= 1;
            }
        }
    }
}

pub fn remove_security_group(lab: &mut Lab, i: usize, id: &str) -> ApiResult<()> {
    let user = lab
        .instances
        .iter()
        .find(|x| x.security_groups.contains(&i))
        .map(|x| format!("instance {}", x.id))
        .or_else(|| {
            lab.databases
                .iter()
                .find(|d| d.security_groups.contains(&i))
                .map(|d| format!("database {}", d.name))
        })
        .or_else(|| {
            lab.security_groups
                .iter()
                .enumerate()
                .filter(|(g, _)| *g != i)
                .find(|(_, g)| {
                    g.inbound
                        .iter()
                        .chain(&g.outbound)
                        .any(|r| r.peer == Peer::Group(i))
                })
                .map(|(_, g)| format!("a rule of security group {}", g.name))
        });
    if let Some(u) = user {
        return Err(ApiError::dependency(format!(
            "resource {id} has a dependent object ({u})"
        )));
    }
    lab.security_groups.remove(i);
    let down = |x: &mut usize| {
        if *x > i {
            *x -= 1
        }
    };
    for g in &mut lab.security_groups {
        for r in g.inbound.iter_mut().chain(g.outbound.iter_mut()) {
            if let Peer::Group(x) = &mut r.peer {
                down(x);
            }
        }
    }
    for x in &mut lab.instances {
        x.security_groups.iter_mut().for_each(down);
    }
    for d in &mut lab.databases {
        d.security_groups.iter_mut().for_each(down);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::testing::builtin;

    #[test]
    fn a_subnet_in_use_is_a_dependency_violation_and_indexes_follow_a_removal() {
        let mut lab = builtin();
        let e = remove_subnet(&mut lab, 0, "subnet-x").unwrap_err();
        assert_eq!(e.code, "DependencyViolation");
        assert!(e.message.contains("NAT gateway"), "{e}");
        let web_group = lab.instance("web").unwrap().security_groups[0];
        assert_eq!(
            remove_security_group(&mut lab, web_group, "sg-x")
                .unwrap_err()
                .code,
            "DependencyViolation"
        );
        remove_nat_gateway(&mut lab, 0);
        let private = lab
            .route_tables
            .iter()
            .find(|t| t.name == "private")
            .unwrap();
        assert_eq!(private.routes.len(), 1, "only the local route is left");
        remove_route_table(&mut lab, 1);
        assert_eq!(lab.route_tables[lab.subnets[1].route_table].name, "private");
    }
}
