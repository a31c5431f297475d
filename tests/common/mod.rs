//! Helpers for the root-only integration tests: bring labs up under unique names, tear
//! them down on drop, and open real sockets inside lab namespaces.
#![allow(dead_code)]

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::time::Duration;

pub fn vpclab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vpclab"))
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Root-only tests return early, saying why, when not run as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !common::is_root() {
            eprintln!("skipped: this test needs root (run `sudo scripts/test.sh`)");
            return;
        }
    };
}

pub fn text(o: &Output) -> String {
    format!(
        "exit: {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A lab that is up for the length of a test; `down` runs when it is dropped, even
/// when the test panics.
pub struct Lab {
    pub name: String,
}

impl Lab {
    pub fn up(file: Option<&str>, name: &str) -> Lab {
        let lab = Lab {
            name: name.to_string(),
        };
        let mut c = vpclab();
        c.arg("up").arg("--quiet").arg("--name").arg(name);
        if let Some(f) = file {
            c.arg(f);
        }
        let o = c.output().expect("run vpclab up");
        assert!(o.status.success(), "vpclab up failed:\n{}", text(&o));
        lab
    }

    pub fn ns(&self, node: &str) -> String {
        format!("vpclab-{}.{node}", self.name)
    }

    pub fn exec(&self, node: &str, args: &[&str]) -> Output {
        vpclab()
            .args(["exec", "--lab", &self.name, node, "--"])
            .args(args)
            .output()
            .expect("run vpclab exec")
    }

    /// `curl` from `node` to `url` with a deadline of `secs`: the HTTP status on stdout
    /// (`000` when nothing answered).
    pub fn http_status(&self, node: &str, url: &str, secs: u32) -> Output {
        let secs = secs.to_string();
        self.exec(
            node,
            &[
                "curl",
                "-s",
                "-m",
                &secs,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                url,
            ],
        )
    }

    pub fn listen(&self, node: &str, addr: &str) -> TcpListener {
        listen_in(&self.ns(node), addr)
    }

    pub fn connect(&self, node: &str, addr: &str) -> std::io::Result<TcpStream> {
        connect_from(&self.ns(node), addr, Duration::from_millis(1500))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let o = vpclab()
            .args(["down", &self.name])
            .output()
            .expect("run vpclab down");
        if !o.status.success() {
            eprintln!("vpclab down {} failed:\n{}", self.name, text(&o));
        }
    }
}

/// Runs `f` on a thread inside namespace `ns`; sockets made there stay in it.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let file = File::open(format!("/run/netns/{ns}")).expect("open namespace");
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("thread in namespace")
    })
}

pub fn listen_in(ns: &str, addr: &str) -> TcpListener {
    in_netns(ns, || TcpListener::bind(addr).expect("bind listener"))
}

pub fn connect_from(ns: &str, addr: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let addr: SocketAddr = addr.parse().expect("socket address");
    in_netns(ns, || TcpStream::connect_timeout(&addr, timeout))
}

/// Accepts one connection (with a deadline) and returns the source address it came from.
pub fn accept_source(l: &TcpListener) -> Option<SocketAddr> {
    l.set_nonblocking(true).unwrap();
    for _ in 0..100 {
        match l.accept() {
            Ok((_, peer)) => return Some(peer),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    None
}

/// Namespaces of a lab that exist now.
pub fn namespaces_of(lab: &str) -> Vec<String> {
    let prefix = format!("vpclab-{lab}.");
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything a lab could leave behind: namespaces, state dir, processes started from
/// the lab's state dir, mounts mentioning it.
pub fn leftovers(lab: &str) -> Vec<String> {
    let mut out: Vec<String> = namespaces_of(lab)
        .into_iter()
        .map(|n| format!("namespace {n}"))
        .collect();
    let dir = format!("/run/vpclab/{lab}");
    if std::path::Path::new(&dir).exists() {
        out.push(format!("state dir {dir}"));
    }
    // Processes of the lab: started with a path in its state dir.
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for e in procs.filter_map(|e| e.ok()) {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&format!("{dir}/")) || cmd.contains(&format!("supervise {lab}")) {
                out.push(format!("process {pid}: {cmd}"));
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mounts.lines() {
        if line.contains(&format!("vpclab-{lab}.")) || line.contains(&dir) {
            out.push(format!("mount {line}"));
        }
    }
    out
}

/// A folder for this test's lab files, removed at the end.
pub struct Files(std::path::PathBuf);

impl Files {
    pub fn new(name: &str) -> Files {
        let d = std::env::temp_dir().join(format!("vpclab-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Files(d)
    }

    pub fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
