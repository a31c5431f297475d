//! `vpclab serve` driven by the real AWS CLI and boto3: the write-up's VPC built call by
//! call, then real packets (ssh with the key CreateKeyPair returned, curl through the NAT
//! gateway seen as its Elastic IP, a revoked rule refusing new connections), AWS's error
//! codes, a restart that keeps every ID, and everything deleted again. Root only; skipped
//! when the `aws` CLI or boto3 is missing (`scripts/setup.sh --test` installs both).

mod common;

use common::{text, vpclab};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `vpclab serve` on a free loopback port with its own state dir; stopped by
/// its pid and its labs taken down when dropped, even when the test panics.
struct Serve {
    child: Child,
    port: u16,
    dir: PathBuf,
    labs: Vec<String>,
}

impl Serve {
    fn start(dir: &Path) -> Serve {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Serve {
            child: spawn(dir, port),
            port,
            dir: dir.to_path_buf(),
            labs: vec![],
        }
    }

    /// Stops the server and starts it again on the same port and state dir.
    fn restart(&mut self) {
        self.stop();
        self.child = spawn(&self.dir, self.port);
    }

    fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }

    fn env(&self, c: &mut Command) {
        c.env("AWS_SHARED_CREDENTIALS_FILE", self.dir.join("credentials"))
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_PROFILE", "vpclab-root")
            .env("AWS_DEFAULT_REGION", "ap-northeast-2")
            .env("ENDPOINT", format!("http://127.0.0.1:{}", self.port));
    }

    /// `aws ec2 ARGS --output text`, which must succeed: its trimmed stdout.
    fn ec2(&self, args: &[&str]) -> String {
        let o = self.try_ec2(args);
        assert!(o.status.success(), "aws ec2 {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn try_ec2(&self, args: &[&str]) -> Output {
        let mut c = Command::new("aws");
        self.env(&mut c);
        c.args(["--endpoint-url", &format!("http://127.0.0.1:{}", self.port)])
            .args(["--output", "text", "ec2"])
            .args(args);
        c.output().unwrap()
    }

    /// The call fails with AWS's error `code`.
    fn fails_with(&self, code: &str, args: &[&str]) {
        let o = self.try_ec2(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(&format!("({code})")),
            "aws ec2 {args:?} should fail with {code}: {}",
            text(&o)
        );
    }
}

fn spawn(dir: &Path, port: u16) -> Child {
    let child = vpclab()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--state-dir",
        ])
        .arg(dir)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "vpclab serve did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop();
        for lab in &self.labs {
            let _ = vpclab().args(["down", lab]).output();
        }
    }
}

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a command in a lab node's network namespace.
fn in_node(lab: &str, node: &str, cmd: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &format!("vpclab-{lab}.{node}")])
        .args(cmd)
        .output()
        .unwrap()
}

fn ssh(lab: &str, key: &Path, ip: &str) -> Output {
    in_node(
        lab,
        "my-laptop",
        &[
            "ssh",
            "-i",
            key.to_str().unwrap(),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=3",
            &format!("ec2-user@{ip}"),
            "hostname",
        ],
    )
}

