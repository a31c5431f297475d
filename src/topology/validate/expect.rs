//! Expectations (`expect:`): what `vpclab probe` must find. Their shape is checked on every
//! run; their names and answers once the lab is built, against the lab itself.

use super::{Validator, loc, quoted_list};
use crate::topology::file::{self, LabFile, S};
use crate::topology::model::{Answer, Check, Expectation, Lab, NodeRef, Outcome, PublicIp};
use std::net::Ipv4Addr;

impl Validator {
    /// The expectations of a lab with errors: their shape and names, as far as the file
    /// allows without a built lab.
    pub(super) fn expectations_without_lab(&mut self, f: &LabFile) {
        for e in &f.expect {
            self.expect_shape(&e.value);
            self.expect_names(&e.value, f);
        }
    }

    /// The expectations of a built lab, resolved against it.
    pub(super) fn expectations(&mut self, f: &LabFile, lab: &Lab) -> Vec<Expectation> {
        f.expect
            .iter()
            .filter_map(|e| self.expectation(e, lab))
            .collect()
    }

    /// Checks the words of an expectation without resolving names (used when other errors
    /// already stop the lab from being built).
    fn expect_words(&mut self, e: &file::ExpectFile) -> Option<(Check, Outcome)> {
        let check = match Check::ALL.iter().find(|c| c.as_str() == e.check.value) {
            Some(c) => Some(*c),
            None => {
                self.err(
                    loc(&e.check),
                    format!("unknown check `{}`", e.check.value),
                    format!(
                        "checks are {}",
                        quoted_list(Check::ALL.iter().map(|c| c.as_str()))
                    ),
                );
                None
            }
        };
        let result = match &e.result {
            None => Some(Outcome::Ok),
            Some(r) => match r.value.as_str() {
                "ok" => Some(Outcome::Ok),
                "blocked" => Some(Outcome::Blocked),
                other => {
                    self.err(
                        loc(r),
                        format!("unknown result `{other}`"),
                        "results are `ok` (it must work) and `blocked` (it must fail)",
                    );
                    None
                }
            },
        };
        check.zip(result)
    }

    /// The checks of an expectation that need no resolved names: its words, and which
    /// fields go with which check. Run for every expectation, even when other errors stop
    /// the lab from being built, so every mistake shows in one run.
    fn expect_shape(&mut self, e: &file::ExpectFile) -> Option<(Check, Outcome, Option<u16>)> {
        let (check, result) = self.expect_words(e)?;
        let mut port_ok = true;
        let port = match (&e.port, check) {
            (Some(p), Check::Tcp) => match self.port_range(p) {
                Some((a, b)) if a == b => Some(a),
                Some(_) => {
                    self.err(
                        loc(p),
                        "a tcp check takes one port, not a range",
                        "write one port, like `port: 3306`; add a check per port to test several",
                    );
                    port_ok = false;
                    None
                }
                None => {
                    port_ok = false;
                    None
                }
            },
            (Some(p), _) => {
                self.err(
                    loc(p),
                    format!(
                        "`port` only applies to `check: tcp`, not `{}`",
                        check.as_str()
                    ),
                    "the other checks use their service's standard port",
                );
                None
            }
            (None, Check::Tcp) => {
                self.err(
                    loc(&e.check),
                    "a tcp check needs a `port`",
                    "add e.g. `port: 3306`",
                );
                port_ok = false;
                None
            }
            (None, _) => None,
        };
        if let Some(s) = &e.seen_as
            && check != Check::Http
        {
            self.err(
                loc(s),
                "`seen_as` only applies to `check: http`",
                "the far end's web server reports the source address it saw",
            );
        }
        match (&e.answer, check) {
            (None, Check::Dns) => self.err(
                loc(&e.check),
                "a dns check needs an `answer`",
                "write `answer: private`, `public`, `primary` or an address",
            ),
            (Some(a), c) if c != Check::Dns => self.err(
                loc(a),
                "`answer` only applies to `check: dns`",
                "remove `answer`, or write `check: dns` to test what the name resolves to",
            ),
            _ => {}
        }
        port_ok.then_some((check, result, port))
    }

    /// `from:` and `to:` checked against the file's names, for when other errors stop the
    /// lab from being built. Names that may be a database server (`<database>-<az>`) pass.
    fn expect_names(&mut self, e: &file::ExpectFile, f: &LabFile) {
        let known = |n: &str| {
            f.instances.keys().any(|k| k.value == n)
                || f.databases
                    .keys()
                    .any(|k| k.value == n || n.starts_with(&format!("{}-", k.value)))
                || f.internet.keys().any(|k| k.value == n)
                || f.nat_gateways.keys().any(|k| k.value == n)
                || f.elastic_ips.keys().any(|k| k.value == n)
        };
        let mut names: Vec<&str> = f.instances.keys().map(|k| k.value.as_str()).collect();
        names.extend(f.databases.keys().map(|k| k.value.as_str()));
        names.extend(f.internet.keys().map(|k| k.value.as_str()));
        if !known(&e.from.value) {
            self.unknown_node(&e.from, &names);
        }
        if !known(&e.to.value) && e.to.value.parse::<Ipv4Addr>().is_err() {
            self.unknown_node(&e.to, &names);
        }
    }

