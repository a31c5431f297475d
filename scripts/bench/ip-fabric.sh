#!/bin/bash
# Plain `ip` baseline for scripts/bench.sh: the fabric of N hosts written as a person would,
# one `ip` process per object.
#
#   scripts/bench/ip-fabric.sh up N     build it
#   scripts/bench/ip-fabric.sh down N   remove it (one `ip netns del` per namespace)
#
# Shape (vpclab's fabric minus NAT/IGW/security groups): a router namespace holding 16
# bridges br0..br15 with the subnet gateways 10.20.S.1/24 (vpclab's vpc-router), and N host
# namespaces; host i has eth0 = 10.20.S.(10 + i/16)/24 with S = i % 16, its peer enslaved to
# bridge brS in the router, and a default route via 10.20.S.1.
# Every object lives in a namespace named vpclab-benchip.*; nothing touches the host's
# namespace (links are created with `ip -n` inside the router and their peer is moved
# straight into the host namespace).
set -euo pipefail
P=vpclab-benchip
cmd=${1:-}; n=${2:-}
[[ $cmd =~ ^(up|down)$ && $n =~ ^[0-9]+$ ]] || { echo "usage: $0 up|down N" >&2; exit 2; }
(( n <= 16 * 240 )) || { echo "$0: at most $((16 * 240)) hosts" >&2; exit 2; }
R=$P.router

if [[ $cmd == up ]]; then
    ip netns add $R
    ip netns exec $R sysctl -qw net.ipv4.ip_forward=1
    ip -n $R link set lo up
    for s in $(seq 0 15); do
        ip -n $R link add br$s type bridge
        ip -n $R addr add 10.20.$s.1/24 dev br$s
        ip -n $R link set br$s up
    done
    for ((i = 0; i < n; i++)); do
        h=$(printf 'h%04d' "$i"); s=$((i % 16)); a=10.20.$s.$((10 + i / 16))
        ip netns add $P.$h
        ip -n $R link add p-$h type veth peer name eth0 netns $P.$h
        ip -n $R link set p-$h master br$s
        ip -n $R link set p-$h up
        ip -n $P.$h link set lo up
        ip -n $P.$h addr add $a/24 dev eth0
        ip -n $P.$h link set eth0 up
        ip -n $P.$h route add default via 10.20.$s.1
    done
else
    for ((i = 0; i < n; i++)); do
        ip netns del $P.$(printf 'h%04d' "$i") 2>/dev/null || true
    done
    ip netns del $R 2>/dev/null || true
fi
