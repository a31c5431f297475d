//! The plan's firewall tables as nftables JSON batches (the nftables crate), applied
//! atomically by `nft -j -f -` started from a thread inside the lab namespace, so the
//! `nft` process inherits that namespace and never sees the host's ruleset.

use crate::plan::firewall::{
    Addr, Chain, CtState, Family, Hook, L4, Match, Policy, Rule, Set, TABLE, Table, Verdict,
};
use crate::plan::flowlogs::{FlowSet, Key, KeyField};
use anyhow::{Context, Result, bail};
use nftables::expr::{self, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField};
use nftables::schema::{self, NfListObject, NfObject, Nftables, SetType, SetTypeValue};
use nftables::stmt::{self, Counter, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use std::borrow::Cow;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

fn family(f: Family) -> NfFamily {
    match f {
        Family::Ip => NfFamily::IP,
        Family::Inet => NfFamily::INet,
    }
}

/// One batch: the table, its sets, its chains, then their rules, committed as one
/// transaction.
pub fn batch(t: &Table) -> Nftables<'static> {
    let fam = family(t.family);
    let mut objs: Vec<NfObject> = vec![NfObject::CmdObject(schema::NfCmd::Add(
        NfListObject::Table(schema::Table {
            family: fam,
            name: TABLE.into(),
            ..Default::default()
        }),
    ))];
    let add = |o: NfListObject<'static>| NfObject::CmdObject(schema::NfCmd::Add(o));
    for s in &t.sets {
        objs.push(add(NfListObject::Set(Box::new(set(fam, s)))));
    }
    for s in &t.flow_sets {
        objs.push(add(NfListObject::Set(Box::new(flow_set(fam, s)))));
    }
    // Every chain before any rule: a rule may go on in a chain listed after its own.
    for c in &t.chains {
        objs.push(add(NfListObject::Chain(chain(fam, t, c))));
    }
    for c in &t.chains {
        for r in &c.rules {
            objs.push(add(NfListObject::Rule(rule(fam, t, &c.name, r))));
        }
    }
    Nftables {
        objects: Cow::Owned(objs),
    }
}

fn set(fam: NfFamily, s: &Set) -> schema::Set<'static> {
    schema::Set {
        family: fam,
        table: TABLE.into(),
        name: s.name.clone().into(),
        set_type: SetTypeValue::Single(SetType::Ipv4Addr),
        elem: (!s.elements.is_empty()).then(|| {
            Cow::Owned(
                s.elements
                    .iter()
                    .map(|ip| Expression::String(ip.to_string().into()))
                    .collect(),
            )
        }),
        ..Default::default()
    }
}

/// A flow set: the rule that adds an element gives it its own counter (see `json`), so
/// the set itself is declared bare; nft makes a set that rules add to dynamic.
fn flow_set(fam: NfFamily, s: &FlowSet) -> schema::Set<'static> {
    let types: Vec<SetType> = s
        .key
        .types()
        .into_iter()
        .map(|t| match t {
            "ipv4_addr" => SetType::Ipv4Addr,
            "inet_proto" => SetType::InetProto,
            _ => SetType::InetService,
        })
        .collect();
    schema::Set {
        family: fam,
        table: TABLE.into(),
        name: s.name.clone().into(),
        set_type: SetTypeValue::Concatenated(Cow::Owned(types)),
        size: Some(s.size()),
        ..Default::default()
    }
}

fn chain(fam: NfFamily, t: &Table, c: &Chain) -> schema::Chain<'static> {
    let Some(hook) = c.hook else {
        return schema::Chain {
            family: fam,
            table: TABLE.into(),
            name: c.name.clone().into(),
            ..Default::default()
        };
    };
    schema::Chain {
        family: fam,
        table: TABLE.into(),
        name: c.name.clone().into(),
        _type: Some(if t.chain_type(c) == "nat" {
            NfChainType::NAT
        } else {
            NfChainType::Filter
        }),
        hook: Some(match hook {
            Hook::Prerouting => NfHook::Prerouting,
            Hook::Input => NfHook::Input,
            Hook::Forward => NfHook::Forward,
            Hook::Output => NfHook::Output,
            Hook::Postrouting => NfHook::Postrouting,
        }),
        prio: Some(hook.priority()),
        policy: Some(match c.policy {
            Policy::Accept => NfChainPolicy::Accept,
            Policy::Drop => NfChainPolicy::Drop,
        }),
        ..Default::default()
    }
}

