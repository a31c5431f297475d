//! Packet capture inside lab namespaces, with pnet's datalink channels (AF_PACKET).
//!
//! Every socket is opened on a thread that has entered the lab namespace (`netns::run_in`),
//! so it is bound to an interface of that namespace and never sees the host's traffic. A
//! packet socket bound to one interface sees the frames the interface sends and the ones
//! it receives; readers then run on ordinary threads (a socket stays in the namespace it
//! was created in).
//!
//! Each frame gets the kernel's timestamp (`SIOCGSTAMPNS` after each read: the time the
//! kernel handed the frame to the socket as it crossed the interface, not the time the
//! reader got to it), so frames captured in different namespaces can be put in the order
//! they really crossed the lab.

use super::netns;
use anyhow::{Context, Result, anyhow};
use pnet::datalink::{self, Channel, DataLinkReceiver, NetworkInterface};
use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One interface of one namespace to capture on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Point {
    pub ns: String,
    pub iface: String,
}

/// A captured frame (Ethernet), with the kernel's timestamp (since the Unix epoch).
#[derive(Debug, Clone)]
pub struct Frame {
    /// Index into the points given to `Capture::start`.
    pub point: usize,
    pub ts: Duration,
    pub data: Vec<u8>,
}

/// Captures running on a set of points; `stop` returns what they saw.
pub struct Capture {
    stop: Arc<AtomicBool>,
    readers: Vec<JoinHandle<Vec<Frame>>>,
}

/// How long a reader waits for a frame before it checks whether to stop.
const POLL: Duration = Duration::from_millis(10);
/// How long to let the kernel switch timestamping on before anything is sent.
const SETTLE: Duration = Duration::from_millis(20);
/// The longest a reader keeps draining after being asked to stop.
const DRAIN: Duration = Duration::from_millis(200);
/// Frames longer than this are cut (the headers are what a trace needs; the pcap keeps
/// the original length).
const SNAPLEN: usize = 65_535;

// <linux/sockios.h>: the timestamp of the last frame read from the socket.
const SIOCGSTAMPNS: libc::c_ulong = 0x8907;

impl Capture {
    /// Opens a packet socket on every point and starts reading. Returns once every socket
    /// is open, so whatever is sent afterwards is captured.
    pub fn start(points: &[Point]) -> Result<Capture> {
        let mut by_ns: BTreeMap<&str, Vec<(usize, &str)>> = BTreeMap::new();
        for (i, p) in points.iter().enumerate() {
            by_ns.entry(&p.ns).or_default().push((i, &p.iface));
        }
        let opened: Vec<Result<Vec<(usize, Socket)>>> = std::thread::scope(|s| {
            let handles: Vec<_> = by_ns
                .iter()
                .map(|(ns, ifaces)| s.spawn(move || open_in(ns, ifaces)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("capture thread panicked")))
                })
                .collect()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        let mut sockets = Vec::new();
        for o in opened {
            sockets.extend(o?);
        }
        for (point, sock) in sockets {
            let stop = stop.clone();
            readers.push(
                std::thread::Builder::new()
                    .name(format!("capture-{point}"))
                    .spawn(move || read_until(point, sock, &stop))
                    .context("start a capture thread")?,
            );
        }
        // The kernel turns frame timestamps on a moment after the first socket asks
        // (a deferred static-key flip); frames before that would carry read times.
        std::thread::sleep(SETTLE);
        Ok(Capture { stop, readers })
    }

    /// Stops every reader and returns the frames, oldest first.
    pub fn stop(mut self) -> Vec<Frame> {
        self.stop.store(true, Ordering::SeqCst);
        let mut frames: Vec<Frame> = std::mem::take(&mut self.readers)
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect();
        frames.sort_by_key(|f| (f.ts, f.point));
        frames
    }
}

/// A capture dropped without `stop` (an error on the way) still ends its readers.
impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in std::mem::take(&mut self.readers) {
            let _ = h.join();
        }
    }
}

struct Socket {
    rx: Box<dyn DataLinkReceiver>,
    /// The descriptor pnet reads from (pnet owns and closes it).
    fd: RawFd,
}

/// Opens one packet socket per interface, on a thread inside namespace `ns`.
fn open_in(ns: &str, ifaces: &[(usize, &str)]) -> Result<Vec<(usize, Socket)>> {
    let handle = netns::open(ns)?;
    netns::run_in(&handle, || {
        let all = datalink::interfaces();
        ifaces
            .iter()
            .map(|(i, name)| {
                let iface = all
                    .iter()
                    .find(|n| n.name == *name)
                    .ok_or_else(|| anyhow!("{ns} has no interface {name}"))?;
                let sock = open_socket(iface)
                    .with_context(|| format!("open a packet socket on {name} in {ns}"))?;
                Ok((*i, sock))
            })
            .collect()
    })
}

fn open_socket(iface: &NetworkInterface) -> Result<Socket> {
    // Protocol 0: the socket receives nothing until pnet binds it to the interface with
    // ETH_P_ALL, so no frame of another interface slips in before the bind.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_PACKET)");
    }
    // Asking for the last frame's timestamp once switches the socket to recording the
    // kernel's timestamp of every frame it reads (SOCK_TIMESTAMP), and the kernel to
    // stamping frames at all (it answers ENOENT now: nothing was read yet).
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::ioctl(fd, SIOCGSTAMPNS as _, &mut ts) };
    let config = datalink::Config {
        read_buffer_size: SNAPLEN,
        read_timeout: Some(POLL),
        // A packet socket sees every frame a veth sends or receives; promiscuous mode
        // would only make the kernel log that it was switched on.
        promiscuous: false,
        socket_fd: Some(fd),
        ..Default::default()
    };
    match datalink::channel(iface, config) {
        Ok(Channel::Ethernet(_tx, rx)) => Ok(Socket { rx, fd }),
        Ok(_) => Err(anyhow!("pnet returned a non-Ethernet channel")),
        // pnet closes the descriptor itself when binding fails.
        Err(e) => Err(e).context("bind the packet socket"),
    }
}

fn read_until(point: usize, mut sock: Socket, stop: &AtomicBool) -> Vec<Frame> {
    let mut out = Vec::new();
    // Once asked to stop, a reader drains what is queued, but not for ever on a busy link.
    let mut deadline: Option<std::time::Instant> = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            let d = *deadline.get_or_insert_with(|| std::time::Instant::now() + DRAIN);
            if std::time::Instant::now() > d {
                break;
            }
        }
        match sock.rx.next() {
            Ok(data) => {
                let data = data.to_vec();
                out.push(Frame {
                    point,
                    ts: stamp(sock.fd),
                    data,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    out
}

/// The kernel's timestamp of the frame just read; the clock now if there is none.
fn stamp(fd: RawFd) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let r = unsafe { libc::ioctl(fd, SIOCGSTAMPNS as _, &mut ts) };
    if r == 0 && ts.tv_sec > 0 {
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    } else {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// The MAC address of every interface of namespace `ns` (to tell which way a frame went).
pub fn macs(ns: &str) -> Result<BTreeMap<String, [u8; 6]>> {
    let handle = netns::open(ns)?;
    netns::run_in(&handle, || {
        Ok(datalink::interfaces()
            .into_iter()
            .filter_map(|i| Some((i.name, i.mac?.octets())))
            .collect())
    })
}
