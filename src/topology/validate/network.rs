//! The network: the VPC, the public IP pool, the internet gateway, route tables and subnets.

use super::{NameTable, NodeDef, Validator, loc, quoted_list};
use crate::topology::aws::{is_rfc1918, overlaps, special_block};
use crate::topology::file::{FlowLogsFile, LabFile, S, Scalar};
use crate::topology::flow_fields::{DEFAULT_FORMAT, FlowField, parse_format};
use crate::topology::model::{FlowLogs, Route, RouteTable, RouteTarget, Subnet, Vpc};
use ipnet::Ipv4Net;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

/// Where auto public addresses and Elastic IPs come from when the file names no pool
/// (TEST-NET-2, RFC 5737).
const DEFAULT_PUBLIC_POOL: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(198, 51, 100, 0), 24);

/// The VPC a lab has while its own CIDR is wrong, so route tables still get a local route
/// and the other checks can go on (the lab is not built).
const STAND_IN_VPC_CIDR: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 16);

/// The network as checked. Later phases look subnets up here, and skip checks that would
/// only repeat a mistake already reported (a wrong VPC CIDR or pool, a misnamed route table).
pub(super) struct Network {
    /// With a wrong CIDR the VPC has a stand-in one; `vpc_cidr` says which.
    pub vpc: Vpc,
    /// The VPC CIDR when it passed its checks.
    pub vpc_cidr: Option<Ipv4Net>,
    /// The public IP pool when it passed its checks (the default one when the file has none).
    pub pool: Option<Ipv4Net>,
    pub internet_gateway: Option<String>,
    /// Index 0 is the VPC's main route table, used by subnets that name none.
    pub route_tables: Vec<RouteTable>,
    /// The subnets whose block passed its checks, in file order.
    pub subnets: Vec<Subnet>,
    subnet_index: HashMap<String, usize>,
    /// Every subnet name of the file, to tell an undefined subnet from one with a wrong block.
    subnet_names: NameTable,
    /// Subnets whose route table is misnamed: whether they are public is unknown, so
    /// nothing that depends on it is reported.
    route_table_unknown: HashSet<usize>,
}

impl Network {
    /// The pool to allocate from: the file's, or the default one while the file's is wrong.
    pub fn public_pool(&self) -> Ipv4Net {
        self.pool.unwrap_or(DEFAULT_PUBLIC_POOL)
    }

    /// Whether subnet `i` is known to have no route to the internet gateway.
    pub fn is_known_private(&self, i: usize) -> bool {
        !self.subnets[i].public && !self.route_table_unknown.contains(&i)
    }
}

/// The subnets as checked, before they join the rest of the network.
struct Subnets {
    list: Vec<Subnet>,
    index: HashMap<String, usize>,
    names: NameTable,
    route_table_unknown: HashSet<usize>,
}

impl Validator {
    /// Checks the VPC, the public IP pool, the internet gateway, the route tables and the
    /// subnets, in that order. The internet gateway's name joins `nodes`.
    pub(super) fn network(
        &mut self,
        f: &LabFile,
        region_azs: Option<&[String]>,
        nodes: &mut Vec<NodeDef>,
    ) -> Network {
        let (vpc, vpc_cidr) = self.vpc(f);
        let pool = self.public_ip_pool(f, vpc_cidr);
        // A name only, but it must be unique among resources.
        let internet_gateway = f.internet_gateway.as_ref().map(|s| {
            self.node_name(s, "internet gateway", nodes);
            s.value.clone()
        });
        let (route_tables, route_table_index) =
            self.route_tables(f, &vpc, vpc_cidr, internet_gateway.as_deref());
        let subnets = self.subnets(f, region_azs, vpc_cidr, &route_tables, &route_table_index);
        Network {
            vpc,
            vpc_cidr,
            pool,
            internet_gateway,
            route_tables,
            subnets: subnets.list,
            subnet_index: subnets.index,
            subnet_names: subnets.names,
            route_table_unknown: subnets.route_table_unknown,
        }
    }

