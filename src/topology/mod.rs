//! The lab as data: the YAML format, AWS's validation rules, address allocation and the
//! built-in hands-on lab. Nothing here needs root or touches the kernel.

pub mod aws;
pub mod diag;
pub mod export;
pub mod file;
pub mod flow_fields;
pub mod model;
mod validate;
pub mod well_known;

pub use diag::Diagnostics;
pub use model::*;

use std::path::{Path, PathBuf};

/// The write-up's hands-on lab, used when a command gets no FILE.
pub const BUILTIN_NAME: &str = "handson";
pub const BUILTIN_YAML: &str = include_str!("../../labs/handson.yaml");

const LAB_NAME_HINT: &str = "use 1-20 lowercase letters, digits and `-`, starting with a letter";

/// Lab names become part of every namespace name, so they are short and plain.
pub fn check_lab_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 20 {
        return Err("it must be 1 to 20 characters");
    }
    if !name.chars().next().unwrap().is_ascii_lowercase() {
        return Err("it must start with a lowercase letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("it may contain only lowercase letters, digits and `-`");
    }
    Ok(())
}

/// Where a lab came from: a file, or the built-in one.
#[derive(Debug, Clone)]
pub enum Source {
    Builtin,
    File(PathBuf),
}

impl Source {
    pub fn from_arg(file: Option<&Path>) -> Source {
        match file {
            Some(p) => Source::File(p.to_path_buf()),
            None => Source::Builtin,
        }
    }

    /// How messages name the file: its path, or `labs/handson.yaml` for the built-in lab.
    pub fn label(&self) -> String {
        match self {
            Source::Builtin => "labs/handson.yaml (built-in)".into(),
            Source::File(p) => p.display().to_string(),
        }
    }

    fn default_name(&self) -> String {
        match self {
            Source::Builtin => BUILTIN_NAME.into(),
            Source::File(p) => p
                .file_stem()
                .map(|s| s.to_string_lossy().to_lowercase())
                .unwrap_or_else(|| "lab".into()),
        }
    }
}

/// A lab that passed validation, with the warnings it produced.
#[derive(Debug)]
pub struct Loaded {
    pub lab: Lab,
    pub warnings: Diagnostics,
    pub source: Source,
    pub text: String,
}