#[test]
fn the_write_up_vpc_built_with_the_aws_cli_carries_real_traffic() {
    require_root!();
    if !have("aws", "--version") {
        eprintln!("skipped: the aws CLI is missing (run `sudo scripts/setup.sh --test`)");
        return;
    }
    let files = common::Files::new("api");
    let state = files.write("placeholder", "");
    let dir = state.parent().unwrap().join("state");
    let mut s = Serve::start(&dir);
    let lab = format!("t-api-{}", std::process::id() % 100_000);
    s.labs.push(lab.clone());

    // The write-up's VPC, call by call.
    let vpc = s.ec2(&[
        "create-vpc",
        "--cidr-block",
        "10.0.0.0/16",
        "--tag-specifications",
        &format!("ResourceType=vpc,Tags=[{{Key=Name,Value={lab}}}]"),
        "--query",
        "Vpc.VpcId",
    ]);
    assert!(vpc.starts_with("vpc-0") && vpc.len() == 21, "{vpc}");
    let subnet = |name: &str, cidr: &str, az: &str| {
        s.ec2(&[
            "create-subnet",
            "--vpc-id",
            &vpc,
            "--cidr-block",
            cidr,
            "--availability-zone",
            az,
            "--tag-specifications",
            &format!("ResourceType=subnet,Tags=[{{Key=Name,Value={name}}}]"),
            "--query",
            "Subnet.SubnetId",
        ])
    };
    let pub2a = subnet("public-2a", "10.0.0.0/24", "ap-northeast-2a");
    let pri2a = subnet("private-2a", "10.0.1.0/24", "ap-northeast-2a");
    let pub2c = subnet("public-2c", "10.0.2.0/24", "ap-northeast-2c");
    let pri2c = subnet("private-2c", "10.0.3.0/24", "ap-northeast-2c");
    s.fails_with(
        "InvalidSubnet.Conflict",
        &[
            "create-subnet",
            "--vpc-id",
            &vpc,
            "--cidr-block",
            "10.0.0.128/25",
        ],
    );
    s.fails_with(
        "InvalidSubnet.Range",
        &[
            "create-subnet",
            "--vpc-id",
            &vpc,
            "--cidr-block",
            "10.1.0.0/24",
        ],
    );
    let igw = s.ec2(&[
        "create-internet-gateway",
        "--query",
        "InternetGateway.InternetGatewayId",
    ]);
    s.ec2(&[
        "attach-internet-gateway",
        "--internet-gateway-id",
        &igw,
        "--vpc-id",
        &vpc,
    ]);
    s.fails_with(
        "Resource.AlreadyAssociated",
        &[
            "attach-internet-gateway",
            "--internet-gateway-id",
            &igw,
            "--vpc-id",
            &vpc,
        ],
    );
    let public = s.ec2(&[
        "create-route-table",
        "--vpc-id",
        &vpc,
        "--query",
        "RouteTable.RouteTableId",
    ]);
    s.ec2(&[
        "create-route",
        "--route-table-id",
        &public,
        "--destination-cidr-block",
        "0.0.0.0/0",
        "--gateway-id",
        &igw,
    ]);
    s.fails_with(
        "RouteAlreadyExists",
        &[
            "create-route",
            "--route-table-id",
            &public,
            "--destination-cidr-block",
            "0.0.0.0/0",
            "--gateway-id",
            &igw,
        ],
    );
    for sub in [&pub2a, &pub2c] {
        s.ec2(&[
            "associate-route-table",
            "--route-table-id",
            &public,
            "--subnet-id",
            sub,
        ]);
    }
    let eip = s.ec2(&[
        "allocate-address",
        "--domain",
        "vpc",
        "--query",
        "AllocationId",
    ]);
    let eip_ip = s.ec2(&[
        "describe-addresses",
        "--allocation-ids",
        &eip,
        "--query",
        "Addresses[0].PublicIp",
    ]);
    let nat = s.ec2(&[
        "create-nat-gateway",
        "--subnet-id",
        &pub2a,
        "--allocation-id",
        &eip,
        "--query",
        "NatGateway.NatGatewayId",
    ]);
    s.ec2(&["wait", "nat-gateway-available", "--nat-gateway-ids", &nat]);
    let private = s.ec2(&[
        "create-route-table",
        "--vpc-id",
        &vpc,
        "--query",
        "RouteTable.RouteTableId",
    ]);
    s.ec2(&[
        "create-route",
        "--route-table-id",
        &private,
        "--destination-cidr-block",
        "0.0.0.0/0",
        "--nat-gateway-id",
        &nat,
    ]);
    for sub in [&pri2a, &pri2c] {
        s.ec2(&[
            "associate-route-table",
            "--route-table-id",
            &private,
            "--subnet-id",
            sub,
        ]);
    }
    let web_sg = s.ec2(&[
        "create-security-group",
        "--group-name",
        "MyWebServer-SecurityGroup",
        "--description",
        "SSH from my IP",
        "--vpc-id",
        &vpc,
        "--query",
        "GroupId",
    ]);
    s.fails_with(
        "InvalidGroup.Duplicate",
        &[
            "create-security-group",
            "--group-name",
            "MyWebServer-SecurityGroup",
            "--description",
            "again",
            "--vpc-id",
            &vpc,
        ],
    );
    let ssh_rule = [
        "--group-id",
        &web_sg,
        "--protocol",
        "tcp",
        "--port",
        "22",
        "--cidr",
        "203.0.113.10/32",
    ];
    s.ec2(&[&["authorize-security-group-ingress"][..], &ssh_rule].concat());
    s.fails_with(
        "InvalidPermission.Duplicate",
        &[&["authorize-security-group-ingress"][..], &ssh_rule].concat(),
    );
    let app_sg = s.ec2(&[
        "create-security-group",
        "--group-name",
        "MyApp-SecurityGroup",
        "--description",
        "SSH from inside the VPC",
        "--vpc-id",
        &vpc,
        "--query",
        "GroupId",
    ]);
    let key_file = dir.parent().unwrap().join("aws-study.pem");
    let material = s.ec2(&[
        "create-key-pair",
        "--key-name",
        "aws-study",
        "--query",
        "KeyMaterial",
    ]);
    std::fs::write(&key_file, format!("{material}\n")).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    s.fails_with(
        "InvalidKeyPair.Duplicate",
        &["create-key-pair", "--key-name", "aws-study"],
    );
    s.fails_with(
        "DryRunOperation",
        &[
            "run-instances",
            "--dry-run",
            "--image-id",
            "ami-1",
            "--subnet-id",
            &pub2c,
            "--security-group-ids",
            &web_sg,
        ],
    );
    let web = s.ec2(&[
        "run-instances",
        "--image-id",
        "ami-0c9c942bd7bf113a2",
        "--instance-type",
        "t2.micro",
        "--key-name",
        "aws-study",
        "--security-group-ids",
        &web_sg,
        "--subnet-id",
        &pub2c,
        "--private-ip-address",
        "10.0.2.238",
        "--associate-public-ip-address",
        "--query",
        "Instances[0].InstanceId",
    ]);
    let app = s.ec2(&[
        "run-instances",
        "--image-id",
        "ami-0c9c942bd7bf113a2",
        "--security-group-ids",
        &app_sg,
        "--subnet-id",
        &pri2a,
        "--query",
        "Instances[0].InstanceId",
    ]);
    s.ec2(&["wait", "instance-running", "--instance-ids", &web, &app]);
    let web_row = s.ec2(&[
        "describe-instances",
        "--instance-ids",
        &web,
        "--query",
        "Reservations[0].Instances[0].[PrivateIpAddress,PublicIpAddress,State.Name]",
    ]);
    let cols: Vec<&str> = web_row.split_whitespace().collect();
    assert_eq!((cols[0], cols[2]), ("10.0.2.238", "running"), "{web_row}");
    let web_ip = cols[1].to_string();

    // Real traffic: ssh with the key CreateKeyPair returned, from my laptop.
    let o = ssh(&lab, &key_file, &web_ip);
    assert!(o.status.success(), "ssh to the web instance: {}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ip-10-0-2-238");
    // The private instance reaches the internet through the NAT gateway, seen as its EIP.
    let o = in_node(
        &lab,
        &app,
        &["curl", "-s", "-m", "5", "http://203.0.113.60/ip"],
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        eip_ip,
        "{}",
        text(&o)
    );
    // A revoked rule refuses new connections at once.
    s.ec2(&[&["revoke-security-group-ingress"][..], &ssh_rule].concat());
    assert!(
        !ssh(&lab, &key_file, &web_ip).status.success(),
        "ssh after the revoke"
    );

    // Error codes the CLI's waiters and scripts depend on.
    s.fails_with(
        "InvalidVpcID.NotFound",
        &["describe-vpcs", "--vpc-ids", "vpc-0000000000000000a"],
    );
    s.fails_with(
        "InvalidVpc.Range",
        &["create-vpc", "--cidr-block", "10.0.0.0/8"],
    );
    s.fails_with(
        "InvalidInstanceID.NotFound",
        &[
            "describe-instances",
            "--instance-ids",
            "i-0000000000000000a",
        ],
    );
    s.fails_with(
        "InvalidSubnetID.NotFound",
        &["delete-subnet", "--subnet-id", "subnet-0000000000000000a"],
    );
    s.fails_with(
        "DependencyViolation",
        &["delete-subnet", "--subnet-id", &pri2a],
    );
    s.fails_with("DependencyViolation", &["delete-vpc", "--vpc-id", &vpc]);
    s.fails_with(
        "InvalidRouteTableID.NotFound",
        &[
            "delete-route-table",
            "--route-table-id",
            "rtb-0000000000000000a",
        ],
    );

    // The export of the API-made lab is a lab file that validates.
    let o = vpclab().args(["export", &lab]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let exported = files.write("exported.yaml", &String::from_utf8_lossy(&o.stdout));
    let o = vpclab().arg("validate").arg(&exported).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));

    // boto3 sees the same account.
    let script = "import boto3,os\nec2=boto3.client('ec2',endpoint_url=os.environ['ENDPOINT'])\n\
r=ec2.describe_instances(Filters=[{'Name':'vpc-id','Values':[os.environ['VPC']]}])\n\
print(sorted(i['InstanceId'] for res in r['Reservations'] for i in res['Instances']))\n";
    // boto3 as `scripts/setup.sh --test` installs it, else whatever python3 has.
    let venv = Path::new("/opt/vpclab/venv/bin/python3");
    let mut c = Command::new(if venv.exists() {
        venv
    } else {
        Path::new("python3")
    });
    s.env(&mut c);
    let o = c.env("VPC", &vpc).args(["-c", script]).output().unwrap();
    if String::from_utf8_lossy(&o.stderr).contains("No module named 'boto3'") {
        eprintln!("note: boto3 is missing; its part of this test was skipped");
    } else {
        let mut ids = [web.clone(), app.clone()];
        ids.sort();
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            format!("['{}', '{}']", ids[0], ids[1]),
            "{}",
            text(&o)
        );
    }

    // A restart keeps every ID.
    let before = s.ec2(&[
        "describe-instances",
        "--filters",
        &format!("Name=vpc-id,Values={vpc}"),
        "--query",
        "Reservations[].Instances[].[InstanceId,PrivateIpAddress]",
    ]);
    s.restart();
    let after = s.ec2(&[
        "describe-instances",
        "--filters",
        &format!("Name=vpc-id,Values={vpc}"),
        "--query",
        "Reservations[].Instances[].[InstanceId,PrivateIpAddress]",
    ]);
    assert_eq!(before, after);

    // Everything deleted again, in AWS's order.
    s.ec2(&["terminate-instances", "--instance-ids", &web, &app]);
    s.ec2(&["wait", "instance-terminated", "--instance-ids", &web, &app]);
    s.ec2(&["delete-nat-gateway", "--nat-gateway-id", &nat]);
    s.ec2(&["release-address", "--allocation-id", &eip]);
    for sub in [&pub2a, &pri2a, &pub2c, &pri2c] {
        s.ec2(&["delete-subnet", "--subnet-id", sub]);
    }
    for rt in [&public, &private] {
        s.ec2(&["delete-route-table", "--route-table-id", rt]);
    }
    s.ec2(&[
        "detach-internet-gateway",
        "--internet-gateway-id",
        &igw,
        "--vpc-id",
        &vpc,
    ]);
    s.ec2(&["delete-internet-gateway", "--internet-gateway-id", &igw]);
    for sg in [&web_sg, &app_sg] {
        s.ec2(&["delete-security-group", "--group-id", sg]);
    }
    s.ec2(&["delete-key-pair", "--key-name", "aws-study"]);
    s.ec2(&["delete-vpc", "--vpc-id", &vpc]);
    assert!(
        common::namespaces_of(&lab).is_empty(),
        "the VPC's namespaces are gone"
    );
}