    /// The subnet a resource names, reporting one that is not defined. `None` also for a
    /// subnet whose own block was wrong (already reported).
    pub(super) fn subnet_ref(
        &mut self,
        f: &LabFile,
        net: &Network,
        s: &S<String>,
    ) -> Option<usize> {
        if let Some(i) = net.subnet_index.get(&s.value) {
            return Some(*i);
        }
        if !net.subnet_names.names.contains_key(&s.value) {
            self.not_defined(s, "subnet", f.subnets.keys().map(|k| k.value.as_str()));
        }
        None
    }

    /// The VPC, and its CIDR when that passed its checks.
    fn vpc(&mut self, f: &LabFile) -> (Vpc, Option<Ipv4Net>) {
        let mut vpc_cidr = self.cidr(&f.vpc.cidr, "VPC CIDR");
        if let Some(net) = vpc_cidr {
            // A VPC of the wrong size is reported once; its subnets are not also reported
            // as outside it (a /29 VPC can't hold any subnet).
            if !self.block_size(&f.vpc.cidr, net, "VPC")
                || !self.special_range(&f.vpc.cidr, net, "VPC CIDR")
            {
                vpc_cidr = None;
            } else if !is_rfc1918(net) {
                self.d.warning(
                    loc(&f.vpc.cidr),
                    format!("VPC CIDR {net} is outside the RFC 1918 private ranges"),
                    "AWS recommends 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16: a public range can collide with real internet addresses",
                );
            }
        }
        let vpc = Vpc {
            name: f.vpc.name.value.clone(),
            cidr: vpc_cidr.unwrap_or(STAND_IN_VPC_CIDR),
            flow_logs: f.vpc.flow_logs.as_ref().map(|fl| self.flow_logs(fl)),
        };
        (vpc, vpc_cidr)
    }

    /// AWS aggregates flow records over 60 or 600 seconds (600 when unset); a shorter
    /// interval is accepted as a lab-only choice. The format is AWS's default (version 2)
    /// or a list of fields of versions 2 to 5.
    pub(super) fn flow_logs(&mut self, f: &FlowLogsFile) -> FlowLogs {
        let mut interval_secs = 600;
        if let Some(i) = &f.interval {
            let text = i.value.0.trim();
            match text.parse::<u64>() {
                Ok(n) if (1..=60).contains(&n) || n == 600 => interval_secs = n,
                _ => self.err(
                    loc(i),
                    format!("flow log interval `{text}` is not 60 or 600 seconds"),
                    "AWS aggregates over 60 or 600 seconds; a lab may also use 1 to 59",
                ),
            }
        }
        let fields = match &f.format {
            None => DEFAULT_FORMAT.to_vec(),
            Some(format) => self.flow_log_format(format),
        };
        FlowLogs {
            interval_secs,
            fields,
        }
    }

    /// `default`, or the fields of a custom format, each once.
    fn flow_log_format(&mut self, format: &S<String>) -> Vec<FlowField> {
        let text = format.value.trim();
        if text == "default" {
            return DEFAULT_FORMAT.to_vec();
        }
        let fields = match parse_format(text) {
            Ok(fields) => fields,
            Err(token) if !text.contains(char::is_whitespace) && !text.contains("${") => {
                self.err(
                    loc(format),
                    format!("unknown flow log format `{token}`"),
                    "write `format: default` (AWS's version 2 fields) or list the fields, like `format: ${version} ${interface-id} ${srcaddr} ${dstaddr} ${action}`",
                );
                return DEFAULT_FORMAT.to_vec();
            }
            Err(token) => {
                self.err(
                    loc(format),
                    format!("unknown flow log field `{token}` in the format"),
                    format!(
                        "fields of versions 2 to 5: {}",
                        FlowField::names().collect::<Vec<_>>().join(" ")
                    ),
                );
                return DEFAULT_FORMAT.to_vec();
            }
        };
        if fields.is_empty() {
            self.err(
                loc(format),
                "the flow log format lists no field",
                "write `format: default` or list the fields, like `format: ${version} ${interface-id} ${action}`",
            );
            return DEFAULT_FORMAT.to_vec();
        }
        if let Some(twice) = fields
            .iter()
            .enumerate()
            .find_map(|(i, f)| fields[..i].contains(f).then_some(*f))
        {
            self.err(
                loc(format),
                format!("flow log field `{twice}` is listed twice in the format"),
                "list each field once",
            );
        }
        fields
    }

