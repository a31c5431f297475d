use crate::lab::{self, hosts, state, up::require_root};
use crate::services::ssh;
use crate::topology::NodeRef;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(
    after_help = "Runs the real OpenSSH client from my-laptop (the internet host marked my_ip) with the \
lab's key pair, to the instance's public DNS name, as ec2-user: the write-up's `ssh -i key ec2-user@<public DNS>`.\n\n\
Examples:\n  sudo vpclab ssh web\n  sudo vpclab ssh web -- curl -s http://169.254.169.254/latest/meta-data/public-ipv4"
)]
pub struct Args {
    /// The instance to log in to
    instance: String,
    /// The lab (the only running lab, or `handson`, when omitted)
    #[arg(long)]
    lab: Option<String>,
    /// Log in from this internet host instead of the one marked my_ip
    #[arg(long)]
    from: Option<String>,
    /// A command to run instead of an interactive shell (after `--`)
    #[arg(last = true)]
    command: Vec<String>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    require_root("ssh")?;
    let r = lab::running(a.lab.as_deref())?;
    let Some(NodeRef::Instance(i)) = r.lab.find(&a.instance) else {
        anyhow::bail!(
            "`{}` is not an instance of lab `{}`",
            a.instance,
            r.lab.name
        );
    };
    let from =
        match &a.from {
            Some(f) => f.clone(),
            None => r.lab.my_ip().map(|h| h.name.clone()).ok_or_else(|| {
                anyhow::anyhow!("no internet host is marked my_ip: use --from HOST")
            })?,
        };
    let host = match i.public_ip.address() {
        Some(p) => r.lab.public_dns_name(p),
        None => anyhow::bail!(
            "instance `{}` has no public IP{}: it can't be reached from the internet\n  hint: `vpclab exec {} -- ...` runs a command on it directly",
            i.name,
            if r.state.runtime.stopped.contains(&i.name) {
                " (it is stopped)"
            } else {
                ""
            },
            i.name
        ),
    };
    let key_pair = i
        .key_pair
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("instance `{}` has no key pair", i.name))?;
    let dir = state::dir(&r.lab.name);
    hosts::write_known_hosts(&r.lab, &r.plan, &dir)?;
    let cmd: Vec<&str> = a.command.iter().map(String::as_str).collect();
    let argv = ssh::client_args(
        &ssh::key_path(&dir, key_pair),
        &ssh::known_hosts_path(&dir),
        std::time::Duration::from_secs(5),
        &host,
        &cmd,
    );
    let env = hosts::env(&r.plan, &dir, &from, hosts::live_template(&r.state))?;
    let mut c = env.command(&argv[0])?;
    c.args(&argv[1..]);
    if cmd.is_empty() {
        c.arg("-t");
    }
    let status = c.status()?;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
