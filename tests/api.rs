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

    /// `python3 -c script` with the account's credentials and `ENDPOINT` set: boto3 as
    /// `scripts/setup.sh --test` installs it, else whatever python3 has.
    fn python(&self) -> Command {
        let venv = Path::new("/opt/vpclab/venv/bin/python3");
        let mut c = Command::new(if venv.exists() {
            venv
        } else {
            Path::new("python3")
        });
        self.env(&mut c);
        c
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
    let o = s
        .python()
        .env("VPC", &vpc)
        .args(["-c", script])
        .output()
        .unwrap();
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

/// Sends raw Query-protocol bodies signed by botocore (the CLI would refuse to send them)
/// and prints, per body, the HTTP status and the error code of the answer.
const RAW_CALLS: &str = r#"
import os, sys, urllib.request, urllib.error, concurrent.futures
import botocore.session
from botocore.awsrequest import AWSRequest
from botocore.auth import SigV4Auth
creds = botocore.session.Session().get_credentials()
def call(body):
    req = AWSRequest(method='POST', url=os.environ['ENDPOINT'] + '/', data=body.encode(),
        headers={'Content-Type': 'application/x-www-form-urlencoded; charset=utf-8'})
    SigV4Auth(creds, 'ec2', 'ap-northeast-2').add_auth(req)
    p = req.prepare()
    r = urllib.request.Request(p.url, data=p.body, headers=dict(p.headers), method='POST')
    try:
        with urllib.request.urlopen(r, timeout=60) as a:
            text = a.read().decode()
            status = a.status
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        status = e.code
    code = text.split('<Code>')[1].split('</Code>')[0] if '<Code>' in text else 'ok'
    return f'{status} {code}'
V = 'Version=2016-11-15'
bodies = sys.argv[1:]
# Bodies too big for a command line are named.
big = {'over-1-MiB': f'Action=DescribeVpcs&{V}&Pad=' + 'a' * (1 << 20)}
bodies = [big.get(b, b) for b in bodies]
if bodies == ['parallel']:
    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(call, [f'Action=DescribeVpcs&{V}'] * 300))
    print(sorted(set(answers)), len(answers))
else:
    for b in bodies:
        print(call(b))
"#;