/// Why a lab could not be loaded: unreadable, or with errors to print.
#[derive(Debug)]
pub enum LoadError {
    Io(Source, std::io::Error),
    Invalid(Source, Diagnostics),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Io(s, e) => write!(
                f,
                "{}: error: cannot read the lab file: {e}\n  hint: check the path, or leave FILE out to use the built-in lab",
                s.label()
            ),
            LoadError::Invalid(s, d) => {
                let n = d.errors().count();
                write!(
                    f,
                    "{}\n{n} error{} in {}",
                    d.render(&s.label()),
                    if n == 1 { "" } else { "s" },
                    s.label()
                )
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// Reads, parses and validates a lab. `name` replaces the file's own name (`--name`).
pub fn load(source: Source, name: Option<&str>) -> Result<Loaded, LoadError> {
    let text = match &source {
        Source::Builtin => BUILTIN_YAML.to_string(),
        Source::File(p) => {
            std::fs::read_to_string(p).map_err(|e| LoadError::Io(source.clone(), e))?
        }
    };
    match check(&text, &source, name) {
        (Some(lab), d) => Ok(Loaded {
            lab,
            warnings: d,
            source,
            text,
        }),
        (None, d) => Err(LoadError::Invalid(source, d)),
    }
}

/// Parses and validates text; the lab is `Some` exactly when there is no error.
pub fn check(text: &str, source: &Source, name: Option<&str>) -> (Option<Lab>, Diagnostics) {
    check_keeping(text, source, name, &Allocations::default())
}

/// `check` for a running lab's file: objects that hold addresses in `kept` keep them, and
/// `auto` addresses go to new objects only.
pub fn check_keeping(
    text: &str,
    source: &Source,
    name: Option<&str>,
    kept: &Allocations,
) -> (Option<Lab>, Diagnostics) {
    let parsed: Result<file::LabFile, _> = serde_saphyr::from_str(text);
    match parsed {
        Ok(f) => validate::validate(
            &f,
            &validate::Options {
                name_override: name.map(str::to_string),
                default_name: source.default_name(),
                kept: kept.clone(),
            },
        ),
        Err(e) => {
            let mut d = Diagnostics::default();
            d.items.push(diag::parse_error(text, &e));
            (None, d)
        }
    }
}

/// Labs for the unit tests of every layer: the built-in lab, and a lab from YAML text that
/// must be valid (the test fails showing the diagnostics otherwise).
#[cfg(test)]
pub mod testing {
    use super::*;

    pub fn builtin() -> Lab {
        load(Source::Builtin, None)
            .expect("built-in lab is valid")
            .lab
    }

    pub fn lab_from(yaml: &str) -> Lab {
        let (lab, d) = check(yaml, &Source::Builtin, None);
        lab.unwrap_or_else(|| panic!("test lab is invalid:\n{}", d.render("test")))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::builtin;
    use super::*;

    /// AWS never renumbers a running interface: a running lab's objects keep their
    /// addresses when an edit adds an object whose `auto` address would come first.
    #[test]
    fn kept_addresses_survive_an_edit_that_adds_objects_before_them() {
        let before = builtin();
        let edited = BUILTIN_YAML.replace(
            "instances:\n",
            "instances:\n  early:\n    subnet: public-2a\n    public_ip: auto\n    security_groups: [MyWebServer-SecurityGroup]\n",
        );
        let (fresh, _) = check(&edited, &Source::Builtin, None);
        let fresh = fresh.expect("the edited lab is valid");
        // Built from scratch, the new instance takes the NAT gateway's address and the
        // web server's public one: what an edit of a running lab must not do.
        assert_eq!(
            fresh.instance("early").unwrap().private_ip.to_string(),
            "10.0.0.4"
        );
        let (kept, d) = check_keeping(&edited, &Source::Builtin, None, &Allocations::of(&before));
        let kept = kept.unwrap_or_else(|| panic!("{}", d.render("edited")));
        assert_eq!(
            kept.nat_gateways[0].private_ip,
            before.nat_gateways[0].private_ip
        );
        assert_eq!(kept.elastic_ips[0].address, before.elastic_ips[0].address);
        assert_eq!(
            kept.instance("web").unwrap().public_ip,
            before.instance("web").unwrap().public_ip
        );
        let early = kept.instance("early").unwrap();
        assert_eq!(early.private_ip.to_string(), "10.0.0.5");
        assert!(
            !Allocations::of(&before).holds_public(early.public_ip.address().unwrap()),
            "the new instance gets a public address nobody holds"
        );
    }

    #[test]
    fn builtin_lab_is_the_write_up_hands_on() {
        let lab = builtin();
        assert_eq!(lab.name, "handson");
        assert_eq!(lab.region, "ap-northeast-2");
        assert_eq!(lab.vpc.cidr.to_string(), "10.0.0.0/16");
        let subnets: Vec<(String, String, String, bool)> = lab
            .subnets
            .iter()
            .map(|s| (s.name.clone(), s.az.clone(), s.cidr.to_string(), s.public))
            .collect();
        assert_eq!(
            subnets,
            [
                (
                    "public-2a".into(),
                    "ap-northeast-2a".into(),
                    "10.0.0.0/24".into(),
                    true
                ),
                (
                    "private-2a".into(),
                    "ap-northeast-2a".into(),
                    "10.0.1.0/24".into(),
                    false
                ),
                (
                    "public-2c".into(),
                    "ap-northeast-2c".into(),
                    "10.0.2.0/24".into(),
                    true
                ),
                (
                    "private-2c".into(),
                    "ap-northeast-2c".into(),
                    "10.0.3.0/24".into(),
                    false
                ),
            ]
        );
        let web = lab.instance("web").unwrap();
        assert_eq!(web.private_ip.to_string(), "10.0.2.238");
        assert_eq!(
            web.public_ip.address().unwrap().to_string(),
            "198.51.100.10"
        );
        assert_eq!(web.id.len(), 19);
        let db = lab.database("my-database").unwrap();
        assert_eq!(db.primary.private_ip.to_string(), "10.0.3.87");
        assert_eq!(db.primary.name, "my-database-2c");
        assert_eq!(
            db.standby.as_ref().unwrap().private_ip.to_string(),
            "10.0.1.64"
        );
        assert!(db.endpoint.starts_with("my-database."));
        assert!(db.endpoint.ends_with(".ap-northeast-2.rds.amazonaws.com"));
        let id = db.endpoint.split('.').nth(1).unwrap();
        assert_eq!(id.len(), 12);
        let nat = &lab.nat_gateways[0];
        assert_eq!(lab.subnets[nat.subnet].name, "public-2a");
        assert_eq!(nat.private_ip.to_string(), "10.0.0.4");
        assert_eq!(
            lab.elastic_ips[nat.elastic_ip].address.to_string(),
            "198.51.100.11"
        );
        assert_eq!(lab.my_ip().unwrap().ip.to_string(), "203.0.113.10");
        assert_eq!(lab.expectations.len(), 14);
    }

    #[test]
    fn the_same_file_gives_the_same_lab() {
        let a = serde_json::to_string(&builtin()).unwrap();
        let b = serde_json::to_string(&builtin()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn name_override_changes_ids() {
        let a = builtin();
        let b = load(Source::Builtin, Some("copy")).unwrap().lab;
        assert_eq!(b.name, "copy");
        assert_ne!(a.instances[0].id, b.instances[0].id);
        assert_eq!(a.instances[0].private_ip, b.instances[0].private_ip);
    }

    #[test]
    fn dns_names_follow_ec2() {
        let lab = builtin();
        let ip = "10.0.2.238".parse().unwrap();
        assert_eq!(
            lab.private_dns_name(ip),
            "ip-10-0-2-238.ap-northeast-2.compute.internal"
        );
        assert_eq!(
            lab.public_dns_name("198.51.100.10".parse().unwrap()),
            "ec2-198-51-100-10.ap-northeast-2.compute.amazonaws.com"
        );
        assert_eq!(lab.vpc.dns_server().to_string(), "10.0.0.2");
    }

    #[test]
    fn parse_errors_point_at_line_and_column() {
        let text =
            BUILTIN_YAML.replace("  cidr: 10.0.0.0/16", "  cidr: 10.0.0.0/16\n  colour: blue");
        let (lab, d) = check(&text, &Source::Builtin, None);
        assert!(lab.is_none());
        let e = d.errors().next().unwrap();
        assert!(
            e.message.starts_with("unknown field `colour`"),
            "{}",
            e.message
        );
        let line = text.lines().position(|l| l.contains("colour")).unwrap() as u64 + 1;
        assert_eq!((e.line, e.column), (line, 3));
    }

    #[test]
    fn lab_names_are_short_lowercase_words() {
        assert_eq!(check_lab_name("handson"), Ok(()));
        assert_eq!(check_lab_name("lab-2"), Ok(()));
        assert_eq!(check_lab_name(""), Err("it must be 1 to 20 characters"));
        assert_eq!(
            check_lab_name("a23456789012345678901"),
            Err("it must be 1 to 20 characters")
        );
        assert_eq!(
            check_lab_name("2lab"),
            Err("it must start with a lowercase letter")
        );
        assert_eq!(
            check_lab_name("my_lab"),
            Err("it may contain only lowercase letters, digits and `-`")
        );
    }
}
