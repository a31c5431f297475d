//! CIDR arithmetic for `vpclab cidr` (the write-up's section 2): what a block holds, how many
//! hosts it gives classically and on AWS, subnetting (split) and supernetting (merge).
//!
//! Everything here is pure: it takes blocks and returns data (serialisable for `--json`);
//! `src/cli/cidr.rs` only parses arguments and prints.

use crate::topology::aws::{is_rfc1918, reserved_reason};
use ipnet::{Ipv4Net, Ipv4Subnets};
use serde::Serialize;
use std::net::Ipv4Addr;

/// The private ranges of RFC 1918 (the write-up's table), to name the one a block lies in.
pub const RFC1918_BLOCKS: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

/// AWS's limits on a VPC or subnet IPv4 block (the write-up: "/16 ~ /28 only").
pub const AWS_MIN_PREFIX: u8 = 16;
pub const AWS_MAX_PREFIX: u8 = 28;

/// A block as the user wrote it: the address they typed and the network it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The text as given (trimmed).
    pub input: String,
    /// The address part as written, host bits included.
    pub addr: Ipv4Addr,
    /// The network: the address with its host bits cleared.
    pub net: Ipv4Net,
}

impl Block {
    /// A block that is exactly a network (no host bits), as labs hold them.
    pub fn exact(net: Ipv4Net) -> Block {
        Block {
            input: net.to_string(),
            addr: net.network(),
            net: net.trunc(),
        }
    }

    /// True when the address part is not the network address (`10.0.0.5/16`).
    pub fn has_host_bits(&self) -> bool {
        self.addr != self.net.network()
    }
}

/// Parses `a.b.c.d/n` (or `a.b.c.d/255.255.0.0`), keeping any host bits so they can be
/// explained. Errors say what is wrong and how to write it instead.
pub fn parse_block(text: &str) -> Result<Block, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("the block is empty: write an IPv4 CIDR block like 10.0.0.0/16".into());
    }
    if s.contains(':') {
        return Err(format!(
            "`{s}` looks like IPv6; `vpclab cidr` works on IPv4 blocks like 10.0.0.0/16"
        ));
    }
    let Some((addr_text, prefix_text)) = s.split_once('/') else {
        return Err(match parse_addr(s) {
            Ok(a) => format!(
                "`{s}` has no prefix length: add one after a slash, e.g. `{a}/32` for this \
                 single address or `{}` for the /24 around it",
                Ipv4Net::new(a, 24).unwrap().trunc()
            ),
            Err(_) => format!(
                "`{s}` is not a CIDR block: write an address, a slash and a prefix length, \
                 like 10.0.0.0/16"
            ),
        });
    };
    let addr = parse_addr(addr_text)?;
    let prefix = if prefix_text.contains('.') {
        let mask = parse_addr(prefix_text).map_err(|why| format!("netmask {why}"))?;
        Ipv4Net::with_netmask(addr, mask)
            .map_err(|_| {
                format!(
                    "{mask} is not a netmask: a netmask is ones followed by zeros \
                     (255.255.255.0 is /24, 255.255.240.0 is /20)"
                )
            })?
            .prefix_len()
    } else {
        parse_prefix(prefix_text)?
    };
    let net = Ipv4Net::new(addr, prefix).expect("prefix checked").trunc();
    Ok(Block {
        input: s.to_string(),
        addr,
        net,
    })
}

/// Parses a block that must be a network address already (for split and merge, where a
/// typo in the address would otherwise silently change the blocks worked on).
pub fn parse_exact(text: &str) -> Result<Ipv4Net, String> {
    let b = parse_block(text)?;
    if b.has_host_bits() {
        return Err(host_bits_message(&b));
    }
    Ok(b.net)
}

/// Explains a block whose address has host bits set.
pub fn host_bits_message(b: &Block) -> String {
    format!(
        "`{}` has host bits set: {} is an address inside the network {}; a /{} block starts \
         at {}, so write `{}`",
        b.input,
        b.addr,
        b.net,
        b.net.prefix_len(),
        b.net.network(),
        b.net
    )
}

/// Parses a prefix length, `24` or `/24`, 0 to 32.
pub fn parse_prefix(text: &str) -> Result<u8, String> {
    let t = text.trim();
    let t = t.strip_prefix('/').unwrap_or(t);
    if t.is_empty() {
        return Err("the prefix length is missing: put 0 to 32 after the slash, e.g. /16".into());
    }
    if !t.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "prefix length `{t}` is not a number: it counts the network bits, 0 to 32 (e.g. /24)"
        ));
    }
    match t.parse::<u32>() {
        Ok(p) if p <= 32 => Ok(p as u8),
        _ => Err(format!(
            "prefix length /{t} is too long: an IPv4 address has 32 bits, so the prefix is /0 \
             to /32 (AWS VPCs and subnets use /{AWS_MIN_PREFIX} to /{AWS_MAX_PREFIX})"
        )),
    }
}

