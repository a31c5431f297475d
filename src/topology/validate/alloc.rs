//! The addresses written as `auto`, handed out once every fixed one is known.
//!
//! A running lab's addresses are sticky: an object that already holds one keeps it (AWS
//! never renumbers a running network interface, and an Elastic IP is its address), so an
//! edit that adds an object before it in the file does not move it. Those addresses are
//! reserved for their owners; new objects get the lowest addresses nobody holds.

use super::Validator;
use crate::topology::model::{Allocations, Subnet};
use crate::topology::well_known::INTERNET_RESOLVER;
use ipnet::Ipv4Net;
use serde_saphyr::Location;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

/// First host offset handed out from the public pool (198.51.100.10, as in the docs).
const PUBLIC_POOL_START: u32 = 10;

/// An address as the file gives it: fixed (checked, and claimed if private), or `auto`.
#[derive(Clone, Copy)]
pub(super) enum Address {
    Fixed(Ipv4Addr),
    Auto,
}

/// Hands out `auto` addresses in file order: private ones from each subnet's first
/// usable address (.4) up, public ones from the pool's tenth address up.
pub(super) struct Allocator<'k> {
    next_private: HashMap<Ipv4Net, u32>,
    pool: Ipv4Net,
    pool_cursor: u32,
    public_used: HashSet<Ipv4Addr>,
    /// What a running lab's objects already hold (empty for a lab being built).
    kept: &'k Allocations,
    kept_private: HashSet<Ipv4Addr>,
}

impl<'k> Allocator<'k> {
    pub(super) fn new(
        pool: Ipv4Net,
        internet: impl Iterator<Item = Ipv4Addr>,
        kept: &'k Allocations,
    ) -> Self {
        let mut public_used: HashSet<Ipv4Addr> = internet.collect();
        public_used.insert(INTERNET_RESOLVER);
        Allocator {
            next_private: HashMap::new(),
            pool,
            pool_cursor: u32::from(pool.network()) + PUBLIC_POOL_START,
            public_used,
            kept,
            kept_private: kept.private.values().copied().collect(),
        }
    }

    /// Takes a fixed public address (an Elastic IP's); false when it is already taken.
    pub(super) fn claim_public(&mut self, ip: Ipv4Addr) -> bool {
        self.public_used.insert(ip)
    }

    /// The private address of `owner` in subnet `s`: its fixed one, or the next free one.
    pub(super) fn private(
        &mut self,
        v: &mut Validator,
        address: Address,
        s: &Subnet,
        owner: &str,
        at: Location,
    ) -> Ipv4Addr {
        if let Address::Fixed(ip) = address {
            return ip;
        }
        if let Some(&ip) = self.kept.private.get(owner)
            && s.cidr.contains(&ip)
            && !v.used_ips.contains_key(&ip)
        {
            v.used_ips.insert(ip, owner.to_string());
            return ip;
        }
        let last = u32::from(s.cidr.broadcast()) - 1;
        let cursor = self
            .next_private
            .entry(s.cidr)
            .or_insert(u32::from(s.cidr.network()) + 4);
        while *cursor <= last
            && (v.used_ips.contains_key(&Ipv4Addr::from(*cursor))
                || self.kept_private.contains(&Ipv4Addr::from(*cursor)))
        {
            *cursor += 1;
        }
        if *cursor > last {
            v.err(
                at,
                format!("subnet `{}` ({}) has no free address left", s.name, s.cidr),
                "use a larger subnet (a smaller prefix length)",
            );
            return Ipv4Addr::UNSPECIFIED;
        }
        let ip = Ipv4Addr::from(*cursor);
        v.used_ips.insert(ip, owner.to_string());
        ip
    }

