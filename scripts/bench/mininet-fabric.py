#!/usr/bin/python3
"""Mininet baseline for scripts/bench.sh: N hosts on 16 LinuxBridge switches, no controller.

    ip netns exec vpclab-benchmn.root /usr/bin/python3 scripts/bench/mininet-fabric.py N

Run it inside a namespace of its own (bench.sh does): Mininet puts its switches and the
host side of every link in the namespace it runs in, which must never be the host's.
The shape follows vpclab's fabric as far as Mininet expresses it: 16 subnets
(10.20.S.0/24, S = 0..15), host i on switch i % 16 with address 10.20.S.(10 + i // 16),
and a router host r0 with one interface on every switch (10.20.S.1) that hosts use as
their default gateway (vpclab's vpc-router).

Prints one line: `build=SECONDS start=SECONDS stop=SECONDS hosts=N`
  build  Mininet(topo, build=True) construction: host shells, veth pairs, addresses
  start  net.start(): the LinuxBridge switches (brctl addbr/addif, ifconfig up)
  stop   net.stop(): every switch, link and host shell torn down
Mininet's fixLimits() is skipped on purpose: it raises host-wide sysctls (fs.file-max,
kernel.pty.max, net.core.*), which this benchmark must not touch; the process's own
rlimits are raised instead.
"""
import os
import resource
import signal
import sys
import time

from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import Host
from mininet.nodelib import LinuxBridge
from mininet.topo import Topo

SUBNETS = 16


class Fabric(Topo):
    def build(self, n=1000):  # pylint: disable=arguments-differ
        switches = [self.addSwitch(f"s{s + 1}") for s in range(SUBNETS)]
        r0 = self.addHost("r0", ip=None)
        for s, sw in enumerate(switches):
            self.addLink(r0, sw, intfName1=f"r0-eth{s}", params1={"ip": f"10.20.{s}.1/24"})
        for i in range(n):
            s = i % SUBNETS
            h = self.addHost(f"h{i + 1}", ip=f"10.20.{s}.{10 + i // SUBNETS}/24",
                             defaultRoute=f"via 10.20.{s}.1")
            self.addLink(h, switches[s])


def raise_limit(which, want):
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY and hard < want:
        want = hard
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    resource.setrlimit(which, (want, hard))


def interrupted(_sig, _frame):
    raise KeyboardInterrupt


def main():
    n = int(sys.argv[1])
    if n > SUBNETS * 240:
        raise SystemExit("mininet-fabric: too many hosts for 16 /24 subnets")
    host_ns = os.environ.get("BENCH_HOST_NETNS")  # `readlink /proc/$$/ns/net` of the caller
    if not host_ns or os.readlink("/proc/self/ns/net") == host_ns:
        raise SystemExit("mininet-fabric: run me with BENCH_HOST_NETNS set, inside a namespace "
                         "of my own (ip netns exec vpclab-benchmn.root ...), never in the host's")
    raise_limit(resource.RLIMIT_NOFILE, 65536)
    raise_limit(resource.RLIMIT_NPROC, 65536)
    Mininet.inited = True  # skip fixLimits(): it would change host-wide sysctls
    setLogLevel("warning")
    # SIGTERM (bench.sh's cleanup) unwinds like Ctrl-C, so net.stop() still runs
    signal.signal(signal.SIGTERM, interrupted)
    net = None
    pids = []
    t0 = time.monotonic()
    try:
        # the same as Mininet(..., build=True), split so a half-built net can be stopped
        net = Mininet(topo=Fabric(n=n), switch=LinuxBridge, host=Host, controller=None,
                      build=False, autoSetMacs=False, waitConnected=False)
        net.build()
        t1 = time.monotonic()
        pids = [h.pid for h in net.hosts]
        net.start()
        t2 = time.monotonic()
        net["r0"].cmd("sysctl -qw net.ipv4.ip_forward=1")
        if os.environ.get("BENCH_MN_CHECK"):
            # sanity: a host reaches a host on another switch through r0
            h1, hl = net.hosts[1], net.hosts[-1]
            out = h1.cmd(f"ping -c1 -W2 {hl.IP()}")
            print("check:", "ok" if " 0% packet loss" in out else "FAILED\n" + out, file=sys.stderr)
    finally:
        if net is not None:
            pids = pids or [h.pid for h in net.hosts if getattr(h, "pid", None)]
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the teardown finish
            t3 = time.monotonic()
            net.stop()
            t4 = time.monotonic()
    alive = [p for p in pids if os.path.exists(f"/proc/{p}")]
    for p in alive:  # belt and braces: host shells are ours, stopped by pid
        try:
            os.kill(p, 9)
        except ProcessLookupError:
            pass
    print(f"build={t1 - t0:.3f} start={t2 - t1:.3f} stop={t4 - t3:.3f} hosts={n}"
          + (f" leftover_shells={len(alive)}" if alive else ""))


if __name__ == "__main__":
    main()
