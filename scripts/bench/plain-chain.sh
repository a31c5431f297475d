#!/bin/bash
# Throughput baselines for scripts/bench.sh's `nat` section, built with plain `ip`:
#
#   scripts/bench/plain-chain.sh up|down
#
# 1. The plain chain: the very path that vpclab's built-in lab gives app -> example-web
#    (app -> vpc-router -> my-nat -> vpc-router -> my-igw -> internet -> example-web, and the
#    replies back the same way through my-nat), with the same namespaces, bridges, veth pairs,
#    addresses and policy rules, but no nftables table at all: no NAT, no security group, no
#    conntrack. 7 namespace traversals, 6 veth crossings, 4 bridge crossings each way.
#      vpclab-benchchain.app       eth0 10.0.1.101/24, default via 10.0.1.1
#      vpclab-benchchain.router    br-private (10.0.1.1/24, port p-app), br-public (10.0.0.1/24,
#                                  port p-nat), to-igw 169.254.1.1/30;
#                                  iif br-private -> table 102: default via 10.0.0.4 (the NAT)
#                                  iif br-public  -> table 101: default via 169.254.1.2 (the IGW)
#                                  iif to-igw     -> table 103: 10.0.1.0/24 via 10.0.0.4 (replies
#                                  hairpin through the NAT as they do when it un-NATs them)
#      vpclab-benchchain.nat       eth0 10.0.0.4/24, default via 10.0.0.1 (in and out of eth0)
#      vpclab-benchchain.igw       to-vpc 169.254.1.2/30, to-internet 169.254.2.1/30
#      vpclab-benchchain.internet  to-igw 169.254.2.2/30, bridge hosts 203.0.113.1/24
#      vpclab-benchchain.web       eth0 203.0.113.60/24, default via 203.0.113.1
#    Sysctls as vpclab sets them: forwarding where it routes, rp_filter, send_redirects and
#    accept_redirects 0, IPv6 off, bridge-nf-call-* 0.
# 2. The direct pair: vpclab-benchdirect.a (10.99.0.1/30) <-> vpclab-benchdirect.b (10.99.0.2/30).
set -euo pipefail
C=vpclab-benchchain
D=vpclab-benchdirect
NS_CHAIN=(app router nat igw internet web)

base() { # ns forward
    ip netns add "$1"
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
        net.ipv4.ip_forward="$2" net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
        net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0 \
        net.ipv4.conf.all.accept_redirects=0 net.ipv4.conf.default.accept_redirects=0
    ip netns exec "$1" sh -c 'for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ -e "$f" ] && echo 0 > "$f"; done; true'
    ip -n "$1" link set lo up
}

case ${1:-} in
up)
    base $C.app 0; base $C.router 1; base $C.nat 1; base $C.igw 1; base $C.internet 1; base $C.web 0
    base $D.a 0; base $D.b 0
    # router: the two subnet bridges and the link to the IGW
    ip -n $C.router link add br-private type bridge
    ip -n $C.router link add br-public type bridge
    ip -n $C.router addr add 10.0.1.1/24 dev br-private
    ip -n $C.router addr add 10.0.0.1/24 dev br-public
    ip -n $C.router link set br-private up
    ip -n $C.router link set br-public up
    ip -n $C.router link add p-app type veth peer name eth0 netns $C.app
    ip -n $C.router link set p-app master br-private
    ip -n $C.router link set p-app up
    ip -n $C.router link add p-nat type veth peer name eth0 netns $C.nat
    ip -n $C.router link set p-nat master br-public
    ip -n $C.router link set p-nat up
    ip -n $C.router link add to-igw type veth peer name to-vpc netns $C.igw
    ip -n $C.router addr add 169.254.1.1/30 dev to-igw
    ip -n $C.router link set to-igw up
    ip -n $C.igw link add to-internet type veth peer name to-igw netns $C.internet
    ip -n $C.internet link add hosts type bridge
    ip -n $C.internet addr add 203.0.113.1/24 dev hosts
    ip -n $C.internet link set hosts up
    ip -n $C.internet link add h-web type veth peer name eth0 netns $C.web
    ip -n $C.internet link set h-web master hosts
    ip -n $C.internet link set h-web up
    # addresses and links up
    ip -n $C.app addr add 10.0.1.101/24 dev eth0
    ip -n $C.app link set eth0 up
    ip -n $C.nat addr add 10.0.0.4/24 dev eth0
    ip -n $C.nat link set eth0 up
    ip -n $C.igw addr add 169.254.1.2/30 dev to-vpc
    ip -n $C.igw addr add 169.254.2.1/30 dev to-internet
    ip -n $C.igw link set to-vpc up
    ip -n $C.igw link set to-internet up
    ip -n $C.internet addr add 169.254.2.2/30 dev to-igw
    ip -n $C.internet link set to-igw up
    ip -n $C.web addr add 203.0.113.60/24 dev eth0
    ip -n $C.web link set eth0 up
    # routes: the same hops as vpclab's NAT path, without the translation
    ip -n $C.app route add default via 10.0.1.1
    ip -n $C.router route add 10.0.0.0/24 dev br-public table 102
    ip -n $C.router route add 10.0.1.0/24 dev br-private table 102
    ip -n $C.router route add default via 10.0.0.4 dev br-public table 102
    ip -n $C.router route add 10.0.0.0/24 dev br-public table 101
    ip -n $C.router route add 10.0.1.0/24 dev br-private table 101
    ip -n $C.router route add default via 169.254.1.2 dev to-igw table 101
    ip -n $C.router route add 10.0.1.0/24 via 10.0.0.4 dev br-public table 103
    ip -n $C.router rule add priority 1000 iif br-private lookup 102
    ip -n $C.router rule add priority 1001 iif br-public lookup 101
    ip -n $C.router rule add priority 1002 iif to-igw lookup 103
    ip -n $C.nat route add default via 10.0.0.1
    ip -n $C.igw route add 10.0.0.0/16 via 169.254.1.1
    ip -n $C.igw route add default via 169.254.2.2
    ip -n $C.internet route add 10.0.0.0/16 via 169.254.2.1
    ip -n $C.web route add default via 203.0.113.1
    # the direct pair
    ip -n $D.a link add eth0 type veth peer name eth0 netns $D.b
    ip -n $D.a addr add 10.99.0.1/30 dev eth0
    ip -n $D.b addr add 10.99.0.2/30 dev eth0
    ip -n $D.a link set eth0 up
    ip -n $D.b link set eth0 up
    ;;
down)
    for n in "${NS_CHAIN[@]}"; do ip netns del $C.$n 2>/dev/null || true; done
    ip netns del $D.a 2>/dev/null || true
    ip netns del $D.b 2>/dev/null || true
    ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
