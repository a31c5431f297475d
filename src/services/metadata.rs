//! The EC2 instance metadata service (IMDS) at 169.254.169.254, IMDSv1 and IMDSv2.
//!
//! HTTP comes from hyper 1 (with hyper-util's tokio glue and http-body-util's `Full` body):
//! it is the HTTP implementation most of the Rust ecosystem runs on, so malformed requests,
//! pipelining, keep-alive and header limits are handled by well-exercised code rather than a
//! parser of ours. Only the HTTP/1 server half is enabled: `curl`, the AWS CLI and cloud-init
//! all speak HTTP/1.1 to IMDS, and nothing here needs a client, TLS or HTTP/2.
//!
//! Inside the VPC nothing rewrites source addresses, so the caller's address *is* its
//! identity: the service looks the caller's private IP up in a table the supervisor owns and
//! swaps atomically (an instance stopped and started gets a new public IP, for instance).
//! Routing is a pure function of (table, request, time), tested without sockets; [`spawn`]
//! only carries requests between hyper and that function. No namespace code lives here.

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue, SERVER};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::{JoinHandle, JoinSet};

/// The header that asks for a token, with its lifetime in seconds.
pub const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// The header that presents a token.
pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// AWS accepts token lifetimes of 1 second to 6 hours.
pub const MAX_TOKEN_TTL: u64 = 21_600;

/// Live tokens kept at most. A client asking for a token per request (the AWS SDKs cache
/// theirs, `curl` loops may not) must not grow the router's memory without bound.
const MAX_TOKENS: usize = 4096;

/// A connection that hasn't sent its request headers by then is closed, so idle or slow
/// connections can't pile up inside the router namespace.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What IMDS tells one instance. The supervisor fills it from the lab; AWS names in comments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceMeta {
    /// `instance-id`, e.g. `i-0a1b2c3d4e5f60718`.
    pub instance_id: String,
    /// `instance-type`, e.g. `t2.micro`.
    pub instance_type: String,
    /// `ami-id`, e.g. `ami-0c9c942bd7bf113a2`.
    pub ami_id: String,
    /// The 12-digit owner account: `owner-id` of the interface, `accountId` of the
    /// identity document.
    pub account_id: String,
    /// `local-ipv4`: the private address, and the key of the table.
    pub local_ipv4: Ipv4Addr,
    /// `public-ipv4`; `None` serves 404, as AWS does for an instance without one.
    pub public_ipv4: Option<Ipv4Addr>,
    /// `local-hostname` and `hostname`: `ip-10-0-2-238.ap-northeast-2.compute.internal`.
    pub local_hostname: String,
    /// `public-hostname`; `None` serves 404.
    pub public_hostname: Option<String>,
    /// `placement/availability-zone`, e.g. `ap-northeast-2a`.
    pub availability_zone: String,
    /// `placement/region`, e.g. `ap-northeast-2`.
    pub region: String,
    /// `security-groups`: group names, one a line.
    pub security_groups: Vec<String>,
    /// `mac` of the primary interface, lowercase `xx:xx:xx:xx:xx:xx`; also the directory
    /// name under `network/interfaces/macs/`.
    pub mac: String,
    /// `vpc-id` of the interface, e.g. `vpc-0123456789abcdef0`.
    pub vpc_id: String,
    /// `vpc-ipv4-cidr-block` of the interface.
    pub vpc_ipv4_cidr_block: Ipv4Net,
    /// `subnet-id` of the interface.
    pub subnet_id: String,
    /// `subnet-ipv4-cidr-block` of the interface.
    pub subnet_ipv4_cidr_block: Ipv4Net,
}

/// The table the service answers from, keyed by private IP, swapped whole by the supervisor.
pub type Table = Arc<ArcSwap<HashMap<Ipv4Addr, InstanceMeta>>>;

