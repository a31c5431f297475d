//! Where the lab file wrote what an audit finding is about: the checked `Lab` keeps no
//! positions, so the text is parsed again into the spanned file model validation uses.

use crate::topology::file::{LabFile, Named, S};
use serde::Serialize;

/// A 1-based line and column in the lab file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Loc {
    pub line: u64,
    pub column: u64,
}

fn loc<T>(s: &S<T>) -> Loc {
    Loc {
        line: s.referenced.line(),
        column: s.referenced.column(),
    }
}

/// The entry `name` of a named collection, with its key.
fn entry<'a, T>(map: &'a Named<T>, name: &str) -> Option<(&'a S<String>, &'a T)> {
    map.iter().find(|(k, _)| k.value == name)
}

/// The spans of one lab file's text (none when it no longer parses).
pub struct Spans {
    file: Option<LabFile>,
}

impl Spans {
    pub fn parse(text: &str) -> Spans {
        Spans {
            file: serde_saphyr::from_str(text).ok(),
        }
    }

    pub fn security_group(&self, name: &str) -> Option<Loc> {
        let (k, _) = entry(&self.file.as_ref()?.security_groups, name)?;
        Some(loc(k))
    }

    /// Inbound rule `index` of group `name` (a checked lab keeps every rule, in order).
    pub fn inbound_rule(&self, name: &str, index: usize) -> Option<Loc> {
        let (_, g) = entry(&self.file.as_ref()?.security_groups, name)?;
        g.inbound.get(index).map(loc)
    }

    /// The rule numbered `number` of network ACL `name` (the checked lab sorts them by
    /// number, so the file's order is no guide).
    pub fn acl_rule(&self, name: &str, inbound: bool, number: u16) -> Option<Loc> {
        let (_, acl) = entry(&self.file.as_ref()?.network_acls, name)?;
        let rules = if inbound { &acl.inbound } else { &acl.outbound };
        rules
            .iter()
            .find(|r| r.value.rule.value.0.trim().parse() == Ok(number))
            .map(loc)
    }

    /// An instance's `public_ip`, or its name when it does not write one.
    pub fn instance_public_ip(&self, name: &str) -> Option<Loc> {
        let (k, i) = entry(&self.file.as_ref()?.instances, name)?;
        Some(i.public_ip.as_ref().map_or(loc(k), loc))
    }

    /// A database's `publicly_accessible`, or its name.
    pub fn database_public(&self, name: &str) -> Option<Loc> {
        let (k, d) = entry(&self.file.as_ref()?.databases, name)?;
        Some(d.publicly_accessible.as_ref().map_or(loc(k), loc))
    }

    /// A database's `multi_az`, or its name.
    pub fn database_multi_az(&self, name: &str) -> Option<Loc> {
        let (k, d) = entry(&self.file.as_ref()?.databases, name)?;
        Some(d.multi_az.as_ref().map_or(loc(k), loc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::BUILTIN_YAML;

    /// 1-based line and column of `needle` in the first line containing `line_has`.
    fn pos(line_has: &str, needle: &str) -> Loc {
        let (i, l) = BUILTIN_YAML
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains(line_has))
            .unwrap();
        Loc {
            line: i as u64 + 1,
            column: l.find(needle).unwrap() as u64 + 1,
        }
    }

    #[test]
    fn spans_point_at_what_the_file_wrote() {
        let s = Spans::parse(BUILTIN_YAML);
        assert_eq!(
            s.inbound_rule("MyWebServer-SecurityGroup", 1),
            Some(pos("{ type: http, source: 0.0.0.0/0 }", "{"))
        );
        assert_eq!(
            s.instance_public_ip("web"),
            Some(pos("public_ip: auto", "auto"))
        );
        assert_eq!(
            s.database_public("my-database"),
            Some(pos("publicly_accessible: false", "false"))
        );
        assert_eq!(
            s.security_group("MyApp-SecurityGroup"),
            Some(pos("MyApp-SecurityGroup:", "MyApp"))
        );
        assert_eq!(s.instance_public_ip("nobody"), None);
    }

    #[test]
    fn an_acl_rule_is_found_by_its_number_not_its_place() {
        let text = "region: ap-northeast-2
vpc: { name: v, cidr: 10.0.0.0/16 }
subnets: {}
network_acls:
  a:
    inbound:
      - { rule: 200, protocol: all, source: 0.0.0.0/0, action: allow }
      - { rule: 100, type: ssh, source: 0.0.0.0/0, action: deny }
    outbound:
      - { rule: 100, protocol: all, destination: 0.0.0.0/0, action: allow }
";
        let s = Spans::parse(text);
        assert_eq!(s.acl_rule("a", true, 100), Some(Loc { line: 8, column: 9 }));
        assert_eq!(s.acl_rule("a", true, 200), Some(Loc { line: 7, column: 9 }));
        assert_eq!(
            s.acl_rule("a", false, 100),
            Some(Loc {
                line: 10,
                column: 9
            })
        );
        assert_eq!(s.acl_rule("a", false, 200), None);
        assert_eq!(s.acl_rule("b", true, 100), None);
    }
}