    fn expectation(&mut self, e: &S<file::ExpectFile>, lab: &Lab) -> Option<Expectation> {
        let line = e.referenced.line();
        let e = &e.value;
        let shape = self.expect_shape(e);
        let mut names: Vec<&str> = lab.instances.iter().map(|i| i.name.as_str()).collect();
        names.extend(lab.databases.iter().map(|d| d.name.as_str()));
        names.extend(lab.internet.iter().map(|h| h.name.as_str()));
        let from_ok = match lab.find(&e.from.value) {
            Some(NodeRef::Instance(_) | NodeRef::Internet(_) | NodeRef::DbNode(..)) => true,
            Some(_) => {
                self.err(
                    loc(&e.from),
                    format!("`{}` can't run a probe", e.from.value),
                    "probes run from an instance or an internet host",
                );
                false
            }
            None => {
                self.unknown_node(&e.from, &names);
                false
            }
        };
        let to = lab.find(&e.to.value);
        if to.is_none() && e.to.value.parse::<Ipv4Addr>().is_err() {
            self.unknown_node(&e.to, &names);
        }
        let (check, result, port) = shape?;
        if check == Check::Mysql && !matches!(to, Some(NodeRef::Database(_)) | None) {
            self.err(
                loc(&e.to),
                format!("`{}` is not a database", e.to.value),
                format!(
                    "a mysql check targets a database: {}",
                    quoted_list(lab.databases.iter().map(|d| d.name.as_str()))
                ),
            );
        }
        let seen_as = match &e.seen_as {
            Some(s) if check == Check::Http => self.seen_as(s, lab),
            _ => None,
        };
        let answer = match &e.answer {
            Some(a) if check == Check::Dns => self.answer(a, to),
            _ => None,
        };
        if !from_ok || self.d.has_errors() {
            return None;
        }
        Some(Expectation {
            line,
            from: e.from.value.clone(),
            to: e.to.value.clone(),
            check,
            result,
            port,
            seen_as,
            answer,
        })
    }

    fn unknown_node(&mut self, s: &S<String>, names: &[&str]) {
        self.err(
            loc(s),
            format!(
                "`{}` is not an instance, database or internet host",
                s.value
            ),
            format!("known names: {}", quoted_list(names.iter().copied())),
        );
    }

    fn seen_as(&mut self, s: &S<String>, lab: &Lab) -> Option<String> {
        let ip = lab.address_seen_as(&s.value);
        if ip.is_none() {
            self.err(
                loc(s),
                format!("`seen_as: {}` is not an address, instance, Elastic IP or NAT gateway", s.value),
                "write the name whose public address the far end should see, e.g. `seen_as: my-nat-eip`",
            );
        }
        ip.map(|_| s.value.clone())
    }

    fn answer(&mut self, a: &S<String>, to: Option<NodeRef>) -> Option<Answer> {
        let answer = match a.value.as_str() {
            "private" => Answer::Private,
            "public" => Answer::Public,
            "primary" => Answer::Primary,
            other => match other.parse::<Ipv4Addr>() {
                Ok(ip) => Answer::Address(ip),
                Err(_) => {
                    self.err(
                        loc(a),
                        format!("unknown answer `{other}`"),
                        "write `private`, `public`, `primary` or an IPv4 address",
                    );
                    return None;
                }
            },
        };
        match (&answer, to) {
            (Answer::Primary, Some(NodeRef::Database(_))) => {}
            (Answer::Primary, _) => self.err(
                loc(a),
                "`answer: primary` applies to a database's endpoint",
                "point `to:` at a database",
            ),
            (Answer::Public, Some(NodeRef::Instance(i))) if i.public_ip == PublicIp::None => self
                .err(
                    loc(a),
                    format!(
                        "instance `{}` has no public IP, so it has no public DNS name",
                        i.name
                    ),
                    "give it `public_ip: auto` or expect `private`",
                ),
            _ => {}
        }
        Some(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn expectations_are_checked_even_when_the_lab_has_other_errors() {
        let text = edit("cidr: 10.0.0.0/16", "cidr: 10.0.0.0/33").replace(
            "{ from: web, to: web, check: dns, answer: private }",
            "{ from: web, to: webb, check: tcp }",
        );
        let msgs: Vec<String> = errors(&text).into_iter().map(|e| e.2).collect();
        assert_eq!(
            msgs,
            [
                "VPC CIDR `10.0.0.0/33` is not a valid IPv4 CIDR",
                "a tcp check needs a `port`",
                "`webb` is not an instance, database or internet host",
            ]
        );
    }
}
