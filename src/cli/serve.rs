use crate::api::{account, server, service::Service};
use crate::lab::up::require_root;
use crate::topology::{self, Source};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on; anything but loopback lets other machines drive the lab
    #[arg(long, default_value = "127.0.0.1:4566")]
    listen: SocketAddr,
    /// Where the account lives: credentials, account.json and the lab files of its VPCs
    #[arg(long, env = "VPCLAB_STATE_DIR", default_value = account::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// A lab file whose `internet:` hosts every new VPC gets (the built-in lab's when omitted)
    #[arg(long, value_name = "FILE")]
    internet: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    require_root("serve")?;
    if !a.listen.ip().is_loopback() {
        eprintln!(
            "vpclab serve: warning: listening on {}, not loopback: anyone who can reach it and holds the keys can change this machine's labs",
            a.listen
        );
    }
    let internet = match &a.internet {
        Some(p) => match topology::load(Source::File(p.clone()), None) {
            Ok(l) => l.lab.internet,
            Err(e) => anyhow::bail!("--internet: {e}"),
        },
        None => {
            topology::load(Source::Builtin, None)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .lab
                .internet
        }
    };
    let (acct, created) = account::Account::open(&a.state_dir)?;
    let creds = account::credentials_file(&a.state_dir);
    let service = Service::new(acct, internet);
    for line in service.restore() {
        eprintln!("vpclab serve: {line}");
    }
    let listener = std::net::TcpListener::bind(a.listen)
        .map_err(|e| anyhow::anyhow!("listen on {}: {e}\n  hint: another `vpclab serve` (or LocalStack) may hold the port; pick another with --listen", a.listen))?;
    eprintln!(
        "vpclab serve: the EC2 API (version 2016-11-15) at http://{}/ for account {}{}",
        listener.local_addr()?,
        service.owner_id,
        if created { ", with new root keys" } else { "" }
    );
    eprintln!(
        "  export AWS_SHARED_CREDENTIALS_FILE={}\n  aws --profile {} --region ap-northeast-2 --endpoint-url http://{} ec2 describe-vpcs",
        creds.display(),
        account::PROFILE,
        listener.local_addr()?
    );
    server::run(service, listener)?;
    Ok(ExitCode::SUCCESS)
}