/// Parses a dotted IPv4 address, saying which part is wrong.
fn parse_addr(s: &str) -> Result<Ipv4Addr, String> {
    if let Ok(a) = s.parse::<Ipv4Addr>() {
        return Ok(a);
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return Err(format!(
            "`{s}` has {} part(s): an IPv4 address is 4 numbers separated by dots, like 10.0.0.0",
            parts.len()
        ));
    }
    for p in parts {
        if p.is_empty() {
            return Err(format!("`{s}` has an empty part between dots"));
        }
        if !p.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!("`{s}`: `{p}` is not a number"));
        }
        if p.len() > 1 && p.starts_with('0') {
            return Err(format!(
                "`{s}`: `{p}` has a leading zero, which some tools read as octal; write it \
                 without"
            ));
        }
        if p.parse::<u32>().is_ok_and(|n| n > 255) || p.len() > 3 {
            return Err(format!(
                "`{s}`: `{p}` is out of range: each of the 4 numbers is 0 to 255"
            ));
        }
    }
    Err(format!("`{s}` is not an IPv4 address"))
}

/// Number of addresses in a block: 2^(32 - prefix).
pub fn size(net: Ipv4Net) -> u64 {
    1u64 << (32 - u32::from(net.prefix_len()))
}

/// Hosts usable in classic networking: all but the network and broadcast addresses, except
/// that a /31 (a point-to-point link, RFC 3021) uses both and a /32 is the one host.
pub fn usable_classic(net: Ipv4Net) -> u64 {
    match net.prefix_len() {
        32 => 1,
        31 => 2,
        _ => size(net) - 2,
    }
}

/// The first and last classically usable host.
pub fn classic_range(net: Ipv4Net) -> (Ipv4Addr, Ipv4Addr) {
    if net.prefix_len() >= 31 {
        (net.network(), net.broadcast())
    } else {
        (offset(net, 1), offset(net, size(net) - 2))
    }
}

/// An address reserved in a subnet and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reserved {
    pub address: Ipv4Addr,
    pub reason: &'static str,
}

/// The addresses AWS reserves in a subnet of this block: the first four and the last (fewer
/// in a block too small to have five distinct addresses).
pub fn aws_reserved(net: Ipv4Net) -> Vec<Reserved> {
    let n = size(net);
    let mut out: Vec<Reserved> = Vec::new();
    let candidates = (0..4u64)
        .filter(|&i| i < n)
        .map(|i| offset(net, i))
        .chain([net.broadcast()]);
    for address in candidates {
        if out.iter().any(|r| r.address == address) {
            continue;
        }
        if let Some(reason) = reserved_reason(net, address) {
            out.push(Reserved { address, reason });
        }
    }
    out
}

/// Hosts AWS lets you assign in a subnet of this block.
pub fn usable_aws(net: Ipv4Net) -> u64 {
    size(net) - aws_reserved(net).len() as u64
}

/// The first and last address AWS lets you assign, if any.
pub fn aws_range(net: Ipv4Net) -> Option<(Ipv4Addr, Ipv4Addr)> {
    (usable_aws(net) > 0).then(|| (offset(net, 4), offset(net, size(net) - 2)))
}

/// The RFC 1918 block containing `net`, if it is private.
pub fn rfc1918_block(net: Ipv4Net) -> Option<Ipv4Net> {
    if !is_rfc1918(net) {
        return None;
    }
    RFC1918_BLOCKS
        .iter()
        .map(|b| b.parse::<Ipv4Net>().unwrap())
        .find(|b| b.contains(&net))
}

/// RFC 1918 blocks that `net` overlaps without being inside (e.g. 172.0.0.0/8).
pub fn rfc1918_partial(net: Ipv4Net) -> Vec<Ipv4Net> {
    RFC1918_BLOCKS
        .iter()
        .map(|b| b.parse::<Ipv4Net>().unwrap())
        .filter(|b| net.contains(b) && *b != net)
        .collect()
}

/// Whether AWS accepts the block as a VPC or subnet CIDR (by size), and why.
pub fn aws_block(net: Ipv4Net) -> (bool, String) {
    let p = net.prefix_len();
    if p < AWS_MIN_PREFIX {
        (
            false,
            format!(
                "/{p} is too large: AWS VPC and subnet blocks are /{AWS_MIN_PREFIX} \
                 (65,536 addresses) at most"
            ),
        )
    } else if p > AWS_MAX_PREFIX {
        (
            false,
            format!(
                "/{p} is too small: AWS VPC and subnet blocks are /{AWS_MAX_PREFIX} \
                 (16 addresses) at least"
            ),
        )
    } else {
        (
            true,
            format!("/{p} is within /{AWS_MIN_PREFIX} to /{AWS_MAX_PREFIX}"),
        )
    }
}

/// The address `i` places after the start of `net` (within the block).
fn offset(net: Ipv4Net, i: u64) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + i as u32)
}