impl Serve {
    /// The answers to raw `bodies`, one `STATUS CODE` line each.
    fn raw(&self, bodies: &[&str]) -> Vec<String> {
        let o = self
            .python()
            .args(["-c", RAW_CALLS])
            .args(bodies)
            .output()
            .unwrap();
        assert!(o.status.success(), "raw calls: {}", text(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

#[test]
fn bad_input_gets_aws_errors_and_serve_keeps_answering() {
    require_root!();
    if Command::new("python3")
        .args(["-c", "import botocore"])
        .output()
        .map_or(true, |o| !o.status.success())
        && !Path::new("/opt/vpclab/venv/bin/python3").exists()
    {
        eprintln!("skipped: botocore is missing (run `sudo scripts/setup.sh --test`)");
        return;
    }
    let files = common::Files::new("api-bad");
    let dir = files
        .write("placeholder", "")
        .parent()
        .unwrap()
        .join("state");
    let s = Serve::start(&dir);
    let answers = s.raw(&[
        "Action=DescribeRegions&Version=2016-11-15",
        "Action=LaunchRockets&Version=2016-11-15",
        "Version=2016-11-15",
        "Action=DescribeRegions",
        "Action=DescribeVpcs&Action=DeleteVpc&Version=2016-11-15",
        "Action=CreateVpc&Version=2016-11-15",
        "Action=CreateVpc&Version=2016-11-15&CidrBlock=10.0.0.0%2F99",
        "Action=CreateVpc&Version=2016-11-15&CidrBlock=%zz%%&=&&==",
        "\u{1}\u{2}binary\u{7f}&&&===",
        "Action=DescribeVpcs&Version=2016-11-15&VpcId.99999999999999999999=vpc-1",
        "Action=DescribeAvailabilityZones&Version=2016-11-15&Filter.1.Name=no-such-filter&Filter.1.Value.1=x",
        "Action=RunInstances&Version=2016-11-15&ImageId=ami-1&MinCount=1&MaxCount=1000000",
        "over-1-MiB",
    ]);
    let expected = [
        "200 ok",
        "400 InvalidAction",
        "400 MissingParameter",
        "400 MissingParameter",
        "400 InvalidParameterValue",
        "400 MissingParameter",
        "400 InvalidParameterValue",
        "400 InvalidParameterValue",
        "400 MissingParameter",
        "400 InvalidParameterValue",
        "400 InvalidParameterValue",
        "400 InvalidParameterValue",
        "413 InvalidParameterValue",
    ];
    assert_eq!(answers, expected);
    // A few hundred calls at once: every one answered, none lost.
    let answers = s.raw(&["parallel"]);
    assert_eq!(answers, ["['200 ok'] 300"]);
    assert_eq!(
        s.raw(&["Action=DescribeRegions&Version=2016-11-15"]),
        ["200 ok"],
        "serve still answers"
    );
}

#[test]
fn every_other_action_through_the_aws_cli() {
    require_root!();
    if !have("aws", "--version") {
        eprintln!("skipped: the aws CLI is missing (run `sudo scripts/setup.sh --test`)");
        return;
    }
    let files = common::Files::new("api-more");
    let dir = files
        .write("placeholder", "")
        .parent()
        .unwrap()
        .join("state");
    let mut s = Serve::start(&dir);
    let lab = format!("t-ap2-{}", std::process::id() % 100_000);
    s.labs.push(lab.clone());

    let regions = s.ec2(&["describe-regions", "--query", "Regions[].RegionName"]);
    assert!(regions.contains("ap-northeast-2"), "{regions}");
    let vpc = s.ec2(&[
        "create-vpc",
        "--cidr-block",
        "10.1.0.0/16",
        "--tag-specifications",
        &format!("ResourceType=vpc,Tags=[{{Key=Name,Value={lab}}}]"),
        "--query",
        "Vpc.VpcId",
    ]);
    s.ec2(&[
        "modify-vpc-attribute",
        "--vpc-id",
        &vpc,
        "--enable-dns-hostnames",
        "{\"Value\":true}",
    ]);
    let subnet = |cidr: &str| {
        s.ec2(&[
            "create-subnet",
            "--vpc-id",
            &vpc,
            "--cidr-block",
            cidr,
            "--availability-zone",
            "ap-northeast-2a",
            "--query",
            "Subnet.SubnetId",
        ])
    };
    let public = subnet("10.1.0.0/24");
    let other = subnet("10.1.1.0/24");
    s.ec2(&[
        "modify-subnet-attribute",
        "--subnet-id",
        &public,
        "--map-public-ip-on-launch",
    ]);
    let maps = s.ec2(&[
        "describe-subnets",
        "--subnet-ids",
        &public,
        &other,
        "--query",
        "Subnets[].[SubnetId,MapPublicIpOnLaunch]",
    ]);
    assert!(
        maps.contains(&format!("{public}\tTrue")) && maps.contains(&format!("{other}\tFalse")),
        "{maps}"
    );

    // Routes: an unattached gateway is refused, then tables are associated, swapped,
    // and their routes replaced and deleted.
    let igw = s.ec2(&[
        "create-internet-gateway",
        "--query",
        "InternetGateway.InternetGatewayId",
    ]);
    let table = |s: &Serve| {
        s.ec2(&[
            "create-route-table",
            "--vpc-id",
            &vpc,
            "--query",
            "RouteTable.RouteTableId",
        ])
    };
    let first = table(&s);
    let second = table(&s);
    let default_route = |action: &str, rt: &str| {
        vec![
            action.to_string(),
            "--route-table-id".into(),
            rt.to_string(),
            "--destination-cidr-block".into(),
            "0.0.0.0/0".into(),
            "--gateway-id".into(),
            igw.clone(),
        ]
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    s.fails_with(
        "Gateway.NotAttached",
        &args(&default_route("create-route", &first)),
    );
    s.fails_with(
        "Gateway.NotAttached",
        &[
            "detach-internet-gateway",
            "--internet-gateway-id",
            &igw,
            "--vpc-id",
            &vpc,
        ],
    );
    s.fails_with(
        "MissingParameter",
        &[
            "create-route",
            "--route-table-id",
            &first,
            "--gateway-id",
            &igw,
        ],
    );
    s.ec2(&[
        "attach-internet-gateway",
        "--internet-gateway-id",
        &igw,
        "--vpc-id",
        &vpc,
    ]);
    s.ec2(&args(&default_route("create-route", &first)));
    s.ec2(&args(&default_route("create-route", &second)));
    s.ec2(&args(&default_route("replace-route", &second)));
    s.ec2(&[
        "delete-route",
        "--route-table-id",
        &second,
        "--destination-cidr-block",
        "0.0.0.0/0",
    ]);
    s.fails_with(
        "InvalidRoute.NotFound",
        &[
            "delete-route",
            "--route-table-id",
            &second,
            "--destination-cidr-block",
            "0.0.0.0/0",
        ],
    );
    let routes = s.ec2(&[
        "describe-route-tables",
        "--route-table-ids",
        &second,
        "--query",
        "RouteTables[0].Routes[].DestinationCidrBlock",
    ]);
    assert_eq!(routes, "10.1.0.0/16", "only the local route is left");
    let assoc = s.ec2(&[
        "associate-route-table",
        "--route-table-id",
        &second,
        "--subnet-id",
        &public,
        "--query",
        "AssociationId",
    ]);
    s.ec2(&["disassociate-route-table", "--association-id", &assoc]);
    let assoc = s.ec2(&[
        "associate-route-table",
        "--route-table-id",
        &second,
        "--subnet-id",
        &public,
        "--query",
        "AssociationId",
    ]);
    let assoc = s.ec2(&[
        "replace-route-table-association",
        "--association-id",
        &assoc,
        "--route-table-id",
        &first,
        "--query",
        "NewAssociationId",
    ]);
    let tables = s.ec2(&[
        "describe-route-tables",
        "--filters",
        &format!("Name=association.subnet-id,Values={public}"),
        "--query",
        "RouteTables[].[RouteTableId,Associations[0].RouteTableAssociationId]",
    ]);
    assert_eq!(tables, format!("{first}\t{assoc}"));

    // Security groups: egress rules added and revoked, rules listed one by one.
    let sg = |name: &str| {
        s.ec2(&[
            "create-security-group",
            "--group-name",
            name,
            "--description",
            name,
            "--vpc-id",
            &vpc,
            "--query",
            "GroupId",
        ])
    };
    let web = sg("web");
    let ssh_anywhere = sg("ssh-anywhere");
    s.ec2(&[
        "authorize-security-group-ingress",
        "--group-id",
        &web,
        "--protocol",
        "tcp",
        "--port",
        "22",
        "--cidr",
        "203.0.113.10/32",
    ]);
    s.ec2(&[
        "authorize-security-group-ingress",
        "--group-id",
        &ssh_anywhere,
        "--protocol",
        "tcp",
        "--port",
        "22",
        "--cidr",
        "0.0.0.0/0",
    ]);
    s.ec2(&[
        "authorize-security-group-egress",
        "--group-id",
        &web,
        "--ip-permissions",
        "IpProtocol=tcp,FromPort=443,ToPort=443,IpRanges=[{CidrIp=0.0.0.0/0}]",
    ]);
    let egress = |s: &Serve| {
        s.ec2(&[
            "describe-security-group-rules",
            "--filters",
            &format!("Name=group-id,Values={web}"),
            "--query",
            "SecurityGroupRules[?IsEgress].[IpProtocol,FromPort,CidrIpv4]",
        ])
    };
    let rules = egress(&s);
    assert!(
        rules.contains("tcp\t443\t0.0.0.0/0") && rules.contains("-1\t-1\t0.0.0.0/0"),
        "{rules}"
    );
    s.ec2(&[
        "revoke-security-group-egress",
        "--group-id",
        &web,
        "--ip-permissions",
        "IpProtocol=-1,IpRanges=[{CidrIp=0.0.0.0/0}]",
    ]);
    assert_eq!(egress(&s), "tcp\t443\t0.0.0.0/0");

    // A key pair made elsewhere, imported: ssh with its private half must work.
    let key = dir.parent().unwrap().join("imported");
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let fingerprint = s.ec2(&[
        "import-key-pair",
        "--key-name",
        "imported",
        "--public-key-material",
        &format!("fileb://{}.pub", key.display()),
        "--query",
        "KeyFingerprint",
    ]);
    let o = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(format!("{}.pub", key.display()))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&fingerprint),
        "{fingerprint} vs {}",
        text(&o)
    );
    s.fails_with(
        "InvalidKeyPair.Duplicate",
        &[
            "import-key-pair",
            "--key-name",
            "imported",
            "--public-key-material",
            &format!("fileb://{}.pub", key.display()),
        ],
    );
    let listed = s.ec2(&[
        "describe-key-pairs",
        "--key-names",
        "imported",
        "--query",
        "KeyPairs[].[KeyName,KeyType,KeyFingerprint]",
    ]);
    assert_eq!(listed, format!("imported\ted25519\t{fingerprint}"));

    let instance = s.ec2(&[
        "run-instances",
        "--image-id",
        "ami-0c9c942bd7bf113a2",
        "--key-name",
        "imported",
        "--security-group-ids",
        &web,
        "--subnet-id",
        &public,
        "--query",
        "Instances[0].InstanceId",
    ]);
    s.ec2(&["wait", "instance-running", "--instance-ids", &instance]);
    let public_ip = |s: &Serve| {
        s.ec2(&[
            "describe-instances",
            "--instance-ids",
            &instance,
            "--query",
            "Reservations[0].Instances[0].PublicIpAddress",
        ])
    };
    let auto_ip = public_ip(&s);
    assert!(
        auto_ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "MapPublicIpOnLaunch: {auto_ip}"
    );
    let o = ssh(&lab, &key, &auto_ip);
    assert!(
        o.status.success(),
        "ssh with the imported key: {}",
        text(&o)
    );

    // An Elastic IP moves onto the instance and off again.
    let eip = s.ec2(&[
        "allocate-address",
        "--domain",
        "vpc",
        "--query",
        "[AllocationId,PublicIp]",
    ]);
    let (eip, eip_ip) = eip.split_once('\t').expect("two columns");
    let association = s.ec2(&[
        "associate-address",
        "--instance-id",
        &instance,
        "--allocation-id",
        eip,
        "--query",
        "AssociationId",
    ]);
    assert_eq!(public_ip(&s), eip_ip);
    assert!(
        ssh(&lab, &key, eip_ip).status.success(),
        "ssh to the Elastic IP"
    );
    s.ec2(&["disassociate-address", "--association-id", &association]);
    // As on AWS, an instance launched with a public IP gets a new one.
    let after = public_ip(&s);
    assert!(
        after != eip_ip && after.parse::<std::net::Ipv4Addr>().is_ok(),
        "public IP after the disassociation: {after}"
    );
    s.ec2(&["release-address", "--allocation-id", eip]);

    // Groups changed on a running instance take effect at once.
    s.ec2(&[
        "modify-instance-attribute",
        "--instance-id",
        &instance,
        "--groups",
        &ssh_anywhere,
    ]);
    let groups = s.ec2(&[
        "describe-instances",
        "--instance-ids",
        &instance,
        "--query",
        "Reservations[0].Instances[0].SecurityGroups[].GroupId",
    ]);
    assert_eq!(groups, ssh_anywhere);

    // Stop, start and reboot, with the CLI's waiters.
    s.ec2(&["stop-instances", "--instance-ids", &instance]);
    s.ec2(&["wait", "instance-stopped", "--instance-ids", &instance]);
    s.ec2(&["start-instances", "--instance-ids", &instance]);
    s.ec2(&["wait", "instance-running", "--instance-ids", &instance]);
    s.ec2(&["reboot-instances", "--instance-ids", &instance]);
    s.ec2(&["wait", "instance-running", "--instance-ids", &instance]);
    let o = ssh(&lab, &key, &public_ip(&s));
    assert!(
        o.status.success(),
        "ssh after stop, start and reboot: {}",
        text(&o)
    );

    // Tags on any resource.
    s.ec2(&[
        "create-tags",
        "--resources",
        &instance,
        &vpc,
        "--tags",
        "Key=env,Value=lab",
    ]);
    let tagged = s.ec2(&[
        "describe-tags",
        "--filters",
        "Name=key,Values=env",
        "--query",
        "Tags[].ResourceId",
    ]);
    let mut tagged: Vec<&str> = tagged.split_whitespace().collect();
    tagged.sort();
    let mut both = [instance.as_str(), vpc.as_str()];
    both.sort();
    assert_eq!(tagged, both);
    s.ec2(&["delete-tags", "--resources", &instance, "--tags", "Key=env"]);
    let tagged = s.ec2(&[
        "describe-tags",
        "--filters",
        "Name=key,Values=env",
        "--query",
        "Tags[].ResourceId",
    ]);
    assert_eq!(tagged, vpc);

    // Everything deleted again.
    s.ec2(&["terminate-instances", "--instance-ids", &instance]);
    s.ec2(&["wait", "instance-terminated", "--instance-ids", &instance]);
    s.ec2(&["delete-key-pair", "--key-name", "imported"]);
    for sub in [&public, &other] {
        s.ec2(&["delete-subnet", "--subnet-id", sub]);
    }
    for rt in [&first, &second] {
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
    for g in [&web, &ssh_anywhere] {
        s.ec2(&["delete-security-group", "--group-id", g]);
    }
    s.ec2(&["delete-vpc", "--vpc-id", &vpc]);
    assert!(
        common::namespaces_of(&lab).is_empty(),
        "the VPC's namespaces are gone"
    );
}