    fn public_ip_pool(&mut self, f: &LabFile, vpc_cidr: Option<Ipv4Net>) -> Option<Ipv4Net> {
        let pool = match &f.public_ip_pool {
            Some(s) => self
                .cidr(s, "public IP pool")
                .filter(|p| self.special_range(s, *p, "public IP pool")),
            None => Some(DEFAULT_PUBLIC_POOL),
        };
        if let (Some(p), Some(v), Some(s)) = (pool, vpc_cidr, &f.public_ip_pool)
            && overlaps(p, v)
        {
            self.err(
                loc(s),
                format!("public IP pool {p} overlaps the VPC CIDR {v}"),
                "public addresses must come from outside the VPC, e.g. 198.51.100.0/24 (RFC 5737)",
            );
        }
        pool
    }

    /// The route tables, main first, and where each named one is in that list.
    fn route_tables(
        &mut self,
        f: &LabFile,
        vpc: &Vpc,
        vpc_cidr: Option<Ipv4Net>,
        igw: Option<&str>,
    ) -> (Vec<RouteTable>, HashMap<String, usize>) {
        let vpc_net = vpc.cidr;
        let local = Route {
            destination: vpc_net,
            target: RouteTarget::Local,
        };
        let mut tables = vec![RouteTable {
            name: "main".into(),
            routes: vec![local.clone()],
        }];
        let mut index = HashMap::new();
        let nat_list: Vec<&str> = f.nat_gateways.keys().map(|k| k.value.as_str()).collect();
        for (key, routes) in &f.route_tables {
            if key.value == "main" {
                self.err(
                    loc(key),
                    "route table name `main` is reserved",
                    "`main` is the VPC's main route table (local route only), used by subnets that name no route table",
                );
                continue;
            }
            let mut table = RouteTable {
                name: key.value.clone(),
                routes: vec![local.clone()],
            };
            for (dest, target) in routes {
                let dest_s = S {
                    value: Scalar(dest.value.clone()),
                    referenced: dest.referenced,
                    defined: dest.defined,
                };
                let Some(net) = self.cidr(&dest_s, "route destination") else {
                    continue;
                };
                let t = target.value.0.as_str();
                // With a VPC CIDR that is itself wrong, routes are not checked against it.
                let vpc_known = vpc_cidr.is_some();
                if net == vpc_net && vpc_known {
                    if t != "local" {
                        self.err(
                            loc(target),
                            format!("the VPC's own block {net} must route to `local`, not `{t}`"),
                            "AWS adds `local` for the VPC CIDR to every route table and it can't be changed",
                        );
                    }
                    continue;
                }
                if t == "local" && vpc_known {
                    self.err(
                        loc(target),
                        format!(
                            "`local` is only the target of the VPC CIDR {vpc_net}, not of {net}"
                        ),
                        "route other destinations to the internet gateway or a NAT gateway",
                    );
                    continue;
                }
                if vpc_known
                    && net.prefix_len() >= vpc_net.prefix_len()
                    && vpc_net.contains(&net.network())
                {
                    self.err(
                        loc(dest),
                        format!("route destination {net} overlaps the VPC CIDR {vpc_net}"),
                        "traffic inside the VPC always takes the `local` route",
                    );
                    continue;
                }
                let target = if t == "local" {
                    continue; // reported above unless the VPC CIDR is unknown
                } else if Some(t) == igw {
                    RouteTarget::InternetGateway(t.to_string())
                } else if let Some(nat) = nat_list.iter().position(|n| *n == t) {
                    RouteTarget::NatGateway(nat)
                } else {
                    let mut known = vec!["local"];
                    known.extend(igw);
                    known.extend(nat_list.iter().copied());
                    self.err(
                        loc(target),
                        format!("route target `{t}` is not `local`, the internet gateway or a NAT gateway"),
                        format!("known targets: {}", quoted_list(known)),
                    );
                    continue;
                };
                table.routes.push(Route {
                    destination: net,
                    target,
                });
            }
            index.insert(key.value.clone(), tables.len());
            tables.push(table);
        }
        (tables, index)
    }