/// What `vpclab cidr BLOCK` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    /// The text given.
    pub input: String,
    pub cidr: Ipv4Net,
    pub prefix_len: u8,
    pub network: Ipv4Addr,
    pub netmask: Ipv4Addr,
    /// The host mask (Cisco's "wildcard"): the bits that vary inside the block.
    pub wildcard: Ipv4Addr,
    pub broadcast: Ipv4Addr,
    /// First and last address of the block (network to broadcast).
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    pub addresses: u64,
    pub usable_classic: u64,
    pub first_usable_classic: Ipv4Addr,
    pub last_usable_classic: Ipv4Addr,
    pub usable_aws: u64,
    pub first_usable_aws: Option<Ipv4Addr>,
    pub last_usable_aws: Option<Ipv4Addr>,
    pub aws_reserved: Vec<Reserved>,
    pub rfc1918: bool,
    pub rfc1918_block: Option<Ipv4Net>,
    /// RFC 1918 blocks this block contains but is not inside (it mixes private and public).
    pub rfc1918_partial: Vec<Ipv4Net>,
    pub aws_block_ok: bool,
    pub aws_block_note: String,
    /// Set when the input had host bits (`10.0.2.238/24`): that address within the block.
    pub host: Option<Host>,
}

/// The address typed with host bits set, placed within its block.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub address: Ipv4Addr,
    /// Its position in the block, 0 being the network address.
    pub index: u64,
    /// Why AWS would refuse to assign it, if it would.
    pub aws_reserved: Option<&'static str>,
    /// Whether it is a classically usable host address.
    pub usable_classic: bool,
}

pub fn info(b: &Block) -> Info {
    let net = b.net;
    let (classic_first, classic_last) = classic_range(net);
    let aws = aws_range(net);
    let (aws_block_ok, aws_block_note) = aws_block(net);
    let rfc = rfc1918_block(net);
    let host = b.has_host_bits().then(|| {
        let index = u64::from(u32::from(b.addr) - u32::from(net.network()));
        Host {
            address: b.addr,
            index,
            aws_reserved: reserved_reason(net, b.addr),
            usable_classic: b.addr >= classic_first && b.addr <= classic_last,
        }
    });
    Info {
        input: b.input.clone(),
        cidr: net,
        prefix_len: net.prefix_len(),
        network: net.network(),
        netmask: net.netmask(),
        wildcard: net.hostmask(),
        broadcast: net.broadcast(),
        first: net.network(),
        last: net.broadcast(),
        addresses: size(net),
        usable_classic: usable_classic(net),
        first_usable_classic: classic_first,
        last_usable_classic: classic_last,
        usable_aws: usable_aws(net),
        first_usable_aws: aws.map(|r| r.0),
        last_usable_aws: aws.map(|r| r.1),
        aws_reserved: aws_reserved(net),
        rfc1918: rfc.is_some(),
        rfc1918_block: rfc,
        rfc1918_partial: rfc1918_partial(net),
        aws_block_ok,
        aws_block_note,
        host,
    }
}

/// One subnet of a split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubnetLine {
    pub cidr: Ipv4Net,
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    pub first_usable_aws: Option<Ipv4Addr>,
    pub last_usable_aws: Option<Ipv4Addr>,
    pub usable_aws: u64,
}

/// What `vpclab cidr split` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Split {
    pub block: Ipv4Net,
    pub prefix_len: u8,
    /// How many subnets the block splits into: 2^(new prefix - old prefix).
    pub count: u64,
    pub addresses_each: u64,
    pub usable_classic_each: u64,
    pub usable_aws_each: u64,
    /// Whether AWS accepts subnets of this size.
    pub aws_block_ok: bool,
    pub aws_block_note: String,
    /// How many are listed in `subnets` (all of them unless a limit cut the list).
    pub shown: u64,
    pub truncated: bool,
    pub subnets: Vec<SubnetLine>,
}

/// The prefix that splits `block` into at least `n` equal subnets.
pub fn prefix_for_count(block: Ipv4Net, n: u64) -> Result<u8, String> {
    if n == 0 {
        return Err("can't split a block into 0 subnets: ask for 1 or more".into());
    }
    let bits = 64 - (n - 1).leading_zeros();
    let p = u32::from(block.prefix_len()) + bits;
    if p > 32 {
        return Err(format!(
            "{block} has only {} addresses, so it can't be split into {n} subnets",
            size(block)
        ));
    }
    Ok(p as u8)
}

