use crate::lab::{self, up::require_root};
use crate::trace::{self, render, send::Proto};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  sudo vpclab trace web example-web --port 80      (the write-up's internet gateway walk-through)\n  sudo vpclab trace app example-web --port 80      (the write-up's NAT gateway walk-through)\n  sudo vpclab trace stranger web --port 22         (blocked: the security group stops it)\n  sudo vpclab trace app example-web.example --pcap /tmp/trace   (then: tshark -r /tmp/trace/my-nat_eth0.pcap)\n\nWhen nothing listens on TO's port, vpclab listens there for the length of the trace so the\nTCP handshake completes (--no-listener to see the bare refusal instead)."
)]
pub struct Args {
    /// The lab (the only running lab, or `handson`, when omitted)
    #[arg(long)]
    lab: Option<String>,
    /// The node that sends the request (an instance, database server or internet host)
    from: String,
    /// A node, a DNS name (resolved as FROM resolves it) or an IP address
    to: String,
    /// Destination port (TCP and UDP)
    #[arg(long, short)]
    port: Option<u16>,
    /// Protocol; tcp when a port is given, icmp (ping) otherwise
    #[arg(long, value_enum)]
    proto: Option<Proto>,
    /// Write one pcap file per capture point into DIR (`<node>_<iface>.pcap`)
    #[arg(long, value_name = "DIR")]
    pcap: Option<PathBuf>,
    /// Print the trace as JSON
    #[arg(long)]
    json: bool,
    /// How long to wait for an answer, in milliseconds
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    timeout: u64,
    /// Keep the connection open for SECONDS after the trace (see it in `vpclab nat-table`)
    #[arg(long, value_name = "SECONDS")]
    hold: Option<u64>,
    /// Don't listen on TO's port when nothing does (a TCP trace then shows the RST)
    #[arg(long)]
    no_listener: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    require_root("trace")?;
    let r = lab::running(a.lab.as_deref())?;
    let proto = a.proto.unwrap_or(if a.port.is_some() {
        Proto::Tcp
    } else {
        Proto::Icmp
    });
    let opts = trace::Options {
        from: a.from,
        to: a.to,
        proto,
        port: a.port,
        pcap: a.pcap,
        timeout: Duration::from_millis(a.timeout),
        hold: a.hold.is_some(),
        listener: !a.no_listener,
    };
    let (report, held) = trace::run(&r, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render::render(&report));
    }
    if let (Some(secs), Some(held)) = (a.hold, held) {
        use std::io::Write;
        if !a.json {
            println!(
                "holding the connection open for {secs} s (see it with `sudo vpclab nat-table {} nat-gateway`)",
                r.lab.name
            );
        }
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_secs(secs));
        drop(held);
    }
    Ok(if report.reachable {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
