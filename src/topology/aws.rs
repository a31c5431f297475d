//! AWS facts the validator checks against: regions and their availability zones, the
//! console's security group rule types, and the addresses every subnet reserves.

use super::model::{Protocol, offset};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// Regions and the letters of their availability zones.
pub const REGIONS: &[(&str, &str)] = &[
    ("us-east-1", "abcdef"),
    ("us-east-2", "abc"),
    ("us-west-1", "bc"),
    ("us-west-2", "abcd"),
    ("ca-central-1", "abd"),
    ("sa-east-1", "abc"),
    ("eu-west-1", "abc"),
    ("eu-west-2", "abc"),
    ("eu-west-3", "abc"),
    ("eu-central-1", "abc"),
    ("eu-north-1", "abc"),
    ("ap-south-1", "abc"),
    ("ap-northeast-1", "acd"),
    ("ap-northeast-2", "abcd"),
    ("ap-northeast-3", "abc"),
    ("ap-southeast-1", "abc"),
    ("ap-southeast-2", "abc"),
];

pub fn region_azs(region: &str) -> Option<Vec<String>> {
    REGIONS
        .iter()
        .find(|(r, _)| *r == region)
        .map(|(r, letters)| letters.chars().map(|c| format!("{r}{c}")).collect())
}

/// An availability zone's AZ ID (`ap-northeast-2a` -> `apne2-az1`): the region's short
/// code and the zone's number. AWS maps zone names to AZ IDs per account; the lab numbers
/// the zones by their letter (a -> az1), the same for everyone.
pub fn az_id(az: &str) -> String {
    let Some((region, letter)) = az.len().checked_sub(1).map(|i| az.split_at(i)) else {
        return az.to_string();
    };
    let short: String = region
        .split('-')
        .map(|part| match part {
            "northeast" => "ne",
            "southeast" => "se",
            "northwest" => "nw",
            "southwest" => "sw",
            "north" => "n",
            "south" => "s",
            "east" => "e",
            "west" => "w",
            "central" => "c",
            other => other,
        })
        .collect();
    let number = letter
        .bytes()
        .next()
        .filter(u8::is_ascii_lowercase)
        .map_or(0, |b| b - b'a' + 1);
    format!("{short}-az{number}")
}

/// The console's rule "Type" column: a name that fixes protocol and port.
pub struct RuleType {
    pub name: &'static str,
    pub label: &'static str,
    pub protocol: Protocol,
    pub ports: Option<(u16, u16)>,
}

pub const RULE_TYPES: &[RuleType] = &[
    RuleType {
        name: "ssh",
        label: "SSH",
        protocol: Protocol::Tcp,
        ports: Some((22, 22)),
    },
    RuleType {
        name: "http",
        label: "HTTP",
        protocol: Protocol::Tcp,
        ports: Some((80, 80)),
    },
    RuleType {
        name: "https",
        label: "HTTPS",
        protocol: Protocol::Tcp,
        ports: Some((443, 443)),
    },
    RuleType {
        name: "mysql",
        label: "MYSQL/Aurora",
        protocol: Protocol::Tcp,
        ports: Some((3306, 3306)),
    },
    RuleType {
        name: "postgresql",
        label: "PostgreSQL",
        protocol: Protocol::Tcp,
        ports: Some((5432, 5432)),
    },
    RuleType {
        name: "dns",
        label: "DNS (UDP)",
        protocol: Protocol::Udp,
        ports: Some((53, 53)),
    },
    RuleType {
        name: "rdp",
        label: "RDP",
        protocol: Protocol::Tcp,
        ports: Some((3389, 3389)),
    },
    RuleType {
        name: "all-traffic",
        label: "All traffic",
        protocol: Protocol::All,
        ports: None,
    },
    RuleType {
        name: "all-tcp",
        label: "All TCP",
        protocol: Protocol::Tcp,
        ports: Some((0, 65535)),
    },
    RuleType {
        name: "all-udp",
        label: "All UDP",
        protocol: Protocol::Udp,
        ports: Some((0, 65535)),
    },
    RuleType {
        name: "all-icmp",
        label: "All ICMP - IPv4",
        protocol: Protocol::Icmp,
        ports: None,
    },
];

pub fn rule_type(name: &str) -> Option<&'static RuleType> {
    RULE_TYPES.iter().find(|t| t.name == name)
}

/// Why an address of a subnet is not assignable, in AWS's words, or `None` if it is.
pub fn reserved_reason(subnet: Ipv4Net, ip: Ipv4Addr) -> Option<&'static str> {
    let base = u32::from(subnet.network());
    match u32::from(ip).wrapping_sub(base) {
        0 => Some("the network address"),
        1 => Some("reserved for the VPC router"),
        2 => Some("reserved for the Amazon DNS server"),
        3 => Some("reserved by AWS for future use"),
        _ if ip == subnet.broadcast() => Some("the network broadcast address"),
        _ => None,
    }
}

/// "10.0.2.4 to 10.0.2.254" for a subnet: the addresses it can assign.
pub fn usable_range(net: Ipv4Net) -> String {
    let first = offset(net.network(), 4);
    let last = Ipv4Addr::from(u32::from(net.broadcast()) - 1);
    format!("{first} to {last}")
}