/// Subnetting: `block` cut into blocks of `/prefix`, listing at most `limit` of them.
pub fn split(block: Ipv4Net, prefix: u8, limit: Option<u64>) -> Result<Split, String> {
    let old = block.prefix_len();
    if prefix > 32 {
        return Err(format!(
            "/{prefix} is not a prefix length: IPv4 prefixes go from /0 to /32"
        ));
    }
    if prefix < old {
        return Err(format!(
            "can't split {block} into /{prefix} blocks: a /{prefix} is bigger than the /{old} \
             itself. Splitting makes smaller blocks, so the new prefix must be /{old} to /32; \
             to combine blocks into a bigger one use `vpclab cidr merge`"
        ));
    }
    let count = 1u64 << (prefix - old);
    let shown = limit.map_or(count, |l| l.min(count));
    let subnets: Vec<SubnetLine> = block
        .subnets(prefix)
        .expect("prefix checked")
        .take(shown as usize)
        .map(|net| {
            let aws = aws_range(net);
            SubnetLine {
                cidr: net,
                first: net.network(),
                last: net.broadcast(),
                first_usable_aws: aws.map(|r| r.0),
                last_usable_aws: aws.map(|r| r.1),
                usable_aws: usable_aws(net),
            }
        })
        .collect();
    let sample = Ipv4Net::new(block.network(), prefix).unwrap();
    let (aws_block_ok, aws_block_note) = aws_block(sample);
    Ok(Split {
        block,
        prefix_len: prefix,
        count,
        addresses_each: size(sample),
        usable_classic_each: usable_classic(sample),
        usable_aws_each: usable_aws(sample),
        aws_block_ok,
        aws_block_note,
        shown,
        truncated: shown < count,
        subnets,
    })
}

/// An inclusive address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Range {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    pub addresses: u64,
}

impl Range {
    fn new(first: Ipv4Addr, last: Ipv4Addr) -> Range {
        let addresses = u64::from(u32::from(last) - u32::from(first)) + 1;
        Range {
            first,
            last,
            addresses,
        }
    }
}

/// What `vpclab cidr merge` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Merge {
    pub inputs: Vec<Ipv4Net>,
    /// True when the inputs cover exactly one CIDR block.
    pub mergeable: bool,
    /// That block.
    pub supernet: Option<Ipv4Net>,
    /// The addresses of the inputs as the fewest CIDR blocks (e.g. for a route table).
    pub union: Vec<Ipv4Net>,
    pub union_addresses: u64,
    /// Why the inputs are not one block (empty when mergeable).
    pub reasons: Vec<String>,
    /// Remarks that don't prevent merging: duplicates, blocks inside other blocks.
    pub notes: Vec<String>,
    /// Address ranges between the inputs that none of them holds.
    pub gaps: Vec<Range>,
    /// The smallest single block holding every input.
    pub covering: Ipv4Net,
    pub covering_addresses: u64,
    /// Addresses the covering block holds beyond the inputs, and those as CIDR blocks.
    pub extra_addresses: u64,
    pub extra: Vec<Ipv4Net>,
}

/// The smallest CIDR block containing both addresses.
fn covering_block(first: Ipv4Addr, last: Ipv4Addr) -> Ipv4Net {
    let mut net = Ipv4Net::new(first, 32).unwrap();
    while !net.contains(&last) {
        net = net
            .supernet()
            .expect("0.0.0.0/0 contains everything")
            .trunc();
    }
    net
}

/// Every block of size `/prefix` that `addr` lies in or starts right after (for naming the
/// aligned blocks near a misaligned range).
fn aligned_neighbours(addr: Ipv4Addr, prefix: u8) -> Vec<Ipv4Net> {
    let here = Ipv4Net::new(addr, prefix).unwrap().trunc();
    let mut out = vec![here];
    if let Some(next) = u32::from(here.broadcast()).checked_add(1) {
        out.push(Ipv4Net::new(Ipv4Addr::from(next), prefix).unwrap());
    }
    out
}

