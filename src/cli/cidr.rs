//! `vpclab cidr`: argument wiring and printing for the CIDR arithmetic in `crate::cidr`.

use crate::cidr::{self, Block, Info, Merge, Split};
use crate::lab::progress::grouped;
use ipnet::Ipv4Net;
use std::io::{self, Write};
use std::process::ExitCode;

/// The examples, shown by both `-h` and `--help`.
macro_rules! examples {
    () => {
        "\
Examples:
  vpclab cidr 192.168.0.0/24                    256 addresses, 254 hosts classically, 251 on AWS
  vpclab cidr 10.0.2.238/24                     an instance address: its subnet 10.0.2.0/24
  vpclab cidr 10.0.0.0/16 --json | jq .usable_aws
  vpclab cidr split 10.0.0.0/16 --prefix 24     subnetting: the 256 /24s of a /16
  vpclab cidr split 10.0.0.0/16 --into 4        the 4 equal subnets (/18s) of a /16
  vpclab cidr merge 10.0.0.0/24 10.0.1.0/24     supernetting: 10.0.0.0/23

Exit status: 0 done; 1 the blocks given to `merge` are not one CIDR block; 2 invalid input."
    };
}

/// `--help` adds what the command computes and how it treats host bits.
const AFTER_LONG_HELP: &str = concat!(
    "\
With a BLOCK: its network, netmask, broadcast, address range, number of addresses, usable hosts \
in classic networking (all but the network and broadcast addresses; both addresses of a /31 \
point-to-point link; the one address of a /32) and on AWS, which reserves 5 addresses in every \
subnet (the network address, .1 for the VPC router, .2 for the Amazon DNS server, .3 for future \
use, and the broadcast address); whether the block is RFC 1918 private and in which block; and \
whether AWS accepts it as a VPC or subnet block (/16 to /28). This is the write-up's section 2.

`split` cuts a block into equal subnets (subnetting); `merge` joins blocks into one bigger block \
(supernetting), or explains why they are not one block and shows the smallest block covering them.

Host bits: BLOCK may be an address with its prefix, like 10.0.2.238/24. `vpclab cidr` then says \
so, shows the network it belongs to (10.0.2.0/24) and where that address sits in it (also in \
--json, as `host`). `split` and `merge` need exact blocks and refuse such input, naming the \
network address to write instead, so a typo never silently changes the blocks worked on. A \
netmask works in place of the prefix length: 10.0.0.0/255.255.0.0.

",
    examples!()
);

#[derive(clap::Args)]
#[command(
    after_help = examples!(),
    after_long_help = AFTER_LONG_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_value_name = "SPLIT|MERGE",
    subcommand_help_heading = "Forms"
)]
pub struct Args {
    /// IPv4 CIDR block to explain, like 192.168.0.0/24 (an address with host bits, like
    /// 10.0.2.238/24, is explained within its network)
    #[arg(value_name = "BLOCK", value_parser = cidr::parse_block)]
    block: Option<Block>,
    /// Print a JSON object (fields: network, netmask, broadcast, first, last, addresses,
    /// usable_classic, usable_aws, aws_reserved, rfc1918, aws_block_ok, ...)
    #[arg(long)]
    json: bool,
    /// With no BLOCK: the address plan of this lab file (the built-in lab by default)
    #[arg(long, value_name = "FILE")]
    lab: Option<std::path::PathBuf>,
    #[command(subcommand)]
    form: Option<Form>,
}