    fn subnets(
        &mut self,
        f: &LabFile,
        region_azs: Option<&[String]>,
        vpc_cidr: Option<Ipv4Net>,
        route_tables: &[RouteTable],
        route_table_index: &HashMap<String, usize>,
    ) -> Subnets {
        let region = &f.region.value;
        let mut out = Subnets {
            list: Vec::new(),
            index: HashMap::new(),
            names: NameTable::new("subnet"),
            route_table_unknown: HashSet::new(),
        };
        let mut taken_blocks: Vec<(Ipv4Net, String)> = Vec::new();
        for (key, s) in &f.subnets {
            self.unique(key, "subnet", &mut out.names);
            if let Some(azs) = region_azs
                && !azs.contains(&s.az.value)
            {
                self.err(
                    loc(&s.az),
                    format!(
                        "availability zone `{}` is not in region `{region}`",
                        s.az.value
                    ),
                    format!("{region} has {}", azs.join(", ")),
                );
            }
            let Some(cidr) = self.cidr(&s.cidr, "subnet CIDR") else {
                continue;
            };
            // A subnet of the wrong size is reported once and left out, so it isn't also
            // reported as outside the VPC or overlapping its neighbours.
            if !self.block_size(&s.cidr, cidr, "subnet") {
                continue;
            }
            if let Some(v) = vpc_cidr
                && !v.contains(&cidr)
            {
                self.err(
                    loc(&s.cidr),
                    format!(
                        "subnet `{}` ({cidr}) is not inside the VPC CIDR {v}",
                        key.value
                    ),
                    format!("a subnet's block must be carved out of {v}"),
                );
            }
            if let Some((_, other)) = taken_blocks.iter().find(|(b, _)| overlaps(*b, cidr)) {
                self.err(
                    loc(&s.cidr),
                    format!("subnet `{}` ({cidr}) overlaps subnet `{other}`", key.value),
                    "subnets of a VPC must not overlap; `vpclab cidr split` lists free blocks",
                );
            }
            taken_blocks.push((cidr, key.value.clone()));
            let route_table = match &s.route_table {
                None => 0, // the main route table: local only
                Some(rt) => match route_table_index.get(rt.value.as_str()) {
                    Some(i) => *i,
                    None => {
                        let defined = f.route_tables.keys().map(|k| k.value.as_str());
                        self.not_defined(rt, "route table", defined);
                        out.route_table_unknown.insert(out.list.len());
                        0
                    }
                },
            };
            out.index.insert(key.value.clone(), out.list.len());
            let public = route_tables[route_table].routes.iter().any(|r| {
                r.destination.prefix_len() == 0
                    && matches!(r.target, RouteTarget::InternetGateway(_))
            });
            out.list.push(Subnet {
                name: key.value.clone(),
                az: s.az.value.clone(),
                cidr,
                route_table,
                public,
                flow_logs: s.flow_logs.as_ref().map(|fl| self.flow_logs(fl)),
            });
        }
        // A VPC without subnets is valid on AWS (and what CreateVpc makes): the lab then
        // has its VPC router and nothing else, which is rarely what a file means.
        if f.subnets.is_empty() {
            self.d.warning(
                loc(&f.region),
                "the lab has no subnets",
                "add a `subnets:` map, e.g. `public-2a: { az: ap-northeast-2a, cidr: 10.0.0.0/24, route_table: public }`",
            );
        }
        out
    }