/// Serves IMDS on `listener` on the current tokio runtime until the returned task is aborted
/// (which closes the listener and every open connection).
///
/// Must be called from inside a tokio runtime. The listener is already bound (to
/// 169.254.169.254:80 in the lab's router namespace, by the caller).
pub fn spawn(table: Table, listener: std::net::TcpListener) -> Result<JoinHandle<()>> {
    let addr = listener.local_addr().context("metadata listener address")?;
    listener
        .set_nonblocking(true)
        .with_context(|| format!("metadata {addr}: set nonblocking"))?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .with_context(|| format!("metadata {addr}: register with tokio"))?;
    let imds = Arc::new(Imds::new(table));
    Ok(tokio::spawn(async move {
        // Connections live in this set, so aborting the accept loop ends them too.
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(serve_connection(imds.clone(), stream, peer));
                    }
                    // Accept errors are about one connection or a passing shortage of file
                    // descriptors; the listener itself stays good. Back off briefly so a
                    // persistent error doesn't spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }))
}

async fn serve_connection(imds: Arc<Imds>, stream: tokio::net::TcpStream, peer: SocketAddr) {
    let service = service_fn(move |request: Request<Incoming>| {
        let reply = imds.respond(&request, peer.ip(), Instant::now());
        async move { Ok::<_, Infallible>(reply.into_response()) }
    });
    // A client that resets or sends garbage only loses its own connection; hyper has
    // already answered 400 where HTTP allows it.
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// The service's state: the supervisor's table and the tokens it has issued.
pub struct Imds {
    table: Table,
    tokens: Mutex<HashMap<String, Token>>,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    /// A token is good only on the instance it was issued to, as on AWS.
    instance: Ipv4Addr,
    expires: Instant,
}

/// A response before it becomes HTTP: what the routing decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: String,
    /// Extra headers (the granted TTL on a token response).
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn ok(body: impl Into<String>) -> Self {
        Reply {
            status: StatusCode::OK,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    fn error(status: StatusCode, why: &str) -> Self {
        let reason = status.canonical_reason().unwrap_or("Error");
        Reply {
            status,
            body: format!("{} - {reason}\n{why}\n", status.as_u16()),
            headers: Vec::new(),
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(self.body)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        // IMDS serves everything, the JSON identity document included, as text/plain.
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.insert(SERVER, HeaderValue::from_static("EC2ws"));
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

impl Imds {
    pub fn new(table: Table) -> Self {
        Imds {
            table,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Answers one request from `caller` at `now`. Bodies are never read: no IMDS request
    /// carries one that matters.
    pub fn respond<B>(&self, request: &Request<B>, caller: IpAddr, now: Instant) -> Reply {
        let caller = match caller {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(ip) => ip,
                None => return not_an_instance(caller),
            },
        };
        let table = self.table.load();
        let Some(meta) = table.get(&caller) else {
            return not_an_instance(IpAddr::V4(caller));
        };
        let path = request.uri().path();
        let headers = request.headers();
        if matches!(path, "/latest/api/token" | "/latest/api/token/") {
            if request.method() != Method::PUT {
                return Reply::error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "a token is requested with PUT",
                );
            }
            // AWS refuses token requests that went through a proxy, so an SSRF through an
            // open proxy on the instance can't fetch a token.
            if headers.contains_key("x-forwarded-for") {
                return Reply::error(
                    StatusCode::FORBIDDEN,
                    "token requests through a proxy (X-Forwarded-For) are refused",
                );
            }
            let ttl = headers
                .get(TOKEN_TTL_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|ttl| (1..=MAX_TOKEN_TTL).contains(ttl));
            let Some(ttl) = ttl else {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    "X-aws-ec2-metadata-token-ttl-seconds must be 1 to 21600",
                );
            };
            return match self.issue(caller, Duration::from_secs(ttl), now) {
                Ok(token) => Reply {
                    headers: vec![(TOKEN_TTL_HEADER, ttl.to_string())],
                    ..Reply::ok(token)
                },
                Err(_) => Reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "could not generate a token",
                ),
            };
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return Reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "instance metadata is read with GET",
            );
        }
        // IMDSv1 is allowed ("optional", the AWS default), but a token, once presented,
        // must be good: a client that believes it uses IMDSv2 should learn it doesn't.
        if let Some(token) = headers.get(TOKEN_HEADER) {
            let good = token
                .to_str()
                .is_ok_and(|token| self.token_is_valid(token, caller, now));
            if !good {
                return Reply::error(
                    StatusCode::UNAUTHORIZED,
                    "the metadata token is unknown, expired or from another instance",
                );
            }
        }
        match lookup(meta, path) {
            Some(body) => Reply::ok(body),
            None => Reply::error(StatusCode::NOT_FOUND, "no such metadata path"),
        }
    }

    fn issue(&self, instance: Ipv4Addr, ttl: Duration, now: Instant) -> std::io::Result<String> {
        let token = random_token()?;
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= MAX_TOKENS {
            tokens.retain(|_, t| t.expires > now);
        }
        if tokens.len() >= MAX_TOKENS {
            // Still full of live tokens: forget the one closest to expiry, which its
            // client is about to replace anyway.
            if let Some(oldest) = tokens
                .iter()
                .min_by_key(|(_, t)| t.expires)
                .map(|(k, _)| k.clone())
            {
                tokens.remove(&oldest);
            }
        }
        tokens.insert(
            token.clone(),
            Token {
                instance,
                expires: now + ttl,
            },
        );
        Ok(token)
    }

    fn token_is_valid(&self, token: &str, caller: Ipv4Addr, now: Instant) -> bool {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(token)
            .is_some_and(|t| t.instance == caller && t.expires > now)
    }
}

fn not_an_instance(caller: IpAddr) -> Reply {
    Reply::error(
        StatusCode::FORBIDDEN,
        &format!(
            "{caller} is not an instance of this lab (the metadata service answers instances by their private IP)"
        ),
    )
}

/// 32 bytes from the kernel's CSPRNG, hex-encoded: unguessable by another instance.
fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The body at `path`, or `None` for 404. Directories list their entries one a line,
/// subdirectories with a trailing `/`, in AWS's alphabetical order. A directory answers with
/// or without its trailing slash, as AWS does.
pub fn lookup(meta: &InstanceMeta, path: &str) -> Option<String> {
    let path = path.strip_prefix('/')?;
    if path.is_empty() {
        return Some("latest".into());
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["latest"] => Some(listing(&["dynamic/", "meta-data/"])),
        ["latest", "meta-data", rest @ ..] => meta_data(meta, rest),
        ["latest", "dynamic"] => Some(listing(&["instance-identity/"])),
        ["latest", "dynamic", "instance-identity"] => Some(listing(&["document"])),
        ["latest", "dynamic", "instance-identity", "document"] => Some(identity_document(meta)),
        _ => None,
    }
}

fn listing(entries: &[&str]) -> String {
    entries.join("\n")
}

fn meta_data(m: &InstanceMeta, rest: &[&str]) -> Option<String> {
    let some = |s: &str| Some(s.to_string());
    match rest {
        [] => {
            let mut entries = vec![
                "ami-id",
                "hostname",
                "instance-id",
                "instance-type",
                "local-hostname",
                "local-ipv4",
                "mac",
                "network/",
                "placement/",
            ];
            if m.public_hostname.is_some() {
                entries.push("public-hostname");
            }
            if m.public_ipv4.is_some() {
                entries.push("public-ipv4");
            }
            entries.extend(["security-groups", "services/"]);
            Some(listing(&entries))
        }
        ["ami-id"] => some(&m.ami_id),
        ["hostname"] | ["local-hostname"] => some(&m.local_hostname),
        ["instance-id"] => some(&m.instance_id),
        ["instance-type"] => some(&m.instance_type),
        ["local-ipv4"] => Some(m.local_ipv4.to_string()),
        ["mac"] => some(&m.mac),
        ["public-hostname"] => m.public_hostname.clone(),
        ["public-ipv4"] => m.public_ipv4.map(|ip| ip.to_string()),
        ["security-groups"] => Some(m.security_groups.join("\n")),
        ["placement"] => Some(listing(&["availability-zone", "region"])),
        ["placement", "availability-zone"] => some(&m.availability_zone),
        ["placement", "region"] => some(&m.region),
        ["services"] => Some(listing(&["domain", "partition"])),
        ["services", "domain"] => some("amazonaws.com"),
        ["services", "partition"] => some("aws"),
        ["network"] => Some(listing(&["interfaces/"])),
        ["network", "interfaces"] => Some(listing(&["macs/"])),
        ["network", "interfaces", "macs"] => Some(format!("{}/", m.mac)),
        ["network", "interfaces", "macs", mac, rest @ ..] if mac.eq_ignore_ascii_case(&m.mac) => {
            interface(m, rest)
        }
        _ => None,
    }
}

/// The primary interface's directory, the part of it scripts actually read.
fn interface(m: &InstanceMeta, rest: &[&str]) -> Option<String> {
    let some = |s: &str| Some(s.to_string());
    match rest {
        [] => {
            let mut entries = vec![
                "device-number",
                "local-hostname",
                "local-ipv4s",
                "mac",
                "owner-id",
            ];
            if m.public_hostname.is_some() {
                entries.push("public-hostname");
            }
            if m.public_ipv4.is_some() {
                entries.push("public-ipv4s");
            }
            entries.extend([
                "security-groups",
                "subnet-id",
                "subnet-ipv4-cidr-block",
                "vpc-id",
                "vpc-ipv4-cidr-block",
            ]);
            Some(listing(&entries))
        }
        ["device-number"] => some("0"),
        ["local-hostname"] => some(&m.local_hostname),
        ["local-ipv4s"] => Some(m.local_ipv4.to_string()),
        ["mac"] => some(&m.mac),
        ["owner-id"] => some(&m.account_id),
        ["public-hostname"] => m.public_hostname.clone(),
        ["public-ipv4s"] => m.public_ipv4.map(|ip| ip.to_string()),
        ["security-groups"] => Some(m.security_groups.join("\n")),
        ["subnet-id"] => some(&m.subnet_id),
        ["subnet-ipv4-cidr-block"] => Some(m.subnet_ipv4_cidr_block.to_string()),
        ["vpc-id"] => some(&m.vpc_id),
        ["vpc-ipv4-cidr-block"] => Some(m.vpc_ipv4_cidr_block.to_string()),
        _ => None,
    }
}

/// `/latest/dynamic/instance-identity/document`, with AWS's keys in AWS's order. Fields the
/// lab has no notion of (billing products, kernel, ramdisk) are null, as on most instances;
/// `pendingTime` is left out because the lab keeps no launch time.
fn identity_document(m: &InstanceMeta) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Document<'a> {
        account_id: &'a str,
        architecture: &'a str,
        availability_zone: &'a str,
        billing_products: Option<()>,
        devpay_product_codes: Option<()>,
        marketplace_product_codes: Option<()>,
        image_id: &'a str,
        instance_id: &'a str,
        instance_type: &'a str,
        kernel_id: Option<()>,
        private_ip: Ipv4Addr,
        ramdisk_id: Option<()>,
        region: &'a str,
        version: &'a str,
    }
    // The lab's "instances" run on this machine's CPU; AWS calls aarch64 `arm64`.
    let architecture = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        other => other,
    };
    let document = Document {
        account_id: &m.account_id,
        architecture,
        availability_zone: &m.availability_zone,
        billing_products: None,
        devpay_product_codes: None,
        marketplace_product_codes: None,
        image_id: &m.ami_id,
        instance_id: &m.instance_id,
        instance_type: &m.instance_type,
        kernel_id: None,
        private_ip: m.local_ipv4,
        ramdisk_id: None,
        region: &m.region,
        version: "2017-09-30",
    };
    // Serialising plain strings and nulls can't fail; an empty object beats a panic anyway.
    serde_json::to_string_pretty(&document).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 238);
    const APP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 101);
    const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

    fn web(local: Ipv4Addr) -> InstanceMeta {
        InstanceMeta {
            instance_id: "i-0a1b2c3d4e5f60718".into(),
            instance_type: "t2.micro".into(),
            ami_id: "ami-0c9c942bd7bf113a2".into(),
            account_id: "123456789012".into(),
            local_ipv4: local,
            public_ipv4: Some(Ipv4Addr::new(198, 51, 100, 10)),
            local_hostname: "ip-10-0-2-238.ap-northeast-2.compute.internal".into(),
            public_hostname: Some("ec2-198-51-100-10.ap-northeast-2.compute.amazonaws.com".into()),
            availability_zone: "ap-northeast-2a".into(),
            region: "ap-northeast-2".into(),
            security_groups: vec!["MyWebServer-SecurityGroup".into()],
            mac: "02:7a:00:00:02:ee".into(),
            vpc_id: "vpc-0123456789abcdef0".into(),
            vpc_ipv4_cidr_block: "10.0.0.0/16".parse().expect("cidr"),
            subnet_id: "subnet-0123456789abcdef0".into(),
            subnet_ipv4_cidr_block: "10.0.2.0/24".parse().expect("cidr"),
        }
    }

    /// A private instance: no public address, so no public name either.
    fn app() -> InstanceMeta {
        InstanceMeta {
            instance_id: "i-0fedcba9876543210".into(),
            local_ipv4: APP,
            public_ipv4: None,
            local_hostname: "ip-10-0-1-101.ap-northeast-2.compute.internal".into(),
            public_hostname: None,
            security_groups: vec!["MyApp-SecurityGroup".into(), "default".into()],
            ..web(APP)
        }
    }

    fn table(entries: Vec<InstanceMeta>) -> Table {
        Arc::new(ArcSwap::from_pointee(
            entries.into_iter().map(|m| (m.local_ipv4, m)).collect(),
        ))
    }

    fn imds() -> Imds {
        Imds::new(table(vec![web(WEB), app()]))
    }

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).expect("request")
    }

    fn with(method: Method, path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request")
    }

    fn body(imds: &Imds, request: &Request<()>, caller: Ipv4Addr) -> (StatusCode, String) {
        let r = imds.respond(request, IpAddr::V4(caller), Instant::now());
        (r.status, r.body)
    }

    #[test]
    fn scalar_paths_answer_like_aws() {
        let m = web(WEB);
        for (path, want) in [
            ("/latest/meta-data/instance-id", "i-0a1b2c3d4e5f60718"),
            ("/latest/meta-data/instance-type", "t2.micro"),
            ("/latest/meta-data/ami-id", "ami-0c9c942bd7bf113a2"),
            ("/latest/meta-data/local-ipv4", "10.0.2.238"),
            ("/latest/meta-data/public-ipv4", "198.51.100.10"),
            (
                "/latest/meta-data/local-hostname",
                "ip-10-0-2-238.ap-northeast-2.compute.internal",
            ),
            (
                "/latest/meta-data/hostname",
                "ip-10-0-2-238.ap-northeast-2.compute.internal",
            ),
            (
                "/latest/meta-data/public-hostname",
                "ec2-198-51-100-10.ap-northeast-2.compute.amazonaws.com",
            ),
            (
                "/latest/meta-data/placement/availability-zone",
                "ap-northeast-2a",
            ),
            ("/latest/meta-data/placement/region", "ap-northeast-2"),
            (
                "/latest/meta-data/security-groups",
                "MyWebServer-SecurityGroup",
            ),
            ("/latest/meta-data/mac", "02:7a:00:00:02:ee"),
            (
                "/latest/meta-data/network/interfaces/macs/02:7a:00:00:02:ee/subnet-ipv4-cidr-block",
                "10.0.2.0/24",
            ),
            (
                "/latest/meta-data/network/interfaces/macs/02:7A:00:00:02:EE/vpc-id",
                "vpc-0123456789abcdef0",
            ),
            ("/latest/meta-data/services/domain", "amazonaws.com"),
        ] {
            assert_eq!(lookup(&m, path).as_deref(), Some(want), "{path}");
        }
    }

    #[test]
    fn directories_list_entries_with_or_without_the_slash() {
        let m = web(WEB);
        let root = lookup(&m, "/latest/meta-data/").expect("listing");
        assert_eq!(
            root,
            "ami-id\nhostname\ninstance-id\ninstance-type\nlocal-hostname\nlocal-ipv4\nmac\n\
             network/\nplacement/\npublic-hostname\npublic-ipv4\nsecurity-groups\nservices/"
        );
        assert_eq!(
            lookup(&m, "/latest/meta-data").as_deref(),
            Some(root.as_str())
        );
        assert_eq!(
            lookup(&m, "/latest/meta-data/placement/").as_deref(),
            Some("availability-zone\nregion")
        );
        assert_eq!(
            lookup(&m, "/latest/meta-data/network/interfaces/macs/").as_deref(),
            Some("02:7a:00:00:02:ee/")
        );
        assert_eq!(lookup(&m, "/").as_deref(), Some("latest"));
    }

    /// Every entry of every listing is served, so a client walking the tree (as
    /// `ec2-metadata` and cloud-init do) never meets a dangling entry.
    #[test]
    fn every_listed_entry_resolves() {
        for m in [web(WEB), app()] {
            let mut pending = vec!["/latest/".to_string()];
            let mut seen = 0;
            while let Some(dir) = pending.pop() {
                let listing = lookup(&m, &dir).unwrap_or_else(|| panic!("{dir} is listed"));
                for entry in listing.lines() {
                    let path = format!("{dir}{entry}");
                    assert!(lookup(&m, &path).is_some(), "{path} is listed but missing");
                    seen += 1;
                    if entry.ends_with('/') {
                        pending.push(path);
                    }
                }
            }
            assert!(seen > 30, "walked only {seen} entries");
        }
    }

    #[test]
    fn an_instance_without_public_address_gets_404_and_no_listing() {
        let m = app();
        assert_eq!(lookup(&m, "/latest/meta-data/public-ipv4"), None);
        assert_eq!(lookup(&m, "/latest/meta-data/public-hostname"), None);
        let root = lookup(&m, "/latest/meta-data/").expect("listing");
        assert!(!root.contains("public"), "{root}");
        assert_eq!(
            lookup(&m, "/latest/meta-data/security-groups").as_deref(),
            Some("MyApp-SecurityGroup\ndefault")
        );
        let (status, text) = body(&imds(), &get("/latest/meta-data/public-ipv4"), APP);
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(text.starts_with("404 - Not Found"), "{text}");
    }

    #[test]
    fn unknown_paths_are_404() {
        let m = web(WEB);
        for path in [
            "/latest/meta-data/nope",
            "/latest/meta-data/placement/nope",
            "/latest/meta-data/network/interfaces/macs/02:00:00:00:00:01/mac",
            "/latest/user-data",
            "/2009-04-04/meta-data/",
            "/latest//meta-data",
            "latest",
            "",
        ] {
            assert_eq!(lookup(&m, path), None, "{path}");
        }
    }

    #[test]
    fn identity_document_is_aws_shaped_json() {
        let text = lookup(&web(WEB), "/latest/dynamic/instance-identity/document").expect("doc");
        let doc: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(doc["instanceId"], "i-0a1b2c3d4e5f60718");
        assert_eq!(doc["privateIp"], "10.0.2.238");
        assert_eq!(doc["availabilityZone"], "ap-northeast-2a");
        assert_eq!(doc["region"], "ap-northeast-2");
        assert_eq!(doc["accountId"], "123456789012");
        assert_eq!(doc["imageId"], "ami-0c9c942bd7bf113a2");
        assert_eq!(doc["instanceType"], "t2.micro");
        assert_eq!(doc["version"], "2017-09-30");
        assert!(doc["kernelId"].is_null());
        let keys: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix('"')?.split('"').next())
            .collect();
        assert_eq!(keys.first(), Some(&"accountId"));
        assert_eq!(keys.last(), Some(&"version"));
    }

    #[test]
    fn the_caller_is_identified_by_its_address() {
        let imds = imds();
        let path = get("/latest/meta-data/local-ipv4");
        assert_eq!(
            body(&imds, &path, WEB),
            (StatusCode::OK, "10.0.2.238".into())
        );
        assert_eq!(
            body(&imds, &path, APP),
            (StatusCode::OK, "10.0.1.101".into())
        );
        let (status, text) = body(&imds, &path, Ipv4Addr::new(10, 0, 9, 9));
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            text.contains("10.0.9.9 is not an instance of this lab"),
            "{text}"
        );
        // An IPv4-mapped IPv6 peer (a dual-stack listener) is the same instance.
        let mapped = IpAddr::V6(WEB.to_ipv6_mapped());
        assert_eq!(
            imds.respond(&path, mapped, Instant::now()).body,
            "10.0.2.238"
        );
    }

    #[test]
    fn a_swapped_table_answers_at_once() {
        let t = table(vec![web(WEB)]);
        let imds = Imds::new(t.clone());
        let path = get("/latest/meta-data/public-ipv4");
        assert_eq!(body(&imds, &path, WEB).1, "198.51.100.10");
        // Stopped and started: a new auto-assigned public address.
        let mut moved = web(WEB);
        moved.public_ipv4 = Some(Ipv4Addr::new(198, 51, 100, 77));
        t.store(Arc::new([(WEB, moved)].into()));
        assert_eq!(body(&imds, &path, WEB).1, "198.51.100.77");
    }

    #[test]
    fn imdsv2_token_flow() {
        let imds = imds();
        let now = Instant::now();
        let put = with(
            Method::PUT,
            "/latest/api/token",
            &[(TOKEN_TTL_HEADER, "21600")],
        );
        let reply = imds.respond(&put, IpAddr::V4(WEB), now);
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.headers, [(TOKEN_TTL_HEADER, "21600".to_string())]);
        let token = reply.body;
        assert_eq!(token.len(), 64);

        let id = |token: &str, caller: Ipv4Addr, at: Instant| {
            let r = with(
                Method::GET,
                "/latest/meta-data/instance-id",
                &[(TOKEN_HEADER, token)],
            );
            imds.respond(&r, IpAddr::V4(caller), at).status
        };
        assert_eq!(id(&token, WEB, now), StatusCode::OK);
        assert_eq!(id("not-a-token", WEB, now), StatusCode::UNAUTHORIZED);
        // Tokens belong to the instance that asked.
        assert_eq!(id(&token, APP, now), StatusCode::UNAUTHORIZED);
        // And expire.
        let later = now + Duration::from_secs(21_601);
        assert_eq!(id(&token, WEB, later), StatusCode::UNAUTHORIZED);
        // No token at all is IMDSv1, allowed.
        assert_eq!(
            body(&imds, &get("/latest/meta-data/instance-id"), WEB).0,
            StatusCode::OK
        );
    }

    #[test]
    fn bad_token_requests_are_refused() {
        let imds = imds();
        for (headers, want) in [
            (vec![], StatusCode::BAD_REQUEST),
            (vec![(TOKEN_TTL_HEADER, "0")], StatusCode::BAD_REQUEST),
            (vec![(TOKEN_TTL_HEADER, "21601")], StatusCode::BAD_REQUEST),
            (vec![(TOKEN_TTL_HEADER, "ten")], StatusCode::BAD_REQUEST),
            (
                vec![(TOKEN_TTL_HEADER, "60"), ("X-Forwarded-For", "192.0.2.66")],
                StatusCode::FORBIDDEN,
            ),
        ] {
            let r = with(Method::PUT, "/latest/api/token", &headers);
            assert_eq!(body(&imds, &r, WEB).0, want, "{headers:?}");
        }
        let r = with(
            Method::GET,
            "/latest/api/token",
            &[(TOKEN_TTL_HEADER, "60")],
        );
        assert_eq!(body(&imds, &r, WEB).0, StatusCode::METHOD_NOT_ALLOWED);
        let r = with(Method::POST, "/latest/meta-data/instance-id", &[]);
        assert_eq!(body(&imds, &r, WEB).0, StatusCode::METHOD_NOT_ALLOWED);
        // A header value that isn't text can't be a token.
        let mut r = get("/latest/meta-data/instance-id");
        r.headers_mut().insert(
            TOKEN_HEADER,
            HeaderValue::from_bytes(b"\xff\xfe").expect("opaque header"),
        );
        assert_eq!(body(&imds, &r, WEB).0, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn tokens_are_bounded() {
        let imds = imds();
        let now = Instant::now();
        for _ in 0..MAX_TOKENS + 10 {
            imds.issue(WEB, Duration::from_secs(60), now)
                .expect("token");
        }
        assert_eq!(imds.tokens.lock().expect("lock").len(), MAX_TOKENS);
    }

    // ---- over a socket, with curl ---------------------------------------------------------

    /// The command as one would type it, for the transcript.
    fn shell_words(args: &[&str]) -> String {
        let quote = |a: &&str| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:@=%{}".contains(c))
            {
                a.to_string()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        };
        args.iter().map(quote).collect::<Vec<_>>().join(" ")
    }

    async fn curl(args: &[&str]) -> Option<String> {
        let out = match tokio::process::Command::new("curl")
            .args(args)
            .output()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                eprintln!("skipping the curl check: curl not runnable ({e})");
                return None;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        println!("$ curl {}\n{text}\n", shell_words(args));
        Some(text)
    }

    #[tokio::test]
    async fn curl_reads_metadata_with_and_without_a_token() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        // The test's curl connects from 127.0.0.1, so that is the instance here.
        let t = table(vec![web(LOOPBACK)]);
        let task = spawn(t.clone(), listener).expect("spawn metadata");
        let url = |path: &str| format!("{base}{path}");

        let Some(ip) = curl(&[
            "-s",
            "--max-time",
            "5",
            &url("/latest/meta-data/local-ipv4"),
        ])
        .await
        else {
            task.abort();
            return;
        };
        assert_eq!(ip, "127.0.0.1");

        let listing = curl(&["-s", "--max-time", "5", &url("/latest/meta-data/")])
            .await
            .unwrap_or_default();
        assert!(listing.starts_with("ami-id\nhostname\n"), "{listing}");

        let token = curl(&[
            "-s",
            "--max-time",
            "5",
            "-X",
            "PUT",
            "-H",
            "X-aws-ec2-metadata-token-ttl-seconds: 21600",
            &url("/latest/api/token"),
        ])
        .await
        .unwrap_or_default();
        assert_eq!(token.len(), 64, "{token}");
        let header = format!("X-aws-ec2-metadata-token: {token}");
        let id = curl(&[
            "-s",
            "--max-time",
            "5",
            "-H",
            &header,
            &url("/latest/meta-data/instance-id"),
        ])
        .await
        .unwrap_or_default();
        assert_eq!(id, "i-0a1b2c3d4e5f60718");

        let code = |extra: &'static [&'static str], path: &'static str| {
            let url = url(path);
            async move {
                let mut args = vec![
                    "-s",
                    "--max-time",
                    "5",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                ];
                args.extend_from_slice(extra);
                args.push(&url);
                curl(&args).await.unwrap_or_default()
            }
        };
        assert_eq!(
            code(
                &["-H", "X-aws-ec2-metadata-token: forged"],
                "/latest/meta-data/instance-id"
            )
            .await,
            "401"
        );
        assert_eq!(code(&[], "/latest/meta-data/no-such-thing").await, "404");
        assert_eq!(code(&["-X", "PUT"], "/latest/api/token").await, "400");

        let doc = curl(&[
            "-s",
            "--max-time",
            "5",
            &url("/latest/dynamic/instance-identity/document"),
        ])
        .await
        .unwrap_or_default();
        let doc: serde_json::Value = serde_json::from_str(&doc).expect("json document");
        assert_eq!(doc["privateIp"], "127.0.0.1");

        let head = curl(&[
            "-s",
            "-I",
            "--max-time",
            "5",
            &url("/latest/meta-data/instance-id"),
        ])
        .await
        .unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");

        // The table empties (the instance is gone): the caller is now a stranger.
        t.store(Arc::new(HashMap::new()));
        let refused = curl(&[
            "-s",
            "--max-time",
            "5",
            "-w",
            "\n%{http_code}",
            &url("/latest/meta-data/local-ipv4"),
        ])
        .await
        .unwrap_or_default();
        assert!(refused.ends_with("\n403"), "{refused}");
        assert!(
            refused.contains("127.0.0.1 is not an instance of this lab"),
            "{refused}"
        );
        task.abort();
    }

    #[tokio::test]
    async fn garbage_on_the_wire_does_not_stop_the_service() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = spawn(table(vec![web(LOOPBACK)]), listener).expect("spawn metadata");

        let mut bad = tokio::net::TcpStream::connect(addr).await.expect("connect");
        bad.write_all(b"\x00\x01 NOT HTTP\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), bad.read_to_end(&mut answer)).await;
        assert!(answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"));

        let mut good = tokio::net::TcpStream::connect(addr).await.expect("connect");
        good.write_all(
            b"GET /latest/meta-data/instance-type HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("write");
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), good.read_to_string(&mut answer))
            .await
            .expect("an answer within 5 s")
            .expect("read");
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("t2.micro"), "{answer}");
        task.abort();
    }
}
