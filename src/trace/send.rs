//! The one real request a trace sends, from a socket opened inside FROM's namespace: a
//! TCP connection attempt, a UDP datagram or a ping (an unprivileged ICMP socket, as
//! `ping` uses). And the temporary listener a trace may start inside TO's namespace when
//! nothing listens there, so the TCP handshake completes (or a datagram is answered).

use crate::kernel::netns;
use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, getsockopt, recv, send, socket,
    sockopt,
};
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }

    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => super::packet::TCP,
            Proto::Udp => super::packet::UDP,
            Proto::Icmp => super::packet::ICMP,
        }
    }
}

/// How the request ended, as the sending socket saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// TCP handshake completed, datagram or echo answered.
    Answered,
    /// TCP RST, or ICMP port unreachable for UDP.
    Refused,
    /// An ICMP error came back (no route, host unreachable...), or sending failed.
    Unreachable(String),
    TimedOut,
}

pub struct Sent {
    pub local_port: u16,
    pub outcome: Outcome,
    pub elapsed: Duration,
    /// The socket, kept open when asked to hold the connection.
    pub socket: Option<OwnedFd>,
}

/// The payload of a traced UDP datagram or ping; the echo listener answers with
/// `REPLY_PREFIX` + the payload (so request and reply have different fingerprints).
pub const PAYLOAD: &[u8] = b"vpclab trace";
pub const REPLY_PREFIX: &[u8] = b"reply to ";

/// Sends the request from a socket inside namespace `ns`.
pub fn request(
    ns: &str,
    proto: Proto,
    dst: SocketAddrV4,
    timeout: Duration,
    keep: bool,
) -> Result<Sent> {
    let handle = netns::open(ns)?;
    netns::run_in(&handle, || match proto {
        Proto::Tcp => tcp(dst, timeout, keep),
        Proto::Udp => udp(dst, timeout),
        Proto::Icmp => icmp(*dst.ip(), timeout),
    })
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

const SOCKADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;

fn bind(fd: &OwnedFd, a: SocketAddrV4) -> nix::Result<()> {
    let sa = sockaddr(a);
    Errno::result(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            SOCKADDR_LEN,
        )
    })
    .map(drop)
}

fn connect(fd: &OwnedFd, a: SocketAddrV4) -> nix::Result<()> {
    let sa = sockaddr(a);
    Errno::result(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            SOCKADDR_LEN,
        )
    })
    .map(drop)
}

fn local_port(fd: &OwnedFd) -> nix::Result<u16> {
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = SOCKADDR_LEN;
    Errno::result(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut sa as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    })?;
    Ok(u16::from_be(sa.sin_port))
}

fn open(ty: SockType, proto: Option<SockProtocol>) -> Result<(OwnedFd, u16)> {
    let fd = socket(
        AddressFamily::Inet,
        ty,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        proto,
    )
    .context("open a socket")?;
    bind(&fd, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).context("bind the socket")?;
    let port = local_port(&fd).context("read the socket's port")?;
    Ok((fd, port))
}

/// Waits until `fd` is ready for `events` or `timeout` passes; false on timeout.
fn wait(fd: &OwnedFd, events: libc::c_short, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = unsafe { libc::poll(&mut p, 1, left.as_millis() as libc::c_int) };
        if r > 0 {
            return true;
        }
        if r == 0 || Errno::last() != Errno::EINTR {
            return false;
        }
    }
}

fn error_outcome(e: Errno) -> Outcome {
    match e {
        Errno::ECONNREFUSED => Outcome::Refused,
        e => Outcome::Unreachable(e.desc().to_string()),
    }
}