#[derive(clap::Subcommand)]
enum Form {
    /// Subnetting: cut a block into equal smaller blocks, with their ranges and AWS-usable hosts
    #[command(after_help = "\
Examples:
  vpclab cidr split 10.0.0.0/16 --prefix 24     256 subnets 10.0.0.0/24 ... 10.0.255.0/24
  vpclab cidr split 10.0.0.0/16 --into 4        the four /18s: 10.0.0.0/18 ... 10.0.192.0/18
  vpclab cidr split 10.0.0.0/8 --prefix 24 --limit 5 --json")]
    Split(SplitArgs),
    /// Supernetting: join blocks into one bigger block, or explain why they are not one block
    /// (exit 1) and show the smallest block covering them
    #[command(after_help = "\
Examples:
  vpclab cidr merge 10.0.0.0/24 10.0.1.0/24     10.0.0.0/23
  vpclab cidr merge 10.0.0.0/24 10.0.1.0/24 10.0.2.0/24 10.0.3.0/24     10.0.0.0/22
  vpclab cidr merge 10.0.1.0/24 10.0.2.0/24     not one block: 10.0.1.0/24 belongs to 10.0.0.0/23

Exit status: 0 the blocks form one CIDR block; 1 they don't; 2 invalid input.")]
    Merge(MergeArgs),
}

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("size").required(true).args(["prefix", "into"]))]
struct SplitArgs {
    /// The block to split; must be a network address (10.0.0.0/16, not 10.0.0.5/16)
    #[arg(value_name = "BLOCK", value_parser = cidr::parse_exact)]
    block: Ipv4Net,
    /// Prefix length of the subnets, e.g. 24 or /24; at least the block's own
    #[arg(long, short, value_name = "LEN", value_parser = cidr::parse_prefix)]
    prefix: Option<u8>,
    /// Split into at least N equal subnets (the prefix grows by enough bits: 4 → 2 bits)
    #[arg(long, value_name = "N")]
    into: Option<u64>,
    /// List at most N subnets (the count is always shown)
    #[arg(long, value_name = "N", default_value_t = 1024, conflicts_with = "all")]
    limit: u64,
    /// List every subnet, however many
    #[arg(long)]
    all: bool,
    /// Print a JSON object: block, prefix_len, count, addresses_each, usable_aws_each,
    /// aws_block_ok, shown, truncated, subnets [{cidr, first, last, usable_aws, ...}]
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct MergeArgs {
    /// Two or more blocks, each a network address (10.0.1.0/24, not 10.0.1.7/24)
    #[arg(value_name = "BLOCK", num_args = 2.., required = true, value_parser = cidr::parse_exact)]
    blocks: Vec<Ipv4Net>,
    /// Print a JSON object: mergeable, supernet, union, reasons, covering, extra_addresses,
    /// extra, ...
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let mut out = io::stdout().lock();
    let result = match (a.form, a.block) {
        (Some(Form::Split(s)), _) => run_split(&mut out, s),
        (Some(Form::Merge(m)), _) => run_merge(&mut out, m),
        (None, Some(b)) => run_info(&mut out, &b, a.json),
        (None, None) => return run_lab(a.lab.as_deref(), a.json),
    };
    match result {
        Ok(code) => Ok(code),
        // `vpclab cidr split ... | head` closes the pipe early: that's not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    }
}

/// With no BLOCK: a lab's address plan, the VPC and each subnet, in use and free.
fn run_lab(file: Option<&std::path::Path>, as_json: bool) -> anyhow::Result<ExitCode> {
    let Some(loaded) = super::load_lab(file, None)? else {
        return Ok(ExitCode::FAILURE);
    };
    let lab = &loaded.lab;
    let in_use = crate::topology::private_ips_by_subnet(lab);
    let rows: Vec<serde_json::Value> = lab
        .subnets
        .iter()
        .map(|s| {
            let i = cidr::info(&Block::exact(s.cidr));
            let used = in_use.get(&s.name).map_or(0, Vec::len) as u64;
            serde_json::json!({
                "subnet": s.name, "az": s.az, "cidr": s.cidr.to_string(),
                "addresses": i.addresses, "usable_aws": i.usable_aws,
                "in_use": used, "free": i.usable_aws.saturating_sub(used),
            })
        })
        .collect();
    let used: Vec<Ipv4Net> = lab.subnets.iter().map(|s| s.cidr).collect();
    let free = cidr::free_blocks(lab.vpc.cidr, &used);
    let vpc = cidr::info(&Block::exact(lab.vpc.cidr));
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "lab": lab.name, "vpc": vpc, "subnets": rows,
                "unallocated": free.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "lab {}: VPC {} {}: {} addresses, {}",
        lab.name,
        lab.vpc.name,
        lab.vpc.cidr,
        grouped(vpc.addresses),
        if vpc.rfc1918 {
            "RFC 1918 private"
        } else {
            "not RFC 1918"
        }
    );
    println!(
        "  {:<14} {:<17} {:<15} {:>9} {:>13} {:>7} {:>6}",
        "subnet", "AZ", "CIDR", "addresses", "usable on AWS", "in use", "free"
    );
    for r in &rows {
        println!(
            "  {:<14} {:<17} {:<15} {:>9} {:>13} {:>7} {:>6}",
            r["subnet"].as_str().unwrap_or(""),
            r["az"].as_str().unwrap_or(""),
            r["cidr"].as_str().unwrap_or(""),
            r["addresses"].to_string(),
            r["usable_aws"].to_string(),
            r["in_use"].to_string(),
            r["free"].to_string()
        );
    }
    let room: u64 = free.iter().map(|n| 1u64 << (32 - n.prefix_len())).sum();
    println!(
        "  not in any subnet: {} addresses ({})",
        grouped(room),
        free.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "\n`vpclab cidr BLOCK` explains one block; `vpclab cidr split` and `merge` do the arithmetic."
    );
    Ok(ExitCode::SUCCESS)
}

/// An input error found after parsing (exit 2, like clap's own input errors).
fn input_error(msg: &str) -> io::Result<ExitCode> {
    eprintln!("vpclab: error: {msg}");
    Ok(ExitCode::from(2))
}

fn json(out: &mut impl Write, value: &impl serde::Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::other)?;
    writeln!(out)
}

