//! The plan's firewall tables as nftables JSON batches (the nftables crate), applied
//! atomically by `nft -j -f -` started from a thread inside the lab namespace, so the
//! `nft` process inherits that namespace and never sees the host's ruleset.

use crate::plan::firewall::{
    Addr, Chain, CtState, Family, Hook, L4, Match, Policy, Rule, Set, TABLE, Table, Verdict,
};
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

/// One batch: the table, its sets, chains and rules, committed as one transaction.
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
    for c in &t.chains {
        objs.push(add(NfListObject::Chain(chain(fam, t, c))));
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

fn chain(fam: NfFamily, t: &Table, c: &Chain) -> schema::Chain<'static> {
    schema::Chain {
        family: fam,
        table: TABLE.into(),
        name: c.name.clone().into(),
        _type: Some(if t.chain_type(c) == "nat" {
            NfChainType::NAT
        } else {
            NfChainType::Filter
        }),
        hook: Some(match c.hook {
            Hook::Prerouting => NfHook::Prerouting,
            Hook::Input => NfHook::Input,
            Hook::Forward => NfHook::Forward,
            Hook::Output => NfHook::Output,
            Hook::Postrouting => NfHook::Postrouting,
        }),
        prio: Some(c.hook.priority()),
        policy: Some(match c.policy {
            Policy::Accept => NfChainPolicy::Accept,
            Policy::Drop => NfChainPolicy::Drop,
        }),
        ..Default::default()
    }
}

fn rule(fam: NfFamily, t: &Table, chain: &str, r: &Rule) -> schema::Rule<'static> {
    let mut expr: Vec<Statement<'static>> = r.matches.iter().map(matches).collect();
    // Every rule counts: `trace` reads the counters to say which rule saw a packet.
    expr.push(Statement::Counter(Counter::Anonymous(None)));
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

/// Replaces the lab table in one transaction: packets see the old rules or the new
/// ones, never none (used when an instance stops or starts and its NAT mapping changes).
pub fn replace_here(t: &Table) -> Result<()> {
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
    run_nft(&Nftables {
        objects: Cow::Owned(objs),
    })
}

fn run_nft(batch: &Nftables) -> Result<()> {
    if super::libnft::available() {
        let json = serde_json::to_string(batch).expect("nftables JSON serializes");
        return super::libnft::run(&json);
    }
    let payload = serde_json::to_vec(batch).expect("nftables JSON serializes");
    let mut child = Command::new("nft")
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("run nft (is the nftables package installed?)")?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(&payload)
        .context("send the ruleset to nft")?;
    let out = child.wait_with_output().context("wait for nft")?;
    if !out.status.success() {
        bail!(
            "nft rejected the ruleset: {}",
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