    /// The public address of `owner`: the one it holds, or the next free one of the pool.
    pub(super) fn public(&mut self, v: &mut Validator, owner: &str, at: Location) -> Ipv4Addr {
        if let Some(&ip) = self.kept.public.get(owner)
            && self.pool.contains(&ip)
            && self.public_used.insert(ip)
        {
            return ip;
        }
        let last = u32::from(self.pool.broadcast()) - 1;
        while self.pool_cursor <= last
            && (self.public_used.contains(&Ipv4Addr::from(self.pool_cursor))
                || self.kept.holds_public(Ipv4Addr::from(self.pool_cursor)))
        {
            self.pool_cursor += 1;
        }
        if self.pool_cursor > last {
            v.err(
                at,
                format!("the public IP pool {} has no free address left", self.pool),
                "use a larger `public_ip_pool`",
            );
            return Ipv4Addr::UNSPECIFIED;
        }
        let ip = Ipv4Addr::from(self.pool_cursor);
        self.public_used.insert(ip);
        ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::diag::Diagnostics;

    fn validator() -> Validator {
        Validator {
            d: Diagnostics::default(),
            used_ips: HashMap::new(),
        }
    }

    fn subnet(cidr: &str) -> Subnet {
        Subnet {
            name: "tiny".into(),
            az: "ap-northeast-2a".into(),
            cidr: cidr.parse().unwrap(),
            route_table: 0,
            public: false,
            flow_logs: None,
        }
    }

    fn errors(v: &Validator) -> Vec<String> {
        v.d.errors().map(|e| e.message.clone()).collect()
    }

    #[test]
    fn auto_private_addresses_skip_the_reserved_and_the_claimed_ones() {
        let mut v = validator();
        let claimed: Ipv4Addr = "10.0.0.5".parse().unwrap();
        v.used_ips.insert(claimed, "instance `web`".into());
        let none = Allocations::default();
        let mut alloc = Allocator::new(
            "198.51.100.0/24".parse().unwrap(),
            std::iter::empty(),
            &none,
        );
        let s = subnet("10.0.0.0/28");
        let mut next = |v: &mut Validator, address| {
            alloc
                .private(v, address, &s, "x", Location::UNKNOWN)
                .to_string()
        };
        assert_eq!(next(&mut v, Address::Auto), "10.0.0.4");
        assert_eq!(next(&mut v, Address::Auto), "10.0.0.6");
        assert_eq!(next(&mut v, Address::Fixed(claimed)), "10.0.0.5");
        // .7 to .14 are left; .15 is the broadcast address.
        let rest: Vec<String> = (0..8).map(|_| next(&mut v, Address::Auto)).collect();
        assert_eq!(rest.last().unwrap(), "10.0.0.14");
        assert_eq!(errors(&v), Vec::<String>::new());
        assert_eq!(next(&mut v, Address::Auto), "0.0.0.0");
        assert_eq!(
            errors(&v),
            ["subnet `tiny` (10.0.0.0/28) has no free address left"]
        );
    }

    #[test]
    fn auto_public_addresses_skip_internet_hosts_the_resolver_and_elastic_ips() {
        let mut v = validator();
        // The pool's tenth address is .42; the internet's resolver is 192.0.2.53.
        let host: Ipv4Addr = "192.0.2.42".parse().unwrap();
        let none = Allocations::default();
        let mut alloc = Allocator::new("192.0.2.32/27".parse().unwrap(), [host].into_iter(), &none);
        assert!(alloc.claim_public("192.0.2.43".parse().unwrap()));
        assert!(!alloc.claim_public("192.0.2.43".parse().unwrap()));
        let got: Vec<String> = (0..18)
            .map(|i| {
                alloc
                    .public(&mut v, &format!("o{i}"), Location::UNKNOWN)
                    .to_string()
            })
            .collect();
        assert_eq!(got.first().unwrap(), "192.0.2.44");
        assert_eq!(got.last().unwrap(), "192.0.2.62");
        assert!(!got.contains(&"192.0.2.53".to_string()));
        assert_eq!(errors(&v), Vec::<String>::new());
        assert_eq!(
            alloc.public(&mut v, "last", Location::UNKNOWN).to_string(),
            "0.0.0.0"
        );
        assert_eq!(
            errors(&v),
            ["the public IP pool 192.0.2.32/27 has no free address left"]
        );
    }

    #[test]
    fn kept_addresses_stay_with_their_owners_and_new_owners_get_free_ones() {
        let mut v = validator();
        let mut kept = Allocations::default();
        kept.private
            .insert("nat".into(), "10.0.0.4".parse().unwrap());
        kept.public
            .insert("web".into(), "198.51.100.10".parse().unwrap());
        let mut alloc = Allocator::new(
            "198.51.100.0/24".parse().unwrap(),
            std::iter::empty(),
            &kept,
        );
        let s = subnet("10.0.0.0/28");
        // A new instance comes first in the file; the NAT gateway keeps .4 all the same.
        let new = alloc.private(&mut v, Address::Auto, &s, "new", Location::UNKNOWN);
        let nat = alloc.private(&mut v, Address::Auto, &s, "nat", Location::UNKNOWN);
        assert_eq!(
            (new.to_string(), nat.to_string()),
            ("10.0.0.5".into(), "10.0.0.4".into())
        );
        let new_public = alloc.public(&mut v, "other", Location::UNKNOWN);
        let web_public = alloc.public(&mut v, "web", Location::UNKNOWN);
        assert_eq!(new_public.to_string(), "198.51.100.11");
        assert_eq!(web_public.to_string(), "198.51.100.10");
        assert_eq!(errors(&v), Vec::<String>::new());
    }
}
