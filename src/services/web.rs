//! nginx on EC2-like hosts (HTTP on 80, HTTPS on 443 with a self-signed certificate) and
//! on the internet's example web server. Every page says who answered and which client
//! address it saw, so NAT can be checked from the far side; `/ip` returns just that
//! address, for probes.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

pub const NGINX: &str = "/usr/sbin/nginx";

/// What the page of a host says about itself.
pub struct Page {
    pub title: String,
    pub lines: Vec<String>,
}

/// Text for an nginx `return` string: quotes and backslashes escaped, `$` dropped
/// (nginx would read it as a variable; lab names never contain one).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('$', "")
}

pub fn nginx_conf(dir: &Path, page: &Page, http: bool, https: bool) -> String {
    let d = dir.display();
    let mut listen = String::new();
    if http {
        listen.push_str("        listen 80;\n");
    }
    if https {
        listen.push_str(&format!(
            "        listen 443 ssl;\n        ssl_certificate {d}/cert.pem;\n        ssl_certificate_key {d}/key.pem;\n"
        ));
    }
    let mut body = format!("<h1>{}</h1>\\n", escape(&page.title));
    for l in &page.lines {
        body.push_str(&format!("<p>{}</p>\\n", escape(l)));
    }
    body.push_str("<p>your address, as this server saw it: $remote_addr</p>\\n");
    format!(
        "# written by vpclab\n\
         daemon off;\n\
         worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log;\n\
         user www-data;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         \x20   access_log {d}/access.log;\n\
         \x20   client_body_temp_path {d}/tmp;\n\
         \x20   proxy_temp_path {d}/tmp;\n\
         \x20   fastcgi_temp_path {d}/tmp;\n\
         \x20   uwsgi_temp_path {d}/tmp;\n\
         \x20   scgi_temp_path {d}/tmp;\n\
         \x20   server {{\n\
         {listen}\
         \x20       default_type text/html;\n\
         \x20       location = /ip {{ default_type text/plain; return 200 \"$remote_addr\\n\"; }}\n\
         \x20       location / {{ return 200 \"{body}\"; }}\n\
         \x20   }}\n\
         }}\n"
    )
}

pub fn nginx_args(dir: &Path) -> Vec<String> {
    let d = dir.display();
    vec![
        "-p".into(),
        format!("{d}/"),
        "-e".into(),
        format!("{d}/error.log"),
        "-c".into(),
        format!("{d}/nginx.conf"),
    ]
}

/// A self-signed certificate for the host's names and addresses (`openssl req -x509`).
pub fn self_signed(dir: &Path, cn: &str, dns: &[String], ips: &[String]) -> Result<()> {
    let mut san: Vec<String> = dns.iter().map(|d| format!("DNS:{d}")).collect();
    san.extend(ips.iter().map(|i| format!("IP:{i}")));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-days",
            "365",
            "-subj",
        ])
        .arg(format!("/CN={cn}"))
        .arg("-addext")
        .arg(format!("subjectAltName={}", san.join(",")))
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .context("run openssl (is the openssl package installed?)")?;
    if !out.status.success() {
        bail!(
            "openssl req: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