fn rule(fam: NfFamily, t: &Table, chain: &str, r: &Rule) -> schema::Rule<'static> {
    let mut expr: Vec<Statement<'static>> = r.matches.iter().map(matches).collect();
    // `trace` reads the counters to say which rule saw a packet.
    if r.counts() {
        expr.push(Statement::Counter(Counter::Anonymous(None)));
    }
    if let Verdict::RecordDrop(name) = &r.verdict {
        let key = t
            .flow_sets
            .iter()
            .find(|s| &s.name == name)
            .map_or(Key::NoPorts, |s| s.key);
        expr.push(Statement::Set(stmt::Set {
            op: stmt::SetOp::Add,
            elem: Expression::Named(NamedExpression::Concat(
                key.fields().iter().map(|f| key_field(*f)).collect(),
            )),
            set: format!("@{name}").into(),
        }));
    }
    expr.push(if t.stateless {
        rewrite(&r.verdict)
    } else {
        verdict(&r.verdict)
    });
    schema::Rule {
        family: fam,
        table: TABLE.into(),
        chain: chain.to_string().into(),
        expr: Cow::Owned(expr),
        comment: Some(r.comment.clone().into()),
        ..Default::default()
    }
}

fn field(protocol: &'static str, name: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: name.into(),
        },
    )))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn cmp(
    left: Expression<'static>,
    op: stmt::Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(stmt::Match { left, right, op })
}

fn addr(a: &Addr) -> Expression<'static> {
    match a {
        Addr::Net(n) if n.prefix_len() == 32 => Expression::String(n.addr().to_string().into()),
        Addr::Net(n) => Expression::Named(NamedExpression::Prefix(expr::Prefix {
            addr: Box::new(Expression::String(n.network().to_string().into())),
            len: u32::from(n.prefix_len()),
        })),
        Addr::Set(name) => Expression::String(format!("@{name}").into()),
    }
}

fn l4(p: L4) -> &'static str {
    p.as_str()
}

fn matches(m: &Match) -> Statement<'static> {
    use stmt::Operator::{EQ, IN, NEQ};
    // `ip saddr @set` is a set lookup and `ip saddr 10.0.0.0/16` a prefix match: both `==`.
    let s = |v: &str| Expression::String(v.to_string().into());
    match m {
        Match::Iif(n) => cmp(meta(MetaKey::Iifname), EQ, s(n)),
        Match::NotIif(n) => cmp(meta(MetaKey::Iifname), NEQ, s(n)),
        Match::Oif(n) => cmp(meta(MetaKey::Oifname), EQ, s(n)),
        Match::Saddr(a) => cmp(field("ip", "saddr"), EQ, addr(a)),
        Match::Daddr(a) => cmp(field("ip", "daddr"), EQ, addr(a)),
        Match::NotSaddr(a) => cmp(field("ip", "saddr"), NEQ, addr(a)),
        Match::NotDaddr(a) => cmp(field("ip", "daddr"), NEQ, addr(a)),
        Match::Proto(p) => cmp(meta(MetaKey::L4proto), EQ, s(l4(*p))),
        Match::Dport(p, a, b) => {
            let right = if a == b {
                Expression::Number(u32::from(*a))
            } else {
                Expression::Range(Box::new(expr::Range {
                    range: [
                        Expression::Number(u32::from(*a)),
                        Expression::Number(u32::from(*b)),
                    ],
                }))
            };
            cmp(field(l4(*p), "dport"), EQ, right)
        }
        Match::CtState(states) => cmp(
            Expression::Named(NamedExpression::CT(expr::CT {
                key: "state".into(),
                ..Default::default()
            })),
            IN,
            Expression::List(states.iter().map(|c| s(ct(*c))).collect()),
        ),
    }
}

fn key_field(f: KeyField) -> Expression<'static> {
    match f {
        KeyField::Saddr => field("ip", "saddr"),
        KeyField::Daddr => field("ip", "daddr"),
        KeyField::Protocol => meta(MetaKey::L4proto),
        KeyField::Sport => field("th", "sport"),
        KeyField::Dport => field("th", "dport"),
        KeyField::Nexthop => Expression::Named(NamedExpression::RT(expr::RT {
            key: expr::RTKey::NextHop,
            family: Some(expr::RTFamily::IP),
        })),
    }
}