    /// AWS's block sizes, /16 to /28; false (after reporting) when outside them.
    fn block_size(&mut self, s: &S<Scalar>, net: Ipv4Net, what: &str) -> bool {
        let p = net.prefix_len();
        let ok = (16..=28).contains(&p);
        if !ok {
            self.err(
                loc(s),
                if p < 16 {
                    format!("{what} CIDR {net} is larger than /16, the largest block AWS allows")
                } else {
                    format!("{what} CIDR {net} is smaller than /28, the smallest block AWS allows")
                },
                format!(
                    "AWS allows {what} blocks from /16 (65,536 addresses) to /28 (16 addresses)"
                ),
            );
        }
        ok
    }

    /// Blocks that can't be a VPC or a public pool: AWS refuses them, and vpclab's own
    /// links use 169.254.0.0/16. False (after reporting) when `net` overlaps one.
    fn special_range(&mut self, s: &S<Scalar>, net: Ipv4Net, what: &str) -> bool {
        match special_block(net) {
            Some((block, why)) => {
                self.err(
                    loc(s),
                    format!(
                        "{what} {net} {} {why} {block}",
                        if block.contains(&net.network()) && block.prefix_len() <= net.prefix_len() {
                            "is in"
                        } else {
                            "overlaps"
                        }
                    ),
                    "AWS refuses these ranges and vpclab's own links use 169.254.0.0/16; use a private range for a VPC (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16) and RFC 5737 documentation blocks for public addresses",
                );
                false
            }
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::topology::flow_fields::DEFAULT_FORMAT;
    use crate::topology::{FlowLogs, Source, check};

    fn every(interval_secs: u64) -> FlowLogs {
        FlowLogs {
            interval_secs,
            fields: DEFAULT_FORMAT.to_vec(),
        }
    }

    #[test]
    fn the_closest_flow_log_covers_an_instance_and_600_seconds_is_the_default() {
        let text = edit(
            "  cidr: 10.0.0.0/16\n",
            "  cidr: 10.0.0.0/16\n  flow_logs: {}\n",
        )
        .replacen(
            "route_table: public }",
            "route_table: public, flow_logs: { interval: 60 } }",
            1,
        )
        .replacen(
            "cidr: 10.0.1.0/24, route_table: private }",
            "cidr: 10.0.1.0/24, route_table: private, flow_logs: { interval: 5 } }",
            1,
        )
        .replacen("  app:\n", "  app:\n    flow_logs: { interval: 1 }\n", 1);
        let (lab, d) = check(&text, &Source::Builtin, None);
        let lab = lab.unwrap_or_else(|| panic!("{:?}", d.errors().collect::<Vec<_>>()));
        let of = |name: &str| lab.flow_logs_of(lab.instance(name).unwrap()).cloned();
        // web is in public-2c, which has no flow log of its own: the VPC's.
        assert_eq!(of("web"), Some(every(600)));
        // app is in private-2a, whose flow log is every 5 s, but has its own.
        assert_eq!(of("app"), Some(every(1)));
        assert_eq!(lab.flow_logs_of_subnet(1), Some(&every(5)));
        assert_eq!(lab.subnets[0].flow_logs, Some(every(60)));
        assert!(lab.has_flow_logs());
        let none = check(crate::topology::BUILTIN_YAML, &Source::Builtin, None)
            .0
            .unwrap();
        assert_eq!(none.flow_logs_of(&none.instances[0]), None);
        assert!(!none.has_flow_logs());
    }

    fn with_format(format: &str) -> String {
        edit(
            "  cidr: 10.0.0.0/16\n",
            &format!("  cidr: 10.0.0.0/16\n  flow_logs: {{ format: {format} }}\n"),
        )
    }

    #[test]
    fn a_custom_format_keeps_its_order_in_aws_tokens_or_bare_names() {
        use crate::topology::FlowField::*;
        for format in [
            "'${version} ${vpc-id} ${pkt-srcaddr} ${flow-direction} ${action}'",
            "version vpc-id pkt-srcaddr flow-direction action",
        ] {
            let (lab, d) = check(&with_format(format), &Source::Builtin, None);
            let lab = lab.unwrap_or_else(|| panic!("{:?}", d.errors().collect::<Vec<_>>()));
            assert_eq!(
                lab.vpc.flow_logs.unwrap().fields,
                [Version, VpcId, PktSrcaddr, FlowDirection, Action]
            );
        }
    }

    #[test]
    fn a_format_with_an_unknown_or_repeated_field_is_an_error_at_the_format() {
        for (format, msg) in [
            (
                "'${version} ${vpcid}'",
                "unknown flow log field `${vpcid}` in the format",
            ),
            (
                "version srcaddr version",
                "flow log field `version` is listed twice in the format",
            ),
            ("''", "the flow log format lists no field"),
            ("v5", "unknown flow log format `v5`"),
        ] {
            let text = with_format(format);
            let (line, col, m) = one_error(&text);
            assert_eq!(m, msg);
            assert_eq!((line, col), pos(&text, "format: ", format), "{format}");
        }
    }

    #[test]
    fn a_flow_log_interval_aws_does_not_offer_is_an_error_and_under_60_is_not() {
        for bad in ["0", "61", "3600", "fast"] {
            let text = edit(
                "  cidr: 10.0.0.0/16\n",
                &format!("  cidr: 10.0.0.0/16\n  flow_logs: {{ interval: {bad} }}\n"),
            );
            let (_, _, msg) = one_error(&text);
            assert_eq!(
                msg,
                format!("flow log interval `{bad}` is not 60 or 600 seconds")
            );
        }
        for good in ["1", "59", "60", "600"] {
            let text = edit(
                "  cidr: 10.0.0.0/16\n",
                &format!("  cidr: 10.0.0.0/16\n  flow_logs: {{ interval: {good} }}\n"),
            );
            assert!(errors(&text).is_empty(), "{good}");
        }
    }

    #[test]
    fn a_vpc_of_the_wrong_size_or_range_is_reported_once() {
        for (cidr, msg) in [
            (
                "10.0.0.0/29",
                "VPC CIDR 10.0.0.0/29 is smaller than /28, the smallest block AWS allows",
            ),
            (
                "10.0.0.0/8",
                "VPC CIDR 10.0.0.0/8 is larger than /16, the largest block AWS allows",
            ),
            (
                "169.254.0.0/16",
                "VPC CIDR 169.254.0.0/16 is in the link-local range 169.254.0.0/16",
            ),
        ] {
            let text = edit("cidr: 10.0.0.0/16", &format!("cidr: {cidr}"));
            let (line, col, m) = one_error(&text);
            assert_eq!(m, msg);
            assert_eq!((line, col), pos(&text, &format!("cidr: {cidr}"), cidr));
        }
    }

    #[test]
    fn a_subnet_of_the_wrong_size_is_reported_once() {
        let text = edit("cidr: 10.0.0.0/24", "cidr: 10.0.0.0/15");
        let (_, _, m) = one_error(&text);
        assert_eq!(
            m,
            "subnet CIDR 10.0.0.0/15 is larger than /16, the largest block AWS allows"
        );
    }

    #[test]
    fn a_misnamed_route_table_does_not_make_the_nat_subnet_private() {
        let text = edit(
            "cidr: 10.0.0.0/24, route_table: public",
            "cidr: 10.0.0.0/24, route_table: pubic",
        );
        let (line, col, m) = one_error(&text);
        assert_eq!(m, "route table `pubic` is not defined");
        assert_eq!((line, col), pos(&text, "route_table: pubic", "pubic"));
    }
}