fn run_info(out: &mut impl Write, b: &Block, as_json: bool) -> io::Result<ExitCode> {
    let i = cidr::info(b);
    if as_json {
        json(out, &i)?;
    } else {
        print_info(out, &i)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_split(out: &mut impl Write, a: SplitArgs) -> io::Result<ExitCode> {
    let prefix = match (a.prefix, a.into) {
        (Some(p), _) => p,
        (None, Some(n)) => match cidr::prefix_for_count(a.block, n) {
            Ok(p) => p,
            Err(e) => return input_error(&e),
        },
        (None, None) => unreachable!("clap requires --prefix or --into"),
    };
    let limit = (!a.all).then_some(a.limit);
    let s = match cidr::split(a.block, prefix, limit) {
        Ok(s) => s,
        Err(e) => return input_error(&e),
    };
    if a.json {
        json(out, &s)?;
    } else {
        print_split(out, &s, a.into)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_merge(out: &mut impl Write, a: MergeArgs) -> io::Result<ExitCode> {
    let m = cidr::merge(&a.blocks);
    if a.json {
        json(out, &m)?;
    } else {
        print_merge(out, &m)?;
    }
    Ok(if m.mergeable {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", grouped(n), if n == 1 { one } else { many })
}

fn print_info(out: &mut impl Write, i: &Info) -> io::Result<()> {
    if let Some(h) = &i.host {
        let status = match (h.aws_reserved, h.usable_classic) {
            (Some(r), _) => format!("on AWS it can't be assigned: {r}"),
            (None, true) => "a usable host address, on AWS too".to_string(),
            (None, false) => "not a usable host address".to_string(),
        };
        writeln!(
            out,
            "note: `{}` has host bits set: {} is address #{} of the network {} ({status}); \
             showing {}",
            i.input,
            h.address,
            grouped(h.index),
            i.cidr,
            i.cidr
        )?;
    }
    let bits = 32 - u32::from(i.prefix_len);
    writeln!(out, "{}", i.cidr)?;
    writeln!(out, "  network      {}", i.network)?;
    writeln!(
        out,
        "  netmask      {} (wildcard {})",
        i.netmask, i.wildcard
    )?;
    writeln!(out, "  broadcast    {}", i.broadcast)?;
    writeln!(out, "  range        {} - {}", i.first, i.last)?;
    writeln!(
        out,
        "  addresses    {} (2^{bits}: {} after the /{} prefix)",
        grouped(i.addresses),
        plural(u64::from(bits), "host bit", "host bits"),
        i.prefix_len
    )?;
    let classic_why = match i.prefix_len {
        32 => "a single host",
        31 => "a point-to-point link uses both addresses, RFC 3021",
        _ => "all but the network and broadcast addresses",
    };
    writeln!(
        out,
        "  usable       {} classic: {} - {} ({classic_why})",
        grouped(i.usable_classic),
        i.first_usable_classic,
        i.last_usable_classic
    )?;
    match (i.first_usable_aws, i.last_usable_aws) {
        (Some(f), Some(l)) => writeln!(
            out,
            "               {} on AWS:  {f} - {l} (AWS reserves {} addresses in every subnet)",
            grouped(i.usable_aws),
            i.aws_reserved.len()
        )?,
        _ => writeln!(
            out,
            "               0 on AWS (the block is nothing but its {})",
            plural(
                i.aws_reserved.len() as u64,
                "reserved address",
                "reserved addresses"
            )
        )?,
    }
    writeln!(out, "  AWS reserves")?;
    for r in &i.aws_reserved {
        writeln!(out, "    {:<16} {}", r.address.to_string(), r.reason)?;
    }
    match (&i.rfc1918_block, i.rfc1918_partial.as_slice()) {
        (Some(b), _) => writeln!(out, "  private      yes: inside {b} (RFC 1918)")?,
        (None, []) => writeln!(
            out,
            "  private      no: outside RFC 1918 (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16), \
             which AWS recommends for VPCs so their addresses never collide with real internet \
             hosts"
        )?,
        (None, parts) => {
            let parts: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
            writeln!(
                out,
                "  private      partly: it contains the RFC 1918 block {} but also addresses \
                 outside RFC 1918",
                parts.join(" and ")
            )?
        }
    }
    if i.aws_block_ok {
        writeln!(
            out,
            "  AWS block    yes: {}, so it can be a VPC or subnet CIDR",
            i.aws_block_note
        )
    } else {
        writeln!(out, "  AWS block    no: {}", i.aws_block_note)
    }
}

fn print_split(out: &mut impl Write, s: &Split, into: Option<u64>) -> io::Result<()> {
    if let Some(n) = into {
        writeln!(
            out,
            "{} equal subnets of {} need {} more prefix bit(s): /{}",
            grouped(n),
            s.block,
            s.prefix_len - s.block.prefix_len(),
            s.prefix_len
        )?;
    }
    writeln!(
        out,
        "{} split into /{}: {}, each {} ({} usable classic, {} on AWS)",
        s.block,
        s.prefix_len,
        plural(s.count, "subnet", "subnets"),
        plural(s.addresses_each, "address", "addresses"),
        grouped(s.usable_classic_each),
        grouped(s.usable_aws_each)
    )?;
    if !s.aws_block_ok {
        writeln!(
            out,
            "note: AWS can't use these as subnets: {}",
            s.aws_block_note
        )?;
    }
    writeln!(out, "  {:<18}  {:<33}  AWS usable", "subnet", "range")?;
    for l in &s.subnets {
        let aws = match (l.first_usable_aws, l.last_usable_aws) {
            (Some(f), Some(t)) => format!("{f} - {t} ({})", grouped(l.usable_aws)),
            _ => "none".to_string(),
        };
        let range = format!("{} - {}", l.first, l.last);
        writeln!(out, "  {:<18}  {range:<33}  {aws}", l.cidr.to_string())?;
    }
    if s.truncated {
        writeln!(
            out,
            "... {} more not shown (showing {} of {}; use --limit N or --all)",
            grouped(s.count - s.shown),
            grouped(s.shown),
            grouped(s.count)
        )?;
    }
    Ok(())
}

fn list(nets: &[Ipv4Net]) -> String {
    nets.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_merge(out: &mut impl Write, m: &Merge) -> io::Result<()> {
    let inputs = m
        .inputs
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(" + ");
    if let Some(s) = m.supernet {
        writeln!(
            out,
            "{inputs} = {s} ({}: {} - {})",
            plural(m.union_addresses, "address", "addresses"),
            s.network(),
            s.broadcast()
        )?;
        for n in &m.notes {
            writeln!(out, "note: {n}")?;
        }
        return Ok(());
    }
    writeln!(out, "{inputs} can't be merged into one CIDR block:")?;
    for r in &m.reasons {
        writeln!(out, "  - {r}")?;
    }
    for n in &m.notes {
        writeln!(out, "note: {n}")?;
    }
    writeln!(
        out,
        "The smallest single block covering them is {} ({}), which would also include {} in \
         none of them: {}",
        m.covering,
        plural(m.covering_addresses, "address", "addresses"),
        plural(m.extra_addresses, "address", "addresses"),
        list(&m.extra)
    )?;
    writeln!(
        out,
        "Exactly these {} as few CIDR blocks as possible (e.g. for a route table): {}",
        plural(m.union_addresses, "address", "addresses"),
        list(&m.union)
    )
}

#[cfg(test)]
mod tests {
    use super::grouped;

    #[test]
    fn numbers_are_grouped_by_grouped() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(251), "251");
        assert_eq!(grouped(1024), "1,024");
        assert_eq!(grouped(65_536), "65,536");
        assert_eq!(grouped(4_294_967_296), "4,294,967,296");
    }
}