/// Supernetting: whether the blocks together form exactly one CIDR block, and if not, why
/// and what the smallest covering block would add.
pub fn merge(inputs: &[Ipv4Net]) -> Merge {
    assert!(!inputs.is_empty(), "merge needs at least one block");
    let nets: Vec<Ipv4Net> = inputs.iter().map(|n| n.trunc()).collect();
    let mut notes = Vec::new();
    let mut distinct: Vec<Ipv4Net> = Vec::new();
    for n in &nets {
        if !distinct.contains(n) {
            distinct.push(*n);
        } else {
            let note = format!("{n} is given more than once");
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
    }
    for (i, a) in distinct.iter().enumerate() {
        for b in &distinct[..i] {
            let (inner, outer) = if b.contains(a) { (a, b) } else { (b, a) };
            if outer.contains(inner) {
                notes.push(format!(
                    "{inner} lies inside {outer}, so it adds no addresses"
                ));
            }
        }
    }
    let union = Ipv4Net::aggregate(&nets);
    let union_addresses: u64 = union.iter().map(|n| size(*n)).sum();
    let first = union[0].network();
    let last = union[union.len() - 1].broadcast();
    let covering = covering_block(first, last);

    // Stretches between the union's blocks that no input holds (aggregate leaves
    // neighbouring blocks apart when they can't form one block, so skip those).
    let mut gaps = Vec::new();
    let mut gap_between = Vec::new();
    for w in union.windows(2) {
        let from = u32::from(w[0].broadcast()) + 1;
        let to = u32::from(w[1].network());
        if from < to {
            gaps.push(Range::new(Ipv4Addr::from(from), Ipv4Addr::from(to - 1)));
            gap_between.push((w[0], w[1]));
        }
    }

    // What the covering block holds beyond the union: the stretches before, between and
    // after the union's blocks, each written as CIDR blocks.
    let mut extra = Vec::new();
    let mut cursor = Some(u32::from(covering.network()));
    for n in &union {
        let start = u32::from(n.network());
        if let Some(c) = cursor
            && c < start
        {
            extra.extend(Ipv4Subnets::new(
                Ipv4Addr::from(c),
                Ipv4Addr::from(start - 1),
                0,
            ));
        }
        cursor = u32::from(n.broadcast()).checked_add(1);
    }
    if let Some(c) = cursor
        && c <= u32::from(covering.broadcast())
    {
        extra.extend(Ipv4Subnets::new(Ipv4Addr::from(c), covering.broadcast(), 0));
    }
    let extra_addresses = size(covering) - union_addresses;

    let mergeable = union.len() == 1;
    let mut reasons = Vec::new();
    if !mergeable {
        for (g, (a, b)) in gaps.iter().zip(&gap_between) {
            reasons.push(format!(
                "not adjacent: {} - {} ({} address{}) between {} and {} is in none of the blocks",
                g.first,
                g.last,
                g.addresses,
                if g.addresses == 1 { "" } else { "es" },
                a,
                b
            ));
        }
        if gaps.is_empty() {
            let n = union_addresses;
            if !n.is_power_of_two() {
                reasons.push(format!(
                    "together they are {n} contiguous addresses ({first} - {last}), and a CIDR \
                     block always holds a power of two (... 256, 512, 1024 ...)"
                ));
            } else {
                let p = (32 - n.trailing_zeros()) as u8;
                let near = aligned_neighbours(first, p);
                let near: Vec<String> = near.iter().map(|n| n.to_string()).collect();
                reasons.push(format!(
                    "not aligned: together they are {n} contiguous addresses ({first} - {last}), \
                     the size of a /{p}, but a /{p} must start at a multiple of {n} addresses \
                     and {first} is not one (the /{p} blocks there are {})",
                    near.join(" and ")
                ));
                if let [a, b] = union[..]
                    && a.prefix_len() == b.prefix_len()
                {
                    let half = |x: Ipv4Net| {
                        let parent = x.supernet().unwrap().trunc();
                        let which = if parent.network() == x.network() {
                            "lower"
                        } else {
                            "upper"
                        };
                        format!("{x} is the {which} half of {parent}")
                    };
                    reasons.push(format!(
                        "{a} and {b} are neighbours but not siblings: {}, {}",
                        half(a),
                        half(b)
                    ));
                }
            }
        }
    }

    Merge {
        inputs: inputs.to_vec(),
        mergeable,
        supernet: mergeable.then(|| union[0]),
        union,
        union_addresses,
        reasons,
        notes,
        gaps,
        covering,
        covering_addresses: size(covering),
        extra_addresses,
        extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<Ipv4Net> {
        list.iter().map(|s| net(s)).collect()
    }

    #[test]
    fn slash_24_numbers_match_the_write_up() {
        let i = info(&parse_block("192.168.0.0/24").unwrap());
        assert_eq!(i.network, ip("192.168.0.0"));
        assert_eq!(i.netmask, ip("255.255.255.0"));
        assert_eq!(i.wildcard, ip("0.0.0.255"));
        assert_eq!(i.broadcast, ip("192.168.0.255"));
        assert_eq!((i.first, i.last), (ip("192.168.0.0"), ip("192.168.0.255")));
        assert_eq!(i.addresses, 256);
        assert_eq!(i.usable_classic, 254);
        assert_eq!(
            (i.first_usable_classic, i.last_usable_classic),
            (ip("192.168.0.1"), ip("192.168.0.254"))
        );
        assert_eq!(i.usable_aws, 251);
        assert_eq!(i.first_usable_aws, Some(ip("192.168.0.4")));
        assert_eq!(i.last_usable_aws, Some(ip("192.168.0.254")));
        let reserved: Vec<(Ipv4Addr, &str)> = i
            .aws_reserved
            .iter()
            .map(|r| (r.address, r.reason))
            .collect();
        assert_eq!(
            reserved,
            [
                (ip("192.168.0.0"), "the network address"),
                (ip("192.168.0.1"), "reserved for the VPC router"),
                (ip("192.168.0.2"), "reserved for the Amazon DNS server"),
                (ip("192.168.0.3"), "reserved by AWS for future use"),
                (ip("192.168.0.255"), "the network broadcast address"),
            ]
        );
        assert!(i.rfc1918);
        assert_eq!(i.rfc1918_block, Some(net("192.168.0.0/16")));
        assert!(i.aws_block_ok);
        assert!(i.host.is_none());
    }

    #[test]
    fn slash_16_matches_the_write_up_vpc() {
        let i = info(&parse_block("10.0.0.0/16").unwrap());
        assert_eq!(i.addresses, 65_536);
        assert_eq!(i.usable_classic, 65_534);
        assert_eq!(i.usable_aws, 65_531);
        assert_eq!(i.broadcast, ip("10.0.255.255"));
        assert_eq!(i.aws_reserved[4].address, ip("10.0.255.255"));
        assert!(i.aws_block_ok);
    }

    #[test]
    fn slash_28_is_the_smallest_aws_block() {
        let n = net("10.0.0.16/28");
        assert_eq!(size(n), 16);
        assert_eq!(usable_classic(n), 14);
        assert_eq!(usable_aws(n), 11);
        assert_eq!(aws_range(n), Some((ip("10.0.0.20"), ip("10.0.0.30"))));
        assert_eq!(aws_reserved(n)[4].address, ip("10.0.0.31"));
        assert!(aws_block(n).0);
        assert!(!aws_block(net("10.0.0.0/29")).0);
        assert!(!aws_block(net("10.0.0.0/15")).0);
        assert!(aws_block(net("10.0.0.0/16")).0);
    }

    #[test]
    fn slash_31_and_32_edge_cases() {
        let p2p = net("10.0.0.4/31");
        assert_eq!(size(p2p), 2);
        assert_eq!(usable_classic(p2p), 2);
        assert_eq!(classic_range(p2p), (ip("10.0.0.4"), ip("10.0.0.5")));
        assert_eq!(usable_aws(p2p), 0);
        assert_eq!(aws_range(p2p), None);
        assert_eq!(aws_reserved(p2p).len(), 2);

        let one = net("10.0.0.7/32");
        assert_eq!(size(one), 1);
        assert_eq!(usable_classic(one), 1);
        assert_eq!(classic_range(one), (ip("10.0.0.7"), ip("10.0.0.7")));
        assert_eq!(usable_aws(one), 0);
        assert_eq!(
            aws_reserved(one),
            [Reserved {
                address: ip("10.0.0.7"),
                reason: "the network address"
            }]
        );

        let four = net("10.0.0.8/30");
        assert_eq!(usable_classic(four), 2);
        assert_eq!(usable_aws(four), 0);
        assert_eq!(aws_reserved(four).len(), 4);

        let all = net("0.0.0.0/0");
        assert_eq!(size(all), 4_294_967_296);
        assert_eq!(usable_classic(all), 4_294_967_294);
        assert_eq!(usable_aws(all), 4_294_967_291);
    }

    #[test]
    fn host_bits_are_kept_and_explained() {
        let b = parse_block("10.0.0.5/16").unwrap();
        assert!(b.has_host_bits());
        assert_eq!(b.net, net("10.0.0.0/16"));
        assert_eq!(b.addr, ip("10.0.0.5"));
        let msg = parse_exact("10.0.0.5/16").unwrap_err();
        assert!(msg.contains("host bits"), "{msg}");
        assert!(msg.contains("`10.0.0.0/16`"), "{msg}");
        assert_eq!(parse_exact("10.0.0.0/16").unwrap(), net("10.0.0.0/16"));

        let i = info(&parse_block("10.0.2.3/24").unwrap());
        let h = i.host.unwrap();
        assert_eq!(h.index, 3);
        assert_eq!(h.aws_reserved, Some("reserved by AWS for future use"));
        assert!(h.usable_classic);
        let h = info(&parse_block("10.0.2.238/24").unwrap()).host.unwrap();
        assert_eq!((h.index, h.aws_reserved), (238, None));
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        let e = |s: &str| parse_block(s).unwrap_err();
        assert!(e("10.0.0.0").contains("no prefix length"));
        assert!(e("10.0.0.0").contains("10.0.0.0/32"));
        assert!(e("10.0.0.0/33").contains("/0 to /32"));
        assert!(e("10.0.0.0/").contains("missing"));
        assert!(e("10.0.0.0/x").contains("not a number"));
        assert!(e("10.0.0.300/16").contains("0 to 255"));
        assert!(e("10.0.0/16").contains("3 part"));
        assert!(e("10.0.0.010/16").contains("leading zero"));
        assert!(e("fd00::/8").contains("IPv6"));
        assert!(e("").contains("empty"));
        assert!(e("10.0.0.0/255.0.255.0").contains("not a netmask"));
        assert_eq!(
            parse_block("10.1.0.0/255.255.0.0").unwrap().net,
            net("10.1.0.0/16")
        );
        assert_eq!(parse_prefix("/24"), Ok(24));
        assert_eq!(parse_prefix("0"), Ok(0));
        assert!(parse_prefix("33").is_err());
        assert!(parse_prefix("-1").is_err());
    }

    #[test]
    fn rfc1918_detection() {
        assert_eq!(rfc1918_block(net("10.0.0.0/16")), Some(net("10.0.0.0/8")));
        assert_eq!(
            rfc1918_block(net("172.31.0.0/16")),
            Some(net("172.16.0.0/12"))
        );
        assert_eq!(
            rfc1918_block(net("192.168.10.0/24")),
            Some(net("192.168.0.0/16"))
        );
        assert_eq!(rfc1918_block(net("172.32.0.0/16")), None);
        assert_eq!(rfc1918_block(net("100.64.0.0/10")), None);
        assert_eq!(rfc1918_block(net("8.8.8.0/24")), None);
        assert_eq!(rfc1918_block(net("192.168.0.0/15")), None);
        assert_eq!(rfc1918_partial(net("172.0.0.0/8")), [net("172.16.0.0/12")]);
        assert_eq!(
            rfc1918_partial(net("192.168.0.0/15")),
            [net("192.168.0.0/16")]
        );
        assert!(rfc1918_partial(net("10.0.0.0/16")).is_empty());
    }

    #[test]
    fn split_slash_16_into_slash_24() {
        let s = split(net("10.0.0.0/16"), 24, None).unwrap();
        assert_eq!(s.count, 256);
        assert_eq!(s.subnets.len(), 256);
        assert!(!s.truncated);
        assert_eq!(s.addresses_each, 256);
        assert_eq!(s.usable_aws_each, 251);
        assert_eq!(s.subnets[0].cidr, net("10.0.0.0/24"));
        assert_eq!(s.subnets[0].last, ip("10.0.0.255"));
        assert_eq!(s.subnets[0].first_usable_aws, Some(ip("10.0.0.4")));
        assert_eq!(s.subnets[1].cidr, net("10.0.1.0/24"));
        assert_eq!(s.subnets[255].cidr, net("10.0.255.0/24"));
        assert_eq!(s.subnets[255].first, ip("10.0.255.0"));
        assert_eq!(s.subnets[255].last, ip("10.0.255.255"));
        assert_eq!(s.subnets[255].usable_aws, 251);
        assert!(s.aws_block_ok);
    }

    #[test]
    fn split_limits_and_errors() {
        let s = split(net("10.0.0.0/16"), 24, Some(10)).unwrap();
        assert_eq!((s.count, s.shown, s.subnets.len()), (256, 10, 10));
        assert!(s.truncated);
        assert_eq!(s.subnets[9].cidr, net("10.0.9.0/24"));

        let same = split(net("10.0.0.0/16"), 16, None).unwrap();
        assert_eq!(same.count, 1);
        assert_eq!(same.subnets[0].cidr, net("10.0.0.0/16"));

        let tiny = split(net("10.0.0.0/28"), 30, None).unwrap();
        assert_eq!(tiny.count, 4);
        assert!(!tiny.aws_block_ok);
        assert_eq!(tiny.usable_aws_each, 0);
        assert_eq!(tiny.subnets[3].cidr, net("10.0.0.12/30"));

        let huge = split(net("0.0.0.0/0"), 32, Some(2)).unwrap();
        assert_eq!(huge.count, 4_294_967_296);
        assert_eq!(huge.subnets[1].cidr, net("0.0.0.1/32"));

        let err = split(net("10.0.0.0/16"), 8, None).unwrap_err();
        assert!(err.contains("bigger than the /16"), "{err}");
        assert!(split(net("10.0.0.0/16"), 33, None).is_err());
    }

    #[test]
    fn prefix_for_a_number_of_subnets() {
        let b = net("10.0.0.0/16");
        assert_eq!(prefix_for_count(b, 1), Ok(16));
        assert_eq!(prefix_for_count(b, 2), Ok(17));
        assert_eq!(prefix_for_count(b, 4), Ok(18));
        assert_eq!(prefix_for_count(b, 5), Ok(19));
        assert_eq!(prefix_for_count(b, 256), Ok(24));
        assert!(prefix_for_count(b, 0).is_err());
        assert!(prefix_for_count(net("10.0.0.0/30"), 8).is_err());
    }

    #[test]
    fn merge_two_halves_into_their_parent() {
        let m = merge(&nets(&["10.0.0.0/24", "10.0.1.0/24"]));
        assert!(m.mergeable);
        assert_eq!(m.supernet, Some(net("10.0.0.0/23")));
        assert_eq!(m.union_addresses, 512);
        assert_eq!(m.covering, net("10.0.0.0/23"));
        assert_eq!(m.extra_addresses, 0);
        assert!(m.extra.is_empty() && m.reasons.is_empty() && m.gaps.is_empty());
    }

    #[test]
    fn merge_four_quarters_in_any_order() {
        let m = merge(&nets(&[
            "10.0.3.0/24",
            "10.0.1.0/24",
            "10.0.0.0/24",
            "10.0.2.0/24",
        ]));
        assert_eq!(m.supernet, Some(net("10.0.0.0/22")));
        assert_eq!(m.union_addresses, 1024);

        let m = merge(&nets(&["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/23"]));
        assert_eq!(m.supernet, Some(net("10.0.0.0/22")));
    }

    #[test]
    fn merge_with_a_contained_block_notes_it() {
        let m = merge(&nets(&["10.0.0.0/16", "10.0.1.0/24", "10.0.0.0/16"]));
        assert_eq!(m.supernet, Some(net("10.0.0.0/16")));
        assert_eq!(m.notes.len(), 2);
        assert!(
            m.notes
                .iter()
                .any(|n| n.contains("10.0.1.0/24 lies inside"))
        );
        assert!(m.notes.iter().any(|n| n.contains("more than once")));
    }

    #[test]
    fn merge_fails_when_not_adjacent() {
        let m = merge(&nets(&["10.0.0.0/24", "10.0.2.0/24"]));
        assert!(!m.mergeable);
        assert_eq!(m.supernet, None);
        assert_eq!(
            m.gaps,
            [Range {
                first: ip("10.0.1.0"),
                last: ip("10.0.1.255"),
                addresses: 256
            }]
        );
        assert!(m.reasons[0].starts_with("not adjacent"), "{:?}", m.reasons);
        assert_eq!(m.covering, net("10.0.0.0/22"));
        assert_eq!(m.extra_addresses, 512);
        assert_eq!(m.extra, nets(&["10.0.1.0/24", "10.0.3.0/24"]));
    }

    #[test]
    fn merge_fails_when_misaligned() {
        let m = merge(&nets(&["10.0.1.0/24", "10.0.2.0/24"]));
        assert!(!m.mergeable);
        assert!(m.gaps.is_empty());
        assert_eq!(m.union, nets(&["10.0.1.0/24", "10.0.2.0/24"]));
        assert!(m.reasons[0].starts_with("not aligned"), "{:?}", m.reasons);
        assert!(m.reasons[0].contains("10.0.0.0/23 and 10.0.2.0/23"));
        assert!(m.reasons[1].contains("10.0.1.0/24 is the upper half of 10.0.0.0/23"));
        assert!(m.reasons[1].contains("10.0.2.0/24 is the lower half of 10.0.2.0/23"));
        assert_eq!(m.covering, net("10.0.0.0/22"));
        assert_eq!(m.covering_addresses, 1024);
        assert_eq!(m.extra_addresses, 512);
        assert_eq!(m.extra, nets(&["10.0.0.0/24", "10.0.3.0/24"]));
    }

    #[test]
    fn merge_fails_when_size_is_not_a_power_of_two() {
        let m = merge(&nets(&["10.0.0.0/24", "10.0.1.0/25"]));
        assert!(!m.mergeable);
        assert_eq!(m.union_addresses, 384);
        assert!(m.reasons[0].contains("power of two"), "{:?}", m.reasons);
        assert_eq!(m.covering, net("10.0.0.0/23"));
        assert_eq!(m.extra, nets(&["10.0.1.128/25"]));
        assert_eq!(m.extra_addresses, 128);
    }

    #[test]
    fn merge_at_the_top_of_the_address_space() {
        let m = merge(&nets(&["255.255.255.254/32", "255.255.255.255/32"]));
        assert_eq!(m.supernet, Some(net("255.255.255.254/31")));
        let m = merge(&nets(&["255.255.255.253/32", "255.255.255.255/32"]));
        assert!(!m.mergeable);
        assert_eq!(m.covering, net("255.255.255.252/30"));
        assert_eq!(m.extra, nets(&["255.255.255.252/32", "255.255.255.254/32"]));
    }
}

/// The parts of `outer` that none of `used` covers, as the fewest CIDR blocks: the
/// room left in a VPC for more subnets.
pub fn free_blocks(outer: Ipv4Net, used: &[Ipv4Net]) -> Vec<Ipv4Net> {
    fn walk(n: Ipv4Net, used: &[Ipv4Net], out: &mut Vec<Ipv4Net>) {
        if used.iter().any(|u| u.contains(&n)) {
            return;
        }
        if !used.iter().any(|u| n.contains(u)) {
            out.push(n);
            return;
        }
        if let Ok(halves) = n.subnets(n.prefix_len() + 1) {
            for h in halves {
                walk(h, used, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(outer.trunc(), used, &mut out);
    out
}

#[cfg(test)]
mod free_tests {
    use super::*;

    #[test]
    fn free_blocks_of_the_hands_on_vpc() {
        let vpc: Ipv4Net = "10.0.0.0/16".parse().unwrap();
        let used: Vec<Ipv4Net> = ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let free = free_blocks(vpc, &used);
        let text: Vec<String> = free.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            text,
            [
                "10.0.4.0/22",
                "10.0.8.0/21",
                "10.0.16.0/20",
                "10.0.32.0/19",
                "10.0.64.0/18",
                "10.0.128.0/17"
            ]
        );
        let total: u64 = free.iter().map(|n| 1u64 << (32 - n.prefix_len())).sum();
        assert_eq!(total, 65536 - 4 * 256);
        assert_eq!(free_blocks(vpc, &[]), vec![vpc]);
        assert!(free_blocks(vpc, &[vpc]).is_empty());
    }
}
