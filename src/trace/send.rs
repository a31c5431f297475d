//! The one real request a trace sends, from a socket opened inside FROM's namespace: a
//! TCP connection attempt, a UDP datagram or a ping (an unprivileged ICMP socket, as
//! `ping` uses). And the temporary listener a trace may start inside TO's namespace when
//! nothing listens there, so the TCP handshake completes (or a datagram is answered).

use crate::kernel::netns;
use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, bind, connect,
    getsockname, getsockopt, recv, send, socket, sockopt,
};
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
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

fn connect_to(fd: &OwnedFd, a: SocketAddrV4) -> nix::Result<()> {
    connect(fd.as_raw_fd(), &SockaddrIn::from(a))
}

fn open(ty: SockType, proto: Option<SockProtocol>) -> Result<(OwnedFd, u16)> {
    let fd = socket(
        AddressFamily::Inet,
        ty,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        proto,
    )
    .context("open a socket")?;
    let any = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    bind(fd.as_raw_fd(), &any).context("bind the socket")?;
    let port = getsockname::<SockaddrIn>(fd.as_raw_fd())
        .context("read the socket's port")?
        .port();
    Ok((fd, port))
}

/// Waits until `fd` is ready for `events` or `timeout` passes; false on timeout.
fn wait(fd: &OwnedFd, events: PollFlags, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [PollFd::new(fd.as_fd(), events)];
        match poll(
            &mut fds,
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(n) if n > 0 => return true,
            Err(Errno::EINTR) => continue,
            _ => return false,
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
    let outcome = match connect_to(&fd, dst) {
        Ok(()) => Outcome::Answered,
        Err(Errno::EINPROGRESS) => {
            if wait(&fd, PollFlags::POLLOUT, timeout) {
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
    connect_to(&fd, dst).context("connect the UDP socket")?;
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
    if !wait(fd, PollFlags::POLLIN, timeout) {
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
    connect_to(&fd, SocketAddrV4::new(dst, 0)).context("connect the ICMP socket")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    /// A port nothing listens on: one the kernel just handed out and took back.
    fn closed_tcp_port() -> u16 {
        TcpListener::bind(loopback(0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn tcp_completes_the_handshake_from_the_port_it_reports() {
        let server = TcpListener::bind(loopback(0)).unwrap();
        let dst = loopback(server.local_addr().unwrap().port());
        let sent = tcp(dst, Duration::from_secs(2), true).unwrap();
        assert_eq!(sent.outcome, Outcome::Answered);
        assert!(sent.socket.is_some(), "kept when asked to");
        let (_, peer) = server.accept().unwrap();
        assert_eq!(peer.port(), sent.local_port);

        let sent = tcp(dst, Duration::from_secs(2), false).unwrap();
        assert!(sent.socket.is_none());
    }

    #[test]
    fn tcp_to_a_closed_port_is_refused() {
        let sent = tcp(loopback(closed_tcp_port()), Duration::from_secs(2), false).unwrap();
        assert_eq!(sent.outcome, Outcome::Refused);
    }

    #[test]
    fn udp_sends_the_payload_and_times_out_without_an_answer() {
        let server = UdpSocket::bind(loopback(0)).unwrap();
        let dst = loopback(server.local_addr().unwrap().port());
        let sent = udp(dst, Duration::from_millis(50)).unwrap();
        assert_eq!(sent.outcome, Outcome::TimedOut);
        // poll(2) counts whole milliseconds: the wait may end a fraction of one early.
        assert!(
            sent.elapsed >= Duration::from_millis(45),
            "{:?}",
            sent.elapsed
        );
        let mut buf = [0u8; 64];
        let (n, peer) = server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], PAYLOAD);
        assert_eq!(peer.port(), sent.local_port);
    }

    #[test]
    fn udp_is_answered_by_a_listener_and_refused_by_a_closed_port() {
        let server = UdpSocket::bind(loopback(0)).unwrap();
        let dst = loopback(server.local_addr().unwrap().port());
        let echo = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let (n, peer) = server.recv_from(&mut buf).unwrap();
            server.send_to(&buf[..n], peer).unwrap();
        });
        let sent = udp(dst, Duration::from_secs(2)).unwrap();
        echo.join().unwrap();
        assert_eq!(sent.outcome, Outcome::Answered);
        // The listener is gone: the kernel answers ICMP port unreachable.
        let sent = udp(dst, Duration::from_secs(2)).unwrap();
        assert_eq!(sent.outcome, Outcome::Refused);
    }
}