/// The blocks of RFC 1918, where AWS recommends VPC CIDRs come from.
pub fn is_rfc1918(net: Ipv4Net) -> bool {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
        .iter()
        .any(|b| b.parse::<Ipv4Net>().unwrap().contains(&net))
}

/// Whether two blocks share an address (one then holds the other's network address).
pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The special-purpose range `net` overlaps, with why it can't be used, if any.
pub fn special_block(net: Ipv4Net) -> Option<(Ipv4Net, &'static str)> {
    const SPECIAL: &[(&str, &str)] = &[
        ("0.0.0.0/8", "the \"this network\" range"),
        ("127.0.0.0/8", "the loopback range"),
        ("169.254.0.0/16", "the link-local range"),
        ("224.0.0.0/4", "the multicast range"),
        ("240.0.0.0/4", "the reserved range"),
    ];
    SPECIAL.iter().find_map(|(b, why)| {
        let b: Ipv4Net = b.parse().unwrap();
        overlaps(b, net).then_some((b, *why))
    })
}

/// Stable hash for ids derived from names (FNV-1a, 64 bit): the same lab gives the same
/// instance ids and endpoint on every run and every machine.
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// `PREFIX-` and 17 lowercase hex digits: the shape of an EC2 resource ID (`i-0…`,
/// `subnet-0…`).
pub fn is_id(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|h| {
            h.len() == 17
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// The 12-character id in RDS endpoints (per account and region on AWS; per lab here).
pub fn endpoint_id(lab: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut h = stable_hash(&["rds-endpoint", lab]);
    let mut out = String::from("c"); // RDS ids start with a letter
    for _ in 0..11 {
        out.push(ALPHABET[(h % 36) as usize] as char);
        h /= 36;
        if h == 0 {
            h = stable_hash(&[&out]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_addresses_follow_aws() {
        let net: Ipv4Net = "10.0.2.0/24".parse().unwrap();
        let r = |s: &str| reserved_reason(net, s.parse().unwrap());
        assert_eq!(r("10.0.2.0"), Some("the network address"));
        assert_eq!(r("10.0.2.1"), Some("reserved for the VPC router"));
        assert_eq!(r("10.0.2.2"), Some("reserved for the Amazon DNS server"));
        assert_eq!(r("10.0.2.3"), Some("reserved by AWS for future use"));
        assert_eq!(r("10.0.2.255"), Some("the network broadcast address"));
        assert_eq!(r("10.0.2.4"), None);
        assert_eq!(r("10.0.2.238"), None);
    }

    #[test]
    fn regions_list_their_zones() {
        let azs = region_azs("ap-northeast-2").unwrap();
        assert_eq!(
            azs,
            [
                "ap-northeast-2a",
                "ap-northeast-2b",
                "ap-northeast-2c",
                "ap-northeast-2d"
            ]
        );
        assert!(region_azs("mars-north-1").is_none());
    }

    #[test]
    fn az_ids_name_the_region_short_and_number_the_zone() {
        assert_eq!(az_id("ap-northeast-2a"), "apne2-az1");
        assert_eq!(az_id("ap-northeast-2c"), "apne2-az3");
        assert_eq!(az_id("us-east-1f"), "use1-az6");
        assert_eq!(az_id("eu-central-1b"), "euc1-az2");
    }

    #[test]
    fn rfc1918_blocks() {
        assert!(is_rfc1918("10.0.0.0/16".parse().unwrap()));
        assert!(is_rfc1918("172.31.0.0/16".parse().unwrap()));
        assert!(is_rfc1918("192.168.0.0/20".parse().unwrap()));
        assert!(!is_rfc1918("172.32.0.0/16".parse().unwrap()));
        assert!(!is_rfc1918("100.64.0.0/16".parse().unwrap()));
    }

    #[test]
    fn stable_hash_is_stable() {
        assert_eq!(
            stable_hash(&["handson", "web"]),
            stable_hash(&["handson", "web"])
        );
        assert_ne!(
            stable_hash(&["handson", "web"]),
            stable_hash(&["handsonweb"])
        );
    }

    #[test]
    fn the_usable_range_leaves_out_the_five_reserved_addresses() {
        assert_eq!(
            usable_range("10.0.2.0/24".parse().unwrap()),
            "10.0.2.4 to 10.0.2.254"
        );
        assert_eq!(
            usable_range("10.0.0.16/28".parse().unwrap()),
            "10.0.0.20 to 10.0.0.30"
        );
    }

    #[test]
    fn special_ranges_are_found_by_any_overlap() {
        let special =
            |s: &str| special_block(s.parse().unwrap()).map(|(b, why)| (b.to_string(), why));
        assert_eq!(
            special("127.0.0.5/32"),
            Some(("127.0.0.0/8".into(), "the loopback range"))
        );
        // A block that holds a special range overlaps it too.
        assert_eq!(
            special("168.0.0.0/7"),
            Some(("169.254.0.0/16".into(), "the link-local range"))
        );
        assert_eq!(special("10.0.0.0/16"), None);
        assert_eq!(special("203.0.113.0/24"), None);
    }

    #[test]
    fn rds_endpoint_ids_are_twelve_lowercase_characters_per_lab() {
        let id = endpoint_id("handson");
        assert_eq!(id.len(), 12);
        assert!(id.starts_with('c'), "{id}");
        assert!(
            id.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{id}"
        );
        assert_eq!(id, endpoint_id("handson"));
        assert_ne!(id, endpoint_id("copy"));
    }
}
