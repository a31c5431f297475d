//! CreateTags, DeleteTags and DescribeTags over every resource the account has.

use crate::api::error::{ApiError, ApiResult};
use crate::api::query::Params;
use crate::api::service::{Answer, Service, dry_run_error, filtered, ok, vpc_id};
use crate::api::xml::X;
use crate::plan::aws_id;

/// A resource that can carry tags: its ID, EC2's resource type and its lab name.
struct Resource {
    id: String,
    kind: &'static str,
    name: String,
}

impl Service {
    fn resources(&self, region: &str) -> Vec<Resource> {
        let mut v = Vec::new();
        let mut add = |id: String, kind, name: &str| {
            v.push(Resource {
                id,
                kind,
                name: name.to_string(),
            })
        };
        for r in self.labs(region) {
            let l = &r.file_lab;
            add(vpc_id(l), "vpc", &l.name);
            for s in &l.subnets {
                add(aws_id("subnet", &l.name, &s.name), "subnet", &s.name);
            }
            for (i, t) in l.route_tables.iter().enumerate() {
                add(
                    aws_id("rtb", &l.name, &t.name),
                    "route-table",
                    if i == 0 { "" } else { &t.name },
                );
            }
            if let Some(g) = &l.internet_gateway {
                add(aws_id("igw", &l.name, g), "internet-gateway", g);
            }
            for g in &l.security_groups {
                add(aws_id("sg", &l.name, &g.name), "security-group", "");
            }
            for n in &l.nat_gateways {
                add(aws_id("nat", &l.name, &n.name), "natgateway", &n.name);
            }
            for e in &l.elastic_ips {
                add(aws_id("eipalloc", &l.name, &e.name), "elastic-ip", &e.name);
            }
            for x in &l.instances {
                add(x.id.clone(), "instance", &x.name);
            }
        }
        for (id, lab) in &self.account.data.internet_gateways {
            if lab.is_none() {
                add(id.clone(), "internet-gateway", id);
            }
        }
        for (id, a) in &self.account.data.addresses {
            if a.lab.is_none() {
                add(id.clone(), "elastic-ip", id);
            }
        }
        for k in self.account.data.key_pairs.values() {
            add(k.id.clone(), "key-pair", "");
        }
        v
    }

    fn tagged(&self, p: &Params, region: &str) -> ApiResult<Vec<Resource>> {
        let ids = p.list("ResourceId");
        if ids.is_empty() {
            return Err(ApiError::missing("ResourceId"));
        }
        let all = self.resources(region);
        let mut out = Vec::new();
        for id in ids {
            match all.iter().find(|r| r.id == id) {
                Some(r) => out.push(Resource {
                    id: r.id.clone(),
                    kind: r.kind,
                    name: r.name.clone(),
                }),
                None => {
                    return Err(ApiError::new(
                        "InvalidID",
                        format!("The ID '{id}' is not valid (no such resource in {region})"),
                    ));
                }
            }
        }
        Ok(out)
    }

    pub fn create_tags(&mut self, p: &Params, region: &str) -> Answer {
        let resources = self.tagged(p, region)?;
        let tags = p.tags("Tag")?;
        if p.dry_run()? {
            return Err(dry_run_error());
        }
        for r in resources {
            // A resource from a lab file starts from the Name it shows.
            let mut current = self.tags(&r.id, &r.name);
            for (k, v) in &tags {
                current.insert(k.clone(), v.clone());
            }
            self.account.data.tags.insert(r.id, current);
        }
        self.save()?;
        Ok(ok())
    }

    pub fn delete_tags(&mut self, p: &Params, region: &str) -> Answer {
        let resources = self.tagged(p, region)?;
        let keys: Vec<(String, Option<String>)> = {
            let mut v = Vec::new();
            for i in 1.. {
                let Some(k) = p.get(&format!("Tag.{i}.Key")) else {
                    break;
                };
                v.push((
                    k.to_string(),
                    p.get(&format!("Tag.{i}.Value")).map(str::to_string),
                ));
            }
            v
        };
        if p.dry_run()? {
            return Err(dry_run_error());
        }
        for r in resources {
            let mut current = self.tags(&r.id, &r.name);
            if keys.is_empty() {
                current.clear();
            }
            for (k, v) in &keys {
                if v.as_ref().is_none_or(|v| current.get(k) == Some(v)) {
                    current.remove(k);
                }
            }
            self.account.data.tags.insert(r.id, current);
        }
        self.save()?;
        Ok(ok())
    }

    pub fn describe_tags(&self, p: &Params, region: &str) -> Answer {
        let mut rows = Vec::new();
        for r in self.resources(region) {
            for (k, v) in self.tags(&r.id, &r.name) {
                rows.push((r.id.clone(), r.kind, k, v));
            }
        }
        let rows = filtered(rows, &p.filters()?, |(id, kind, k, v), f| match f {
            "resource-id" => Some(vec![id.clone()]),
            "resource-type" => Some(vec![kind.to_string()]),
            "key" => Some(vec![k.clone()]),
            "value" => Some(vec![v.clone()]),
            _ => None,
        })?;
        let items = rows.into_iter().map(|(id, kind, k, v)| {
            X::new("item")
                .text("resourceId", id)
                .text("resourceType", kind)
                .text("key", k)
                .text("value", v)
        });
        Ok(X::new("body").list("tagSet", items.collect::<Vec<_>>()))
    }
}