fn tcp(dst: SocketAddrV4, timeout: Duration, keep: bool) -> Result<Sent> {
    let (fd, local_port) = open(SockType::Stream, None)?;
    let start = Instant::now();
    let outcome = match connect(&fd, dst) {
        Ok(()) => Outcome::Answered,
        Err(Errno::EINPROGRESS) => {
            if wait(&fd, libc::POLLOUT, timeout) {
                match getsockopt(&fd, sockopt::SocketError) {
                    Ok(0) => Outcome::Answered,
                    Ok(e) => error_outcome(Errno::from_raw(e)),
                    Err(e) => Outcome::Unreachable(e.desc().to_string()),
                }
            } else {
                Outcome::TimedOut
            }
        }
        Err(e) => error_outcome(e),
    };
    let elapsed = start.elapsed();
    let socket = (keep && outcome == Outcome::Answered).then_some(fd);
    Ok(Sent {
        local_port,
        outcome,
        elapsed,
        socket,
    })
}

fn udp(dst: SocketAddrV4, timeout: Duration) -> Result<Sent> {
    let (fd, local_port) = open(SockType::Datagram, None)?;
    connect(&fd, dst).context("connect the UDP socket")?;
    Ok(exchange(&fd, local_port, PAYLOAD, timeout))
}

/// Sends one datagram on a connected socket and waits for what comes back.
fn exchange(fd: &OwnedFd, local_port: u16, msg: &[u8], timeout: Duration) -> Sent {
    let start = Instant::now();
    let outcome = match send(fd.as_raw_fd(), msg, MsgFlags::empty()) {
        Ok(_) => answer(fd, timeout),
        Err(e) => error_outcome(e),
    };
    Sent {
        local_port,
        outcome,
        elapsed: start.elapsed(),
        socket: None,
    }
}

fn answer(fd: &OwnedFd, timeout: Duration) -> Outcome {
    if !wait(fd, libc::POLLIN, timeout) {
        return Outcome::TimedOut;
    }
    let mut buf = [0u8; 1500];
    match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
        Ok(_) => Outcome::Answered,
        Err(e) => error_outcome(e),
    }
}

fn icmp(dst: Ipv4Addr, timeout: Duration) -> Result<Sent> {
    // An ICMP "ping" socket: the kernel picks the echo identifier (the socket's port)
    // and fills in the checksum.
    let (fd, local_port) = open(SockType::Datagram, Some(SockProtocol::Icmp))
        .context("open an ICMP echo socket (net.ipv4.ping_group_range)")?;
    connect(&fd, SocketAddrV4::new(dst, 0)).context("connect the ICMP socket")?;
    let mut msg = vec![8u8, 0, 0, 0, 0, 0, 0, 1];
    msg.extend_from_slice(PAYLOAD);
    Ok(exchange(&fd, local_port, &msg, timeout))
}

/// A listener vpclab started in TO's namespace for the length of a trace.
pub struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _tcp: Option<TcpListener>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Listens on `port` in namespace `ns` unless something already does: `Ok(None)` then.
pub fn listen(ns: &str, proto: Proto, port: u16) -> Result<Option<Listener>> {
    let handle = netns::open(ns)?;
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
    let stop = Arc::new(AtomicBool::new(false));
    match proto {
        Proto::Tcp => match netns::run_in(&handle, || Ok(TcpListener::bind(any)))? {
            // The kernel completes the handshake into the backlog; nobody needs to accept.
            Ok(l) => Ok(Some(Listener {
                stop,
                thread: None,
                _tcp: Some(l),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(None),
            Err(e) => Err(e).with_context(|| format!("listen on tcp/{port} in {ns}")),
        },
        Proto::Udp => match netns::run_in(&handle, || Ok(UdpSocket::bind(any)))? {
            Ok(sock) => {
                sock.set_read_timeout(Some(Duration::from_millis(20)))?;
                let flag = stop.clone();
                let thread = std::thread::spawn(move || {
                    let mut buf = [0u8; 1500];
                    while !flag.load(Ordering::SeqCst) {
                        if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                            let mut reply = REPLY_PREFIX.to_vec();
                            reply.extend_from_slice(&buf[..n]);
                            let _ = sock.send_to(&reply, peer);
                        }
                    }
                });
                Ok(Some(Listener {
                    stop,
                    thread: Some(thread),
                    _tcp: None,
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(None),
            Err(e) => Err(e).with_context(|| format!("listen on udp/{port} in {ns}")),
        },
        Proto::Icmp => Ok(None),
    }
}