fn ct(c: CtState) -> &'static str {
    c.as_str()
}

fn verdict(v: &Verdict) -> Statement<'static> {
    match v {
        Verdict::Accept => Statement::Accept(None),
        Verdict::Drop => Statement::Drop(None),
        Verdict::Snat { addr, ports } => Statement::SNAT(Some(stmt::NAT {
            addr: Some(Expression::String(addr.to_string().into())),
            family: Some(stmt::NATFamily::IP),
            port: ports.map(|(a, b)| {
                Expression::Range(Box::new(expr::Range {
                    range: [
                        Expression::Number(u32::from(a)),
                        Expression::Number(u32::from(b)),
                    ],
                }))
            }),
            flags: None,
        })),
        Verdict::Dnat { addr } => Statement::DNAT(Some(stmt::NAT {
            addr: Some(Expression::String(addr.to_string().into())),
            family: Some(stmt::NATFamily::IP),
            port: None,
            flags: None,
        })),
        Verdict::Goto(chain) => Statement::Goto(stmt::JumpTarget {
            target: chain.clone().into(),
        }),
        Verdict::DeviceMap { output, chains } => Statement::VerdictMap(stmt::VerdictMap {
            key: meta(if *output {
                MetaKey::Oifname
            } else {
                MetaKey::Iifname
            }),
            data: Expression::Named(NamedExpression::Set(
                chains
                    .iter()
                    .map(|(dev, chain)| {
                        expr::SetItem::Mapping(
                            Expression::String(dev.clone().into()),
                            Expression::Verdict(expr::Verdict::Goto(stmt::JumpTarget {
                                target: chain.clone().into(),
                            })),
                        )
                    })
                    .collect(),
            )),
        }),
        Verdict::RecordDrop(_) => Statement::Drop(None),
    }
}

/// A translation in a stateless table: rewrite the address in this packet (nft updates
/// the IP and transport checksums) and let it go on; any other verdict as usual.
fn rewrite(v: &Verdict) -> Statement<'static> {
    let set = |f: &'static str, addr: &Ipv4Addr| {
        Statement::Mangle(stmt::Mangle {
            key: field("ip", f),
            value: Expression::String(addr.to_string().into()),
        })
    };
    match v {
        Verdict::Snat { addr, .. } => set("saddr", addr),
        Verdict::Dnat { addr } => set("daddr", addr),
        other => verdict(other),
    }
}

/// Applies a table in the calling thread's network namespace (call it from
/// `netns::run_in`/`create_and`): through libnftables in-process, or an `nft` child,
/// which inherits the thread's namespace.
pub fn apply_here(t: &Table) -> Result<()> {
    run_nft(&batch(t))
}

/// Replaces the lab table in the calling thread's network namespace (used when an
/// instance stops or starts and its NAT mapping changes).
pub fn replace_here(t: &Table) -> Result<()> {
    run_nft(&replacement(t))
}

/// Deletes the lab table of `family` in the calling thread's network namespace, if any.
pub fn delete_here(family_: Family) -> Result<()> {
    let table = || {
        NfListObject::Table(schema::Table {
            family: family(family_),
            name: TABLE.into(),
            ..Default::default()
        })
    };
    run_nft(&Nftables {
        objects: Cow::Owned(vec![
            // `add` of an existing table is a no-op, so the `delete` can't fail.
            NfObject::CmdObject(schema::NfCmd::Add(table())),
            NfObject::CmdObject(schema::NfCmd::Delete(table())),
        ]),
    })
}

/// One transaction that deletes the lab table and adds it anew: packets see the old
/// rules or the new ones, never none.
fn replacement(t: &Table) -> Nftables<'static> {
    let fam = family(t.family);
    let table = || {
        NfListObject::Table(schema::Table {
            family: fam,
            name: TABLE.into(),
            ..Default::default()
        })
    };
    let mut objs: Vec<NfObject> = vec![
        // `add` of an existing table is a no-op, so the `delete` can't fail.
        NfObject::CmdObject(schema::NfCmd::Add(table())),
        NfObject::CmdObject(schema::NfCmd::Delete(table())),
    ];
    objs.extend(batch(t).objects.iter().cloned());
    Nftables {
        objects: Cow::Owned(objs),
    }
}

fn run_nft(batch: &Nftables) -> Result<()> {
    let json = json(batch);
    if super::libnft::available() {
        return super::libnft::run(&json);
    }
    feed_nft(&["-j", "-f", "-"], json.as_bytes(), "the ruleset")
}

/// The batch as nft's JSON. The nftables crate has no way to give a set statement its own
/// counter (`add @set { key counter }`, one counter per element), which flow sets need, so
/// every set statement gets it here: the only set statements in a lab's tables are the
/// ones that record flows.
fn json(batch: &Nftables) -> String {
    let mut v = serde_json::to_value(batch).expect("nftables JSON serializes");
    let rules = v["nftables"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .filter_map(|cmd| cmd.pointer_mut("/add/rule/expr"))
        .filter_map(|e| e.as_array_mut());
    for expr in rules {
        for statement in expr.iter_mut().filter_map(|s| s.get_mut("set")) {
            if statement.get("op").is_some() {
                statement["stmt"] = serde_json::json!([{ "counter": null }]);
            }
        }
    }
    v.to_string()
}

/// Runs `nft ARGS` (in the calling thread's namespace, which the child inherits) with
/// `payload` on its standard input; `what` names the payload in errors.
pub(super) fn feed_nft(args: &[&str], payload: &[u8], what: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("run nft (is the nftables package installed?)")?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(payload)
        .with_context(|| format!("send {what} to nft"))?;
    let out = child.wait_with_output().context("wait for nft")?;
    if !out.status.success() {
        bail!(
            "nft rejected {what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The lab table as `nft` lists it, with counters (for `trace` and debugging).
pub fn list_here(family: Family) -> Result<String> {
    let fam = match family {
        Family::Ip => "ip",
        Family::Inet => "inet",
    };
    let out = Command::new("nft")
        .args(["-j", "list", "table", fam, TABLE])
        .output()
        .context("run nft list table")?;
    if !out.status.success() {
        anyhow::bail!(
            "nft list table {fam} {TABLE}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn net(s: &str) -> Addr {
        Addr::Net(s.parse().unwrap())
    }

    /// A set, a filter chain and a source NAT chain: the shapes the plan's tables take.
    fn small(stateless: bool) -> Table {
        Table {
            family: Family::Inet,
            stateless,
            sets: vec![Set {
                name: "web".into(),
                elements: vec!["10.0.2.238".parse().unwrap(), "10.0.0.10".parse().unwrap()],
            }],
            flow_sets: vec![],
            chains: vec![
                Chain {
                    name: "input".into(),
                    hook: Some(Hook::Input),
                    policy: Policy::Drop,
                    rules: vec![
                        Rule {
                            matches: vec![Match::CtState(vec![
                                CtState::Established,
                                CtState::Related,
                            ])],
                            verdict: Verdict::Accept,
                            comment: "replies".into(),
                        },
                        Rule {
                            matches: vec![
                                Match::Saddr(Addr::Set("web".into())),
                                Match::Proto(L4::Tcp),
                                Match::Dport(L4::Tcp, 3306, 3306),
                            ],
                            verdict: Verdict::Accept,
                            comment: "mysql from web".into(),
                        },
                    ],
                },
                Chain {
                    name: "postrouting".into(),
                    hook: Some(Hook::Postrouting),
                    policy: Policy::Accept,
                    rules: vec![Rule {
                        matches: vec![
                            Match::Saddr(net("10.0.0.0/16")),
                            Match::NotDaddr(net("10.0.0.0/16")),
                        ],
                        verdict: Verdict::Snat {
                            addr: "198.51.100.7".parse().unwrap(),
                            ports: Some((1024, 65535)),
                        },
                        comment: "nat".into(),
                    }],
                },
            ],
        }
    }

    fn json(b: &Nftables) -> Vec<Value> {
        match serde_json::to_value(b).unwrap() {
            Value::Object(mut top) => match top.remove("nftables") {
                Some(Value::Array(objects)) => objects,
                other => panic!("no nftables array: {other:?}"),
            },
            other => panic!("not an object: {other}"),
        }
    }

    /// Each command as (command, object kind, the object itself).
    fn commands(b: &Nftables) -> Vec<(String, String, Value)> {
        json(b)
            .into_iter()
            .map(|cmd| {
                let (verb, obj) = cmd.as_object().unwrap().iter().next().unwrap();
                let (kind, body) = obj.as_object().unwrap().iter().next().unwrap();
                (verb.clone(), kind.clone(), body.clone())
            })
            .collect()
    }

    /// (command, kind, name): a rule is named by its chain.
    fn outline(b: &Nftables) -> Vec<(String, String, String)> {
        commands(b)
            .into_iter()
            .map(|(verb, kind, body)| {
                let name = if kind == "rule" {
                    &body["chain"]
                } else {
                    &body["name"]
                };
                (verb, kind, name.as_str().unwrap().to_string())
            })
            .collect()
    }

    fn rules(b: &Nftables) -> Vec<Value> {
        commands(b)
            .into_iter()
            .filter(|(_, kind, _)| kind == "rule")
            .map(|(_, _, body)| body)
            .collect()
    }

    fn last_statement(rule: &Value) -> &Value {
        rule["expr"].as_array().unwrap().last().unwrap()
    }

    fn o(verb: &str, kind: &str, name: &str) -> (String, String, String) {
        (verb.into(), kind.into(), name.into())
    }

    #[test]
    fn a_batch_adds_the_table_its_sets_its_chains_then_their_rules() {
        let b = batch(&small(false));
        assert_eq!(
            outline(&b),
            [
                o("add", "table", TABLE),
                o("add", "set", "web"),
                o("add", "chain", "input"),
                o("add", "chain", "postrouting"),
                o("add", "rule", "input"),
                o("add", "rule", "input"),
                o("add", "rule", "postrouting"),
            ]
        );
        for (_, kind, body) in commands(&b) {
            assert_eq!(body["family"], "inet", "{kind}");
            if kind != "table" {
                assert_eq!(body["table"], TABLE, "{kind}");
            }
        }
        let cmds = commands(&b);
        assert_eq!(cmds[1].2["type"], "ipv4_addr");
        assert_eq!(cmds[1].2["elem"], json!(["10.0.2.238", "10.0.0.10"]));
        let input = &cmds[2].2;
        assert_eq!(
            (
                &input["type"],
                &input["hook"],
                &input["prio"],
                &input["policy"]
            ),
            (&json!("filter"), &json!("input"), &json!(0), &json!("drop"))
        );
        let post = &cmds[3].2;
        assert_eq!(
            (&post["type"], &post["hook"], &post["prio"], &post["policy"]),
            (
                &json!("nat"),
                &json!("postrouting"),
                &json!(100),
                &json!("accept")
            )
        );
    }

    #[test]
    fn every_rule_matches_then_counts_then_gives_its_verdict_with_its_comment() {
        let rules = rules(&batch(&small(false)));
        let comments: Vec<&Value> = rules.iter().map(|r| &r["comment"]).collect();
        assert_eq!(comments, ["replies", "mysql from web", "nat"]);
        for r in &rules {
            let expr = r["expr"].as_array().unwrap();
            assert_eq!(expr[expr.len() - 2], json!({"counter": null}), "{r}");
        }
        assert_eq!(
            rules[1]["expr"],
            json!([
                {"match": {"left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@web", "op": "=="}},
                {"match": {"left": {"meta": {"key": "l4proto"}}, "right": "tcp", "op": "=="}},
                {"match": {"left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 3306, "op": "=="}},
                {"counter": null},
                {"accept": null},
            ])
        );
        assert_eq!(
            rules[0]["expr"][0],
            json!({"match": {"left": {"ct": {"key": "state"}}, "right": ["established", "related"], "op": "in"}})
        );
        assert_eq!(
            rules[2]["expr"][1],
            json!({"match": {"left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "10.0.0.0", "len": 16}}, "op": "!="}})
        );
        assert_eq!(
            *last_statement(&rules[2]),
            json!({"snat": {"addr": "198.51.100.7", "family": "ip", "port": {"range": [1024, 65535]}}})
        );
    }

    #[test]
    fn a_stateless_table_rewrites_addresses_in_filter_chains() {
        let b = batch(&small(true));
        let chains: Vec<Value> = commands(&b)
            .into_iter()
            .filter(|(_, kind, _)| kind == "chain")
            .map(|(_, _, body)| body["type"].clone())
            .collect();
        assert_eq!(chains, ["filter", "filter"]);
        let rules = rules(&b);
        assert_eq!(*last_statement(&rules[1]), json!({"accept": null}));
        assert_eq!(
            *last_statement(&rules[2]),
            json!({"mangle": {"key": {"payload": {"protocol": "ip", "field": "saddr"}}, "value": "198.51.100.7"}})
        );
    }

    #[test]
    fn acl_chains_are_reached_by_a_device_map_and_a_denied_flow_is_counted_in_its_set() {
        let lab = crate::topology::load(
            crate::topology::Source::File(
                concat!(env!("CARGO_MANIFEST_DIR"), "/labs/nacl.yaml").into(),
            ),
            None,
        )
        .unwrap()
        .lab;
        let mut with_logs = lab.clone();
        with_logs.vpc.flow_logs = Some(crate::topology::FlowLogs {
            interval_secs: 60,
            fields: crate::topology::flow_fields::DEFAULT_FORMAT.to_vec(),
        });
        let plan = crate::plan::compile(&with_logs);
        let t = plan.netns("vpc-router").unwrap().firewall.clone().unwrap();
        let b: Value = serde_json::from_str(&super::json(&batch(&t))).unwrap();
        let objects = b["nftables"].as_array().unwrap();
        let added = |kind: &str, name: &str| {
            objects
                .iter()
                .map(|o| &o["add"][kind])
                .find(|o| o["name"] == name || o["chain"] == name)
                .unwrap_or_else(|| panic!("no {kind} {name}"))
                .clone()
        };
        let set = added("set", "acl-inbound-rejected-tcp");
        assert_eq!(
            set["type"],
            json!([
                "ipv4_addr",
                "ipv4_addr",
                "inet_service",
                "inet_service",
                "ipv4_addr"
            ])
        );
        // A regular chain: no type, hook, priority or policy.
        let chain = added("chain", "acl-outbound-public-2a");
        assert!(chain.get("hook").is_none(), "{chain}");
        let rules: Vec<&Value> = objects
            .iter()
            .map(|o| &o["add"]["rule"])
            .filter(|r| r.is_object())
            .collect();
        let of = |chain: &str| -> Vec<&Value> {
            rules
                .iter()
                .copied()
                .filter(|r| r["chain"] == chain)
                .collect()
        };
        assert_eq!(
            of("acl-outbound")[1]["expr"],
            json!([{"vmap": {"key": {"meta": {"key": "iifname"}},
                "data": {"set": [["br-public-2a", {"goto": {"target": "acl-outbound-public-2a"}}]]}}}])
        );
        let star = of("acl-outbound-public-2a").last().copied().unwrap();
        assert_eq!(
            star["expr"],
            json!([{"counter": null}, {"goto": {"target": "rejected-outbound"}}])
        );
        assert_eq!(
            of("rejected-inbound")[0]["expr"],
            json!([
                {"match": {"left": {"meta": {"key": "l4proto"}}, "right": "tcp", "op": "=="}},
                {"set": {"op": "add", "set": "@acl-inbound-rejected-tcp", "stmt": [{"counter": null}],
                         "elem": {"concat": [
                             {"payload": {"protocol": "ip", "field": "saddr"}},
                             {"payload": {"protocol": "ip", "field": "daddr"}},
                             {"payload": {"protocol": "th", "field": "sport"}},
                             {"payload": {"protocol": "th", "field": "dport"}},
                             {"rt": {"key": "nexthop", "family": "ip"}}]}}},
                {"drop": null},
            ])
        );
        // Without flow logs the `*` rule drops, and nothing counts flows.
        let plain = crate::plan::compile(&lab);
        let t = plain.netns("vpc-router").unwrap().firewall.clone().unwrap();
        let text = super::json(&batch(&t));
        assert!(!text.contains("goto\":{\"target\":\"rejected"), "{text}");
        assert!(!text.contains("\"stmt\""), "{text}");
    }

    #[test]
    fn a_replacement_deletes_the_table_and_builds_it_again_in_one_batch() {
        let t = small(false);
        let objects = json(&replacement(&t));
        let table = json!({"table": {"family": "inet", "name": TABLE}});
        // The `add` first: deleting a table that isn't there would fail the batch.
        assert_eq!(objects[0], json!({"add": table}));
        assert_eq!(objects[1], json!({"delete": table}));
        assert_eq!(objects[2..], json(&batch(&t))[..]);
    }
}
