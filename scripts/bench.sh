#!/bin/bash
# vpclab benchmarks: medians over several runs, and ratios measured side by side in the same
# run (contenders interleaved run by run: A, B, A, B, ... so the machine's noise hits both).
#
#   sudo scripts/bench.sh [--only SECTION[,SECTION...]] [--runs N] [--quick] [--json FILE]
#                         [--mininet-runs N] [--sizes "100 250"] [--vpclab PATH] [--list]
#
# Sections (see scripts/bench/README.md for what each measures and how):
#   fabric   the built-in lab's fabric: `vpclab up --fabric-only` / `vpclab down`    (<= 0.5 s each)
#   services the built-in lab with every service but the database, ready for probes (<= 1.5 s),
#            and the probe suite of the full lab                                      (<= 3 s)
#   database the database pair's ready time (<= 2 s) and the RTO of 10 failover drills
#            (median <= 3 s; every drill must lose no acknowledged write)
#   scale    labs/scale-1000.yaml: vpclab up/down (<= 10 s / <= 5 s), interleaved with the
#            same number of hosts built by a plain `ip` script and by Mininet 2.3
#            (LinuxBridge, no controller)                                    (vpclab >= 5x Mininet)
#   scaling  the same three contenders at smaller sizes (default 100 and 250 hosts)
#   nat      iperf3 throughput app -> example-web through the NAT and internet gateways,
#            alternated with the same path in a second lab (benchacl) whose two subnets on it
#            carry network ACLs of 20 rules each way that the traffic matches only at the last
#            rule, in a third (benchflow) with VPC flow logs on every interface, a
#            plain-forwarding chain of the same hops, and a direct veth pair
#                                    (NAT path >= 90 % plain; NAT path with ACL >= 90 % NAT path;
#                                     NAT path with flow logs >= 90 % NAT path)
#   services-scale
#            the same generated lab at 200, 400 and 1,000 instances, every one with sshd and
#            nginx (scripts/gen-scale-lab.py N --services ssh,http), interleaved: the services
#            step and up/down wall times, time per instance (1,000 within 1.5x of 200), up of
#            1,000 ready for probes (<= 10 s), down (<= 3 s), memory (PSS) and processes per
#            instance, and ssh + http to 50 random instances right after up (no failure allowed)
#   apply    vpclab apply on running labs: one security-group rule on labs/scale-1000.yaml (<= 50 ms)
#            against down + up of the same lab, one instance with sshd and nginx added to the
#            built-in lab (<= 300 ms), a no-change apply on the 1,000-instance lab (<= 100 ms)
#   api      vpclab serve against moto's server mode (`moto[server]` from PyPI, in a venv under
#            /var/cache/vpclab): the write-up's VPC built with the same `aws ec2` calls
#            (scripts/bench/api-seed.sh), runs interleaved (vpclab <= 1.2x moto), and the
#            server-side p50 that serve logs per call: DescribeInstances on the built-in lab
#            (<= 2 ms), CreateSubnet and AuthorizeSecurityGroupIngress (<= 30 ms each)
#
# Every number printed comes from a command run in this invocation. Nothing is created in the
# host's network namespace: every namespace is named vpclab-bench*.*, Mininet runs inside a
# namespace of its own, and the root namespace is snapshotted before and after and compared.
# Exit status: 0 every target met, 1 a target missed, 3 the host's root namespace changed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/scripts/bench
ALL_SECTIONS=(fabric services services-scale database scale scaling nat apply api)
declare -A SECTION_HELP=(
    [fabric]="built-in lab fabric: vpclab up/down"
    [services]="built-in lab with services (no database) ready; the probe suite"
    [database]="database pair ready time; RTO over 10 failover drills"
    [scale]="1,000-instance lab: vpclab vs plain ip script vs Mininet"
    [scaling]="the same three at smaller sizes (--sizes)"
    [nat]="iperf3 through the NAT path vs the same with a 20-rule network ACL, with flow logs, a plain chain, a direct veth pair"
    [services-scale]="200, 400, 1,000 instances each with sshd and nginx: services step, up/down, per instance, memory, 50 probes"
    [apply]="vpclab apply: a rule change on 1,000 instances vs down+up, one instance added, a no-change apply"
    [api]="vpclab serve vs moto server: the write-up's VPC by aws ec2 calls; server-side p50 per call"
)

RUNS=5
RUNS_SET=0
QUICK=0
ONLY=""
JSON=""
MN_RUNS=""          # Mininet runs at 1,000 hosts (default: min(RUNS, 3); 0 with --quick)
SIZES=""            # sizes for the scaling section
VPCLAB=${VPCLAB:-}

usage() { sed -n '2,36p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while (($#)); do
    case $1 in
    --only) ONLY=$2; shift 2 ;;
    --only=*) ONLY=${1#*=}; shift ;;
    --runs) RUNS=$2; RUNS_SET=1; shift 2 ;;
    --runs=*) RUNS=${1#*=}; RUNS_SET=1; shift ;;
    --quick) QUICK=1; shift ;;
    --json) JSON=$2; shift 2 ;;
    --json=*) JSON=${1#*=}; shift ;;
    --mininet-runs) MN_RUNS=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --vpclab) VPCLAB=$2; shift 2 ;;
    --list) for s in "${ALL_SECTIONS[@]}"; do printf '%-15s %s\n' "$s" "${SECTION_HELP[$s]}"; done; exit 0 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if ((QUICK)); then
    ((RUNS_SET)) || RUNS=3
    : "${MN_RUNS:=0}"
    : "${SIZES:=100 250}"
fi
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: --runs wants a positive number" >&2; exit 2; }
: "${MN_RUNS:=$((RUNS < 3 ? RUNS : 3))}"
: "${SIZES:=100 250}"
SELECTED=()
if [[ -n $ONLY ]]; then
    IFS=, read -ra SELECTED <<<"$ONLY"
    for s in "${SELECTED[@]}"; do
        [[ -n ${SECTION_HELP[$s]:-} ]] || { echo "bench.sh: no section '$s' (try --list)" >&2; exit 2; }
    done
else
    SELECTED=("${ALL_SECTIONS[@]}")
fi
selected() { local s; for s in "${SELECTED[@]}"; do [[ $s == "$1" ]] && return 0; done; return 1; }

[[ $(id -u) == 0 ]] || { echo "bench.sh: run as root (sudo scripts/bench.sh): it builds namespaces" >&2; exit 1; }

# ---------------------------------------------------------------- helpers

say() { printf '%s\n' "$*"; }
die() { printf 'bench.sh: %s\n' "$*" >&2; exit 1; }

# Microseconds since the epoch, without a fork.
now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }
# secs START_US END_US -> seconds with 3 decimals
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e6 }'; }

# timed VAR CMD... : runs CMD, stores its wall time in seconds in VAR; returns CMD's status.
timed() {
    local __var=$1; shift
    local t0 t1 rc
    t0=$(now_us); "$@"; rc=$?; t1=$(now_us)
    printf -v "$__var" '%s' "$(secs "$t0" "$t1")"
    return $rc
}

# median V... -> the median (mean of the middle two for an even count)
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# ratio A B -> A / B with 2 decimals
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || a == "nan" || b == "nan") print "nan"; else printf "%.2f", a / b }'; }

# The summary: one row per metric.
SUM_SECTION=() SUM_METRIC=() SUM_VALUE=() SUM_UNIT=() SUM_RUNS=() SUM_TARGET=() SUM_RESULT=() SUM_VALUES=()
# record SECTION METRIC VALUE UNIT RUNS TARGET [VALUES...]
#   TARGET: "<= 0.5", ">= 5", or "-" (informational); VALUE may be "nan" or "skip".
record() {
    local section=$1 metric=$2 value=$3 unit=$4 runs=$5 target=$6; shift 6
    local result=info
    if [[ $value == skip ]]; then
        result=skip
    elif [[ $target != - ]]; then
        result=$(awk -v v="$value" -v op="${target%% *}" -v t="${target#* }" 'BEGIN {
            if (v == "nan") { print "FAIL"; exit }
            ok = (op == "<=") ? (v + 0 <= t + 0) : (v + 0 >= t + 0); print ok ? "pass" : "FAIL" }')
    fi
    SUM_SECTION+=("$section") SUM_METRIC+=("$metric") SUM_VALUE+=("$value") SUM_UNIT+=("$unit")
    SUM_RUNS+=("$runs") SUM_TARGET+=("$target") SUM_RESULT+=("$result") SUM_VALUES+=("$*")
}

# ---------------------------------------------------------------- tools

ensure_packages() {
    local want=() p
    local -A need=([iproute2]=ip [nftables]=nft [iperf3]=iperf3 [bridge-utils]=brctl [net-tools]=ifconfig [mininet]=mnexec)
    for p in "$@"; do command -v "${need[$p]}" >/dev/null 2>&1 || want+=("$p"); done
    if [[ " $* " == *" mininet "* ]] && ! /usr/bin/python3 -c 'import mininet.net' 2>/dev/null; then
        [[ " ${want[*]} " == *" mininet "* ]] || want+=(mininet)
    fi
    ((${#want[@]})) || return 0
    say "installing missing packages: ${want[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${want[@]}" >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null 2>&1
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${want[@]}" >/dev/null
    } || die "could not install ${want[*]}"
}

find_vpclab() {
    if [[ -z $VPCLAB ]]; then
        VPCLAB=${CARGO_TARGET_DIR:-$ROOT/target}/release/vpclab
        if [[ ! -x $VPCLAB ]]; then
            say "building vpclab (cargo build --release) ..."
            (cd "$ROOT" && cargo build --release -q) || die "cargo build failed"
        fi
    fi
    [[ -x $VPCLAB ]] || die "no vpclab binary at $VPCLAB (set VPCLAB or --vpclab)"
}

# ---------------------------------------------------------------- cleanup

TMP=$(mktemp -d /tmp/vpclab-bench.XXXXXX)
LABS_UP=()          # vpclab labs this run may have up
BG_PIDS=()          # background processes this run started (Mininet)
forget_pid() { local p keep=(); for p in "${BG_PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done; BG_PIDS=("${keep[@]}"); }

# remove_ns_prefix PREFIX: delete every namespace whose name starts with PREFIX (ours by tag)
# (/run/netns is read directly: `ip netns list` complains about namespaces being deleted)
ns_names() { ls /run/netns 2>/dev/null; }
remove_ns_prefix() { local n; for n in $(ns_names); do [[ $n == "$1"* ]] && ip netns del "$n"; done; return 0; }
lab_down() { "$VPCLAB" down "$1" >/dev/null 2>&1 || true; }
netns_exists() { [[ -e /run/netns/$1 ]]; }

cleanup() {
    local p l
    # iperf3 servers run in a command substitution: their pid is in a file
    [[ -s $TMP/iperf-server.pid ]] && kill -TERM "$(cat "$TMP/iperf-server.pid")" 2>/dev/null
    # Mininet unwinds on SIGTERM and runs net.stop(), which takes up to a minute at 1,000 hosts
    for p in "${BG_PIDS[@]}"; do
        if kill -TERM "$p" 2>/dev/null; then
            echo "bench.sh: waiting for pid $p to stop (Mininet's net.stop(), a server) ..." >&2
            for ((l = 0; l < 1200; l++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$p" 2>/dev/null
        fi
    done
    for l in "${LABS_UP[@]}"; do netns_exists "vpclab-$l.vpc-router" && lab_down "$l"; done
    remove_ns_prefix vpclab-benchip.
    "$BENCH/plain-chain.sh" down >/dev/null 2>&1
    netns_exists vpclab-benchmn.root && ip netns del vpclab-benchmn.root
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo "bench.sh: interrupted" >&2; exit 130' INT TERM

# Leftovers of an earlier, interrupted run carry our tags: remove them first.
stale_cleanup() {
    local n l
    for n in $(ns_names | grep -E '^vpclab-bench[a-z0-9]*\.vpc-router$'); do
        l=${n#vpclab-}; l=${l%.vpc-router}
        say "removing a lab left by an earlier run: $l"; lab_down "$l"
    done
    remove_ns_prefix vpclab-benchip.
    "$BENCH/plain-chain.sh" down >/dev/null 2>&1
    netns_exists vpclab-benchmn.root && ip netns del vpclab-benchmn.root
    if ns_names | grep -q '^vpclab-bench'; then
        die "namespaces vpclab-bench* remain from an earlier run: $(ns_names | grep '^vpclab-bench' | head -3 | tr '\n' ' ')"
    fi
}

# The host's root network namespace, to compare before and after (the README's "Safety": a lab never touches it).
root_snapshot() {
    {
        ip -d link; ip addr; ip route show table all; ip rule; nft list ruleset
        sysctl net.ipv4.ip_forward net.ipv4.conf.all.rp_filter net.ipv4.conf.all.forwarding \
            net.core.rmem_max net.core.wmem_max net.core.netdev_max_backlog fs.file-max kernel.pty.max \
            net.ipv4.neigh.default.gc_thresh1 net.ipv4.neigh.default.gc_thresh2 \
            net.ipv4.neigh.default.gc_thresh3 net.ipv4.tcp_rmem net.ipv4.tcp_wmem 2>/dev/null
    } 2>&1
}

# ---------------------------------------------------------------- contenders

# `ip netns del`, `vpclab down` and Mininet's killed shells return before the kernel has freed
# the namespaces (that work runs later in a kernel work queue). All three are timed until their
# command returns, and each teardown is followed by the same short pause, so the next contender
# does not start in the middle of the previous one's kernel clean-up.
PAUSE=2
pause() { sleep "$PAUSE"; }

# vpclab_updown LAB FILE|"" UPVAR DOWNVAR [STEPSVAR]: one `up` then one `down`, timed.
# The built-in lab is brought up with --quiet; a lab file without it, stdout discarded and
# the per-step timings (stderr) kept in STEPSVAR.
vpclab_updown() {
    local lab=$1 file=$2 __up=$3 __down=$4 __steps=${5:-} t
    LABS_UP+=("$lab")
    if [[ -z $file ]]; then
        timed t "$VPCLAB" up --name "$lab" --fabric-only --quiet || die "vpclab up --name $lab failed"
    else
        timed t "$VPCLAB" up --name "$lab" --fabric-only "$file" >/dev/null 2>"$TMP/up.err" \
            || { cat "$TMP/up.err" >&2; die "vpclab up --name $lab $file failed"; }
        [[ -n $__steps ]] && printf -v "$__steps" '%s' "$(steps_of "$TMP/up.err")"
    fi
    printf -v "$__up" '%s' "$t"
    timed t "$VPCLAB" down "$lab" >/dev/null || die "vpclab down $lab failed"
    printf -v "$__down" '%s' "$t"
    netns_exists "vpclab-$lab.vpc-router" && die "vpclab down $lab left its router namespace"
    pause
}
# "  namespaces   1006 namespaces, ... (8840 ms)" -> "namespaces=8840 links=845 ..."
steps_of() { awk 'match($0, /\([0-9]+ ms\)$/) { printf "%s=%s ", $1, substr($0, RSTART + 1, RLENGTH - 5) }' "$1" | sed 's/ $//'; }

ipfab_updown() { # N UPVAR DOWNVAR
    local n=$1 __up=$2 __down=$3 t
    timed t "$BENCH/ip-fabric.sh" up "$n" || die "ip-fabric.sh up $n failed"
    printf -v "$__up" '%s' "$t"
    timed t "$BENCH/ip-fabric.sh" down "$n" || die "ip-fabric.sh down $n failed"
    printf -v "$__down" '%s' "$t"
    pause
}

HOST_NETNS=$(readlink /proc/$$/ns/net)
# mininet_updown N BUILDVAR STOPVAR: Mininet in its own namespace vpclab-benchmn.root.
# build = Mininet(topo, build=True) + net.start(); stop = net.stop() (timed inside Python).
mininet_updown() {
    local n=$1 __b=$2 __s=$3 pid line b st left
    ip netns add vpclab-benchmn.root || die "ip netns add vpclab-benchmn.root"
    # vpclab sets these to 0 in its namespaces; Mininet warns when they are 1
    ip netns exec vpclab-benchmn.root sh -c 'for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ -e "$f" ] && echo 0 > "$f"; done; true'
    BENCH_HOST_NETNS=$HOST_NETNS ip netns exec vpclab-benchmn.root /usr/bin/python3 \
        "$BENCH/mininet-fabric.py" "$n" >"$TMP/mn.out" 2>"$TMP/mn.err" &
    pid=$!; BG_PIDS+=("$pid")
    wait "$pid" || { cat "$TMP/mn.err" >&2; die "Mininet run failed ($n hosts)"; }
    forget_pid "$pid"
    line=$(tail -1 "$TMP/mn.out")
    b=$(sed -n 's/.*build=\([0-9.]*\) start=\([0-9.]*\).*/\1 \2/p' <<<"$line" | awk '{printf "%.3f", $1 + $2}')
    st=$(sed -n 's/.*stop=\([0-9.]*\).*/\1/p' <<<"$line")
    [[ -n $b && -n $st ]] || die "unexpected Mininet output: $line"
    [[ $line == *leftover* ]] && say "    warning: Mininet left host shells, killed by pid: $line"
    left=$(ip -n vpclab-benchmn.root -o link | grep -vc ': lo:' || true)
    ((left == 0)) || say "    warning: $left Mininet links survived net.stop() (removed with its namespace)"
    ip netns del vpclab-benchmn.root
    printf -v "$__b" '%s' "$b"
    printf -v "$__s" '%s' "$st"
    pause
}

# ---------------------------------------------------------------- sections

section_fabric() {
    say ""
    say "== fabric: the built-in lab (no services), vpclab up --name benchfab --fabric-only --quiet / vpclab down benchfab"
    local ups=() downs=() u d r
    PAUSE=0.3
    vpclab_updown benchfab "" u d   # warm-up (page cache, first netns setup), not counted
    say "  warm-up run (not counted): up $u s, down $d s"
    for ((r = 1; r <= RUNS; r++)); do
        vpclab_updown benchfab "" u d
        ups+=("$u") downs+=("$d")
        say "  run $r/$RUNS: up $u s, down $d s"
    done
    PAUSE=2
    local mu md; mu=$(median "${ups[@]}"); md=$(median "${downs[@]}")
    say "  median of $RUNS: up $mu s, down $md s"
    record fabric "built-in lab up" "$mu" s "$RUNS" "<= 0.5" "${ups[@]}"
    record fabric "built-in lab down" "$md" s "$RUNS" "<= 0.5" "${downs[@]}"
}

# compare N LABFILE LABNAME MNRUNS SECTION: vpclab, ip script and Mininet interleaved run by run.
compare() {
    local n=$1 file=$2 lab=$3 mnruns=$4 section=$5
    local vu=() vd=() ipu=() ipd=() mb=() ms=() steps=() u d s r
    for ((r = 1; r <= RUNS; r++)); do
        vpclab_updown "$lab" "$file" u d s
        vu+=("$u") vd+=("$d") steps+=("$s")
        say "  run $r/$RUNS: vpclab  up $u s, down $d s   [$s]"
        ipfab_updown "$n" u d
        ipu+=("$u") ipd+=("$d")
        say "  run $r/$RUNS: ip      up $u s, down $d s"
        if ((r <= mnruns)); then
            mininet_updown "$n" u d
            mb+=("$u") ms+=("$d")
            say "  run $r/$RUNS: mininet up $u s, down $d s"
        fi
    done
    local mvu mvd miu mid mmb mms
    mvu=$(median "${vu[@]}"); mvd=$(median "${vd[@]}")
    miu=$(median "${ipu[@]}"); mid=$(median "${ipd[@]}")
    say "  median of $RUNS: vpclab up $mvu s, down $mvd s;  ip script up $miu s, down $mid s"
    local st k
    for k in namespaces links addresses routes; do
        st+="$k $(median $(printf '%s\n' "${steps[@]}" | tr ' ' '\n' | sed -n "s/^$k=//p") | awk '{printf "%.0f", $1}') ms, "
    done
    say "  vpclab up, median per step: ${st%, }"
    say "  ip script / vpclab: up $(ratio "$miu" "$mvu")x, down $(ratio "$mid" "$mvd")x"
    if [[ $section == scale ]]; then
        record scale "vpclab up, $n instances" "$mvu" s "$RUNS" "<= 10" "${vu[@]}"
        record scale "vpclab down, $n instances" "$mvd" s "$RUNS" "<= 5" "${vd[@]}"
    else
        record "$section" "vpclab up, $n instances" "$mvu" s "$RUNS" - "${vu[@]}"
        record "$section" "vpclab down, $n instances" "$mvd" s "$RUNS" - "${vd[@]}"
    fi
    record "$section" "ip script up, $n hosts" "$miu" s "$RUNS" - "${ipu[@]}"
    record "$section" "ip script down, $n hosts" "$mid" s "$RUNS" - "${ipd[@]}"
    record "$section" "ip script / vpclab, up, $n" "$(ratio "$miu" "$mvu")" x "$RUNS" -
    record "$section" "ip script / vpclab, down, $n" "$(ratio "$mid" "$mvd")" x "$RUNS" -
    local tgt=-; [[ $section == scale ]] && tgt=">= 5"
    if ((mnruns > 0)); then
        mmb=$(median "${mb[@]}"); mms=$(median "${ms[@]}")
        local note=""; ((mnruns < RUNS)) && note=" (Mininet is slow: $mnruns runs, not $RUNS)"
        say "  median of ${#mb[@]}: mininet build $mmb s, stop $mms s$note"
        say "  mininet / vpclab: build $(ratio "$mmb" "$mvu")x, teardown $(ratio "$mms" "$mvd")x"
        record "$section" "Mininet build, $n hosts" "$mmb" s "$mnruns" - "${mb[@]}"
        record "$section" "Mininet stop, $n hosts" "$mms" s "$mnruns" - "${ms[@]}"
        record "$section" "Mininet / vpclab, build, $n" "$(ratio "$mmb" "$mvu")" x "$mnruns" "$tgt"
        record "$section" "Mininet / vpclab, teardown, $n" "$(ratio "$mms" "$mvd")" x "$mnruns" "$tgt"
    else
        say "  Mininet at $n hosts skipped (--quick or --mininet-runs 0)"
        record "$section" "Mininet / vpclab, build, $n" skip x 0 "$tgt"
        record "$section" "Mininet / vpclab, teardown, $n" skip x 0 "$tgt"
    fi
}

section_scale() {
    local file=$ROOT/labs/scale-1000.yaml
    say ""
    say "== scale: $file (1,000 instances, 16 subnets, 2 AZs, NAT gateway, 2 SGs) vs the same 1,000 hosts"
    say "   vpclab:  vpclab up --name benchscale labs/scale-1000.yaml (>/dev/null; per-step timings from stderr); vpclab down benchscale"
    say "   ip:      scripts/bench/ip-fabric.sh up 1000; scripts/bench/ip-fabric.sh down 1000"
    say "   mininet: ip netns exec vpclab-benchmn.root python3 scripts/bench/mininet-fabric.py 1000 (LinuxBridge, controller=None)"
    say "   interleaved run by run; Mininet runs $MN_RUNS of the $RUNS rounds (~100 s each)"
    "$VPCLAB" validate "$file" >/dev/null 2>&1 || die "labs/scale-1000.yaml does not validate"
    # The kernel frees 1,000 deleted namespaces for some 15 s after a teardown returns; a
    # contender started sooner pays for its predecessor's clean-up.
    PAUSE=15
    say "   after every teardown: a $PAUSE s pause, so each contender starts on a settled kernel"
    compare 1000 "$file" benchscale "$MN_RUNS" scale
    PAUSE=2
}

section_scaling() {
    local n
    for n in $SIZES; do
        say ""
        say "== scaling: $n hosts (scripts/gen-scale-lab.py $n; ip-fabric.sh $n; mininet-fabric.py $n), interleaved"
        python3 "$ROOT/scripts/gen-scale-lab.py" "$n" >"$TMP/scale-$n.yaml" || die "gen-scale-lab.py $n"
        PAUSE=$(( n >= 500 ? 10 : 3 ))
        compare "$n" "$TMP/scale-$n.yaml" "benchscale$n" "$RUNS" scaling
        PAUSE=2
    done
}

# sample_probes LAB PLANJSON K: ssh and http from one instance to K random others, by private
# IP, with the lab's key pair and known_hosts; prints "OK FAILED" (failures on stderr).
sample_probes() {
    local lab=$1 plan=$2 k=$3 keys=/run/vpclab/$1/keys ok=0 bad=0 from ip node
    from=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hosts"][0]["node"])' "$plan")
    # `vpclab ssh` (my-laptop to the first instance's public name) also writes the lab's
    # known_hosts, which the logins below check strictly.
    if "$VPCLAB" ssh --lab "$lab" "$from" -- true </dev/null >/dev/null 2>"$TMP/probe.err"; then
        ok=$((ok + 1))
    else
        bad=$((bad + 1)); say "    vpclab ssh $from failed: $(head -c 200 "$TMP/probe.err")" >&2
    fi
    while read -r node ip; do
        if "$VPCLAB" exec --lab "$lab" "$from" -- ssh -F none -i "$keys/bench.pem" -o IdentitiesOnly=yes \
            -o BatchMode=yes -o ConnectTimeout=3 -o StrictHostKeyChecking=yes \
            -o UserKnownHostsFile="$keys/known_hosts" -o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR \
            "ec2-user@$ip" true </dev/null >/dev/null 2>"$TMP/probe.err"; then
            ok=$((ok + 1))
        else
            bad=$((bad + 1)); say "    ssh to $node ($ip) failed: $(head -c 200 "$TMP/probe.err")" >&2
        fi
        if [[ $("$VPCLAB" exec --lab "$lab" "$from" -- curl -s -m 3 -o /dev/null -w '%{http_code}' "http://$ip/" </dev/null) == 200 ]]; then
            ok=$((ok + 1))
        else
            bad=$((bad + 1)); say "    http to $node ($ip) failed" >&2
        fi
    done < <(python3 -c '
import json, random, sys
hosts = [h for h in json.load(open(sys.argv[1]))["hosts"] if h.get("instance_id")]
for h in random.sample(hosts[1:], min(int(sys.argv[2]), len(hosts) - 1)):
    print(h["node"], h["private_ip"])' "$plan" "$k")
    echo "$ok $bad"
}

# lab_memory LAB -> "PSS_KIB PROCESSES": the proportional set size of every process in the
# lab's namespaces (shared pages split between their users), and how many there are.
lab_memory() {
    python3 - "$1" <<'PY'
import glob, os, sys
inodes = {os.stat(p).st_ino for p in glob.glob(f"/run/netns/vpclab-{sys.argv[1]}.*")}
pss = procs = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if os.stat(f"/proc/{pid}/ns/net").st_ino not in inodes:
            continue
        with open(f"/proc/{pid}/smaps_rollup") as f:
            pss += next(int(l.split()[1]) for l in f if l.startswith("Pss:"))
        procs += 1
    except (OSError, StopIteration):
        pass
print(pss, procs)
PY
}

section_services_scale() {
    local sizes=(200 400 1000) n r u d s m p pss procs ok bad
    say ""
    say "== services-scale: scripts/gen-scale-lab.py N --services ssh,http at ${sizes[*]} instances, interleaved"
    say "   vpclab up --name benchsvcN FILE (services step from stderr); 50 random instances probed"
    say "   (ssh + http from the first instance) right after up; memory = PSS of the lab's processes; vpclab down"
    declare -A SVC UPS DOWNS MEM PROCS
    for n in "${sizes[@]}"; do
        python3 "$ROOT/scripts/gen-scale-lab.py" "$n" --services ssh,http >"$TMP/svc-$n.yaml" || die "gen-scale-lab.py $n"
        "$VPCLAB" plan --json "$TMP/svc-$n.yaml" >"$TMP/svc-$n.plan.json" || die "vpclab plan $n"
    done
    local failures=0 sampled=0
    PAUSE=5
    for ((r = 1; r <= RUNS; r++)); do
        for n in "${sizes[@]}"; do
            LABS_UP+=("benchsvc$n")
            timed u "$VPCLAB" up --name "benchsvc$n" "$TMP/svc-$n.yaml" >/dev/null 2>"$TMP/up.err" \
                || { cat "$TMP/up.err" >&2; die "vpclab up benchsvc$n failed"; }
            read -r ok bad < <(sample_probes "benchsvc$n" "$TMP/svc-$n.plan.json" 50)
            failures=$((failures + bad)); sampled=$((sampled + ok + bad))
            s=$(sed -n 's/^ *services .*(\([0-9]*\) ms)$/\1/p' "$TMP/up.err" | awk '{ printf "%.3f", $1 / 1000 }')
            read -r pss procs < <(lab_memory "benchsvc$n")
            m=$((pss / n)) p=$(awk -v p="$procs" -v n="$n" 'BEGIN { printf "%.2f", p / n }')
            timed d "$VPCLAB" down "benchsvc$n" >/dev/null || die "vpclab down benchsvc$n failed"
            SVC[$n]+="$s " UPS[$n]+="$u " DOWNS[$n]+="$d " MEM[$n]+="$m " PROCS[$n]+="$p "
            say "  run $r/$RUNS, $n instances: services step $s s, up $u s, down $d s, $m KiB PSS and $p processes per instance, probes $ok ok $bad failed"
            pause
        done
    done
    PAUSE=2
    local per200 per1000 ms mu md mm mp per
    for n in "${sizes[@]}"; do
        ms=$(median ${SVC[$n]}); mu=$(median ${UPS[$n]}); md=$(median ${DOWNS[$n]})
        mm=$(median ${MEM[$n]}); mp=$(median ${PROCS[$n]})
        per=$(awk -v s="$ms" -v n="$n" 'BEGIN { printf "%.3f", s * 1000 / n }')
        [[ $n == 200 ]] && per200=$per
        [[ $n == 1000 ]] && per1000=$per
        say "  median of $RUNS at $n: services step $ms s ($per ms per instance), up $mu s, down $md s, $mm KiB PSS and $mp processes per instance"
        record services-scale "services step, $n instances" "$ms" s "$RUNS" - ${SVC[$n]}
        record services-scale "services step per instance, $n" "$per" ms "$RUNS" -
        if [[ $n == 1000 ]]; then
            record services-scale "up, $n instances with sshd+nginx, ready" "$mu" s "$RUNS" "<= 10" ${UPS[$n]}
            record services-scale "down, $n instances with sshd+nginx" "$md" s "$RUNS" "<= 3" ${DOWNS[$n]}
        else
            record services-scale "up, $n instances with sshd+nginx, ready" "$mu" s "$RUNS" - ${UPS[$n]}
            record services-scale "down, $n instances with sshd+nginx" "$md" s "$RUNS" - ${DOWNS[$n]}
        fi
        record services-scale "memory (PSS) per instance, $n" "$mm" KiB "$RUNS" - ${MEM[$n]}
        record services-scale "processes per instance, $n" "$mp" - "$RUNS" - ${PROCS[$n]}
    done
    local growth; growth=$(ratio "$per1000" "$per200")
    say "  per-instance time, 1,000 / 200: ${growth}x (linear: <= 1.5); probes: $sampled made, $failures failed"
    record services-scale "per-instance time, 1,000 / 200" "$growth" x "$RUNS" "<= 1.5"
    record services-scale "probe failures right after up ($sampled probes)" "$failures" - "$RUNS" "<= 0"
}

section_services() {
    say ""
    say "== services: the built-in lab with sshd, nginx, DNS and metadata (no database), until ready for probes"
    say "   vpclab up --name benchsvc --no-databases --quiet (returns once every service listens and the supervisor answers)"
    local ups=() probes=() u d r t
    PAUSE=0.5
    for ((r = 1; r <= RUNS; r++)); do
        LABS_UP+=(benchsvc)
        timed u "$VPCLAB" up --name benchsvc --no-databases --quiet || die "vpclab up --name benchsvc failed"
        timed d "$VPCLAB" down benchsvc >/dev/null || die "vpclab down benchsvc failed"
        ups+=("$u")
        say "  run $r/$RUNS: up $u s (down $d s)"
        pause
    done
    say "   the probe suite of the full lab (14 probes, database included): vpclab probe benchsvc"
    "$VPCLAB" up --name benchsvc --quiet || die "vpclab up --name benchsvc failed"
    for ((r = 1; r <= RUNS; r++)); do
        timed t "$VPCLAB" probe benchsvc >"$TMP/probe.out" || { cat "$TMP/probe.out" >&2; die "vpclab probe failed"; }
        probes+=("$t")
        say "  run $r/$RUNS: probe $t s ($(grep -Eo '[0-9]+ passed, [0-9]+ failed' "$TMP/probe.out"))"
    done
    "$VPCLAB" down benchsvc >/dev/null
    PAUSE=2
    local mu mp; mu=$(median "${ups[@]}"); mp=$(median "${probes[@]}")
    say "  median of $RUNS: up with services $mu s, probe suite $mp s"
    record services "built-in lab up, services ready (no DB)" "$mu" s "$RUNS" "<= 1.5" "${ups[@]}"
    record services "probe suite (14 probes)" "$mp" s "$RUNS" "<= 3" "${probes[@]}"
}

section_database() {
    say ""
    say "== database: the RDS pair, ready to take writes through the endpoint; failover drills"
    say "   ready time: the 'database' step of vpclab up (template copy, two MariaDB servers, accounts, replication)"
    local ready=() rtos=() lost=0 r ms
    PAUSE=0.5
    for ((r = 1; r <= RUNS; r++)); do
        LABS_UP+=(benchdb)
        "$VPCLAB" up --name benchdb >/dev/null 2>"$TMP/up.err" || { cat "$TMP/up.err" >&2; die "vpclab up --name benchdb failed"; }
        ms=$(sed -n 's/^  database .*(\([0-9]*\) ms)$/\1/p' "$TMP/up.err")
        [[ -n $ms ]] || { cat "$TMP/up.err" >&2; die "no database step in vpclab up's output"; }
        ready+=("$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')")
        say "  run $r/$RUNS: pair ready in $ms ms"
        "$VPCLAB" down benchdb >/dev/null
        pause
    done
    local drills=10
    say "   RTO: $drills x vpclab drill failover --json (reboot with failover, alternating direction)"
    "$VPCLAB" up --name benchdb --quiet || die "vpclab up --name benchdb failed"
    for ((r = 1; r <= drills; r++)); do
        "$VPCLAB" drill failover --lab benchdb --json >"$TMP/drill.json" 2>"$TMP/drill.err" \
            || { cat "$TMP/drill.err" "$TMP/drill.json" >&2; die "drill $r failed"; }
        read -r rto l acked <<<"$(/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["rto_ms"], d["lost"], d["acked"])' "$TMP/drill.json")"
        rtos+=("$(awk -v m="$rto" 'BEGIN { printf "%.3f", m / 1000 }')")
        lost=$((lost + l))
        say "  drill $r/$drills: RTO $rto ms, $acked writes acknowledged, $l lost"
    done
    "$VPCLAB" down benchdb >/dev/null
    PAUSE=2
    local mr mt; mr=$(median "${ready[@]}"); mt=$(median "${rtos[@]}")
    say "  median: pair ready $mr s (of $RUNS), RTO $mt s (of $drills); lost writes in all drills: $lost"
    record database "pair ready (writes through the endpoint)" "$mr" s "$RUNS" "<= 2" "${ready[@]}"
    record database "failover RTO (reboot with failover)" "$mt" s "$drills" "<= 3" "${rtos[@]}"
    record database "lost writes, all drills" "$lost" writes "$drills" "<= 0"
}

# iperf3 test length: short tests, many rounds. The VM's noise comes in bursts of seconds, so
# short contenders run back to back see the same machine, and many rounds give a steady median.
IPERF_SECS=2
# Server and client pinned to different CPUs (every contender alike): otherwise the scheduler
# sometimes stacks both on one core, which costs a third of the throughput at random.
IPERF_PIN_SERVER=() IPERF_PIN_CLIENT=()
if (($(nproc) >= 2)); then IPERF_PIN_SERVER=(-A 1) IPERF_PIN_CLIENT=(-A 0); fi

# iperf_once SERVER_NS DEST_IP CLIENT_CMD... -> Gbit/s received (IPERF_SECS after a 1 s warm-up)
iperf_once() {
    local sns=$1 dst=$2; shift 2
    local spid i bps
    ip netns exec "$sns" iperf3 -s -1 -p 5201 "${IPERF_PIN_SERVER[@]}" >/dev/null 2>&1 &
    spid=$!; echo "$spid" >"$TMP/iperf-server.pid"
    for ((i = 0; i < 100; i++)); do
        ip netns exec "$sns" ss -Hltn 'sport = :5201' 2>/dev/null | grep -q . && break
        sleep 0.05
    done
    "$@" iperf3 -c "$dst" -p 5201 "${IPERF_PIN_CLIENT[@]}" -t "$IPERF_SECS" -O 1 -J >"$TMP/iperf.json" 2>"$TMP/iperf.err" \
        || kill -TERM "$spid" 2>/dev/null   # the one-off server would wait for ever
    wait "$spid" 2>/dev/null
    : >"$TMP/iperf-server.pid"
    bps=$(/usr/bin/python3 -c 'import json,sys; print("%.3f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e9))' "$TMP/iperf.json" 2>/dev/null)
    [[ -n $bps ]] || { cat "$TMP/iperf.err" "$TMP/iperf.json" >&2; die "iperf3 to $dst failed"; }
    echo "$bps"
}

# acl_lab_file OUT: labs/handson.yaml plus one network ACL on the two subnets the NAT path
# crosses (private-2a, where app is; public-2a, where my-nat is), 20 rules each way: the most a
# direction may have. An ACL is a first-match list evaluated rule by rule, so the worst case for
# the measurement is traffic that only the last rule matches: rules 100-270 fail on the port,
# the protocol or the peer; 280 allows HTTP (for a curl check by hand, never iperf3's traffic);
# 290 allows tcp 1024-65535, which covers iperf3's port 5201 and every reply's ephemeral port
# (app's 32768-60999 and the ports my-nat's masquerade picks in 1024-65535).
acl_lab_file() {
    local out=$1 dir peer rules r n
    rules=(
        "type: ssh, PEER: 10.0.0.0/16, action: allow"
        "protocol: tcp, port: 25, PEER: 0.0.0.0/0, action: deny"
        "protocol: udp, port: 53, PEER: 0.0.0.0/0, action: allow"
        "protocol: tcp, port: 110, PEER: 0.0.0.0/0, action: deny"
        "protocol: tcp, port: 143, PEER: 0.0.0.0/0, action: deny"
        "type: https, PEER: 0.0.0.0/0, action: allow"
        "protocol: tcp, port: 465, PEER: 0.0.0.0/0, action: deny"
        "protocol: tcp, port: 587, PEER: 0.0.0.0/0, action: deny"
        "protocol: tcp, port: 993, PEER: 0.0.0.0/0, action: deny"
        "protocol: tcp, port: 995, PEER: 0.0.0.0/0, action: deny"
        "protocol: all, PEER: 192.0.2.0/24, action: deny"
        "protocol: all, PEER: 198.18.0.0/15, action: deny"
        "protocol: all, PEER: 100.64.0.0/10, action: deny"
        "protocol: all, PEER: 172.16.0.0/12, action: deny"
        "protocol: all, PEER: 192.168.0.0/16, action: deny"
        "protocol: all, PEER: 203.0.113.128/25, action: deny"
        "protocol: udp, port: 1024-65535, PEER: 0.0.0.0/0, action: allow"
        "protocol: icmp, PEER: 0.0.0.0/0, action: allow"
        "type: http, PEER: 0.0.0.0/0, action: allow"
        "protocol: tcp, port: 1024-65535, PEER: 0.0.0.0/0, action: allow"
    )
    {
        printf 'network_acls:\n  bench-acl:\n    subnets: [private-2a, public-2a]\n'
        for dir in inbound outbound; do
            [[ $dir == inbound ]] && peer=source || peer=destination
            printf '    %s:\n' "$dir"
            n=100
            for r in "${rules[@]}"; do
                printf '      - { rule: %d, %s }\n' "$n" "${r/PEER/$peer}"
                n=$((n + 10))
            done
        done
        printf '\n'
    } >"$TMP/acl-block.yaml"
    awk -v block="$TMP/acl-block.yaml" '/^instances:/ { while ((getline l < block) > 0) print l } { print }' \
        "$ROOT/labs/handson.yaml" >"$out"
    grep -q '^network_acls:' "$out" || die "could not add a network ACL to labs/handson.yaml"
}

# flow_lab_file OUT: labs/handson.yaml with VPC flow logs (60 s, the default format), which
# cover every interface the NAT path crosses: app's and my-nat's.
flow_lab_file() {
    awk '{ print } /^  cidr: 10\.0\.0\.0\/16$/ { print "  flow_logs: { interval: 60, format: default }" }' \
        "$ROOT/labs/handson.yaml" >"$1"
    grep -q '^  flow_logs:' "$1" || die "could not add flow logs to labs/handson.yaml"
}

# flow_counted LAB NODE -> the packets NODE's flow-log table counted in all its sets
flow_counted() {
    ip netns exec "vpclab-$1.$2" nft list table inet vpclab-flow 2>/dev/null |
        awk '{ for (i = 1; i <= NF; i++) if ($i == "packets") n += $(i + 1) } END { printf "%d", n }'
}

# acl_counters LAB -> "LAST OTHERS": packets counted by bench-acl's rule 290 and by its rules
# 100-280, both directions and both subnets, in the lab's router
acl_counters() {
    ip netns exec "vpclab-$1.vpc-router" nft list ruleset 2>/dev/null | awk '
        /network ACL bench-acl (inbound|outbound) rule [0-9]+ / {
            p = 0; for (i = 1; i <= NF; i++) if ($i == "packets") p = $(i + 1)
            match($0, /rule [0-9]+ /); n = substr($0, RSTART + 5, RLENGTH - 6) + 0
            if (n == 290) last += p; else others += p
        }
        END { printf "%d %d", last, others }'
}

section_nat() {
    say ""
    local rounds=$((RUNS * 3 > 15 ? RUNS * 3 : 15))
    local acl_file=$TMP/handson-acl.yaml flow_file=$TMP/handson-flow.yaml
    acl_lab_file "$acl_file"
    flow_lab_file "$flow_file"
    say "== nat: iperf3 -c 203.0.113.60 -t $IPERF_SECS -O 1 ${IPERF_PIN_CLIENT[*]} (one TCP stream; server ${IPERF_PIN_SERVER[*]}), app -> example-web"
    say "   $rounds rounds (3 x --runs, at least 15), each: NAT path, NAT path with ACL and NAT path with flow logs (in turns:"
    say "   A B C / B C A / C A B), plain chain, direct pair, back to back"
    say "   NAT path:    vpclab up --name benchnat --fabric-only; server: ip netns exec vpclab-benchnat.example-web iperf3 -s -1"
    say "                client: vpclab exec --lab benchnat app -- iperf3 -c 203.0.113.60 ..."
    say "                app -> vpc-router -> my-nat -> vpc-router -> my-igw -> internet -> example-web"
    say "                (SG input/output chains on app, masquerade on my-nat, stateless 1:1 NAT on my-igw; replies hairpin the same way)"
    say "   NAT path with ACL: the same in vpclab up --name benchacl --fabric-only FILE, FILE = labs/handson.yaml plus a"
    say "                network ACL of 20 rules each way on private-2a and public-2a; the measured traffic matches"
    say "                only the last rule (290: tcp 1024-65535), after 19 that do not match, at each of its 3 ACL crossings each way"
    say "   NAT path with flow logs: the same in vpclab up --name benchflow --fabric-only FILE, FILE = labs/handson.yaml with"
    say "                flow_logs: { interval: 60 } on the VPC: app and my-nat count every packet in their flow-log sets"
    say "   plain chain: scripts/bench/plain-chain.sh up: the same 7 namespace traversals, 6 veth and 4 bridge"
    say "                crossings each way, same policy routing, no nftables table at all"
    say "   direct pair: one veth pair between two namespaces"
    LABS_UP+=(benchnat benchacl benchflow)
    "$VPCLAB" up --name benchnat --fabric-only --quiet || die "vpclab up --name benchnat failed"
    "$VPCLAB" up --name benchacl --fabric-only "$acl_file" >/dev/null 2>"$TMP/up.err" \
        || { cat "$TMP/up.err" >&2; die "vpclab up --name benchacl --fabric-only $acl_file failed"; }
    "$VPCLAB" up --name benchflow --fabric-only "$flow_file" >/dev/null 2>"$TMP/up.err" \
        || { cat "$TMP/up.err" >&2; die "vpclab up --name benchflow --fabric-only $flow_file failed"; }
    "$BENCH/plain-chain.sh" up || die "plain-chain.sh up failed"
    local nat=() acl=() flow=() plain=() direct=() paired=() acl_paired=() flow_paired=() a e f b c r lab
    local -A got
    for ((r = 1; r <= rounds; r++)); do
        # The three vpclab contenders take turns at going first, second and third
        local order=(nat acl flow)
        order=("${order[@]:$(((r - 1) % 3))}" "${order[@]:0:$(((r - 1) % 3))}")
        for lab in "${order[@]}"; do
            got[$lab]=$(iperf_once "vpclab-bench$lab.example-web" 203.0.113.60 "$VPCLAB" exec --lab "bench$lab" app --) || exit 1
        done
        a=${got[nat]} e=${got[acl]} f=${got[flow]}
        b=$(iperf_once vpclab-benchchain.web 203.0.113.60 ip netns exec vpclab-benchchain.app) || exit 1
        c=$(iperf_once vpclab-benchdirect.b 10.99.0.2 ip netns exec vpclab-benchdirect.a) || exit 1
        nat+=("$a") acl+=("$e") flow+=("$f") plain+=("$b") direct+=("$c")
        paired+=("$(ratio "$a" "$b")") acl_paired+=("$(ratio "$e" "$a")") flow_paired+=("$(ratio "$f" "$a")")
        say "  round $r/$rounds (${order[*]}): NAT path $a, with ACL $e, with flow logs $f, plain chain $b, direct pair $c Gbit/s  (NAT / plain ${paired[-1]}, ACL / NAT ${acl_paired[-1]}, flow logs / NAT ${flow_paired[-1]})"
    done
    # the NAT path really translated: the NAT gateway's masquerade rule counted packets
    local hits
    hits=$(ip netns exec vpclab-benchnat.my-nat nft list table ip vpclab 2>/dev/null |
        awk '/snat to 10.0.0.4:1024-65535 comment .*\(tcp\)/ { for (i = 1; i <= NF; i++) if ($i == "packets") print $(i + 1) }')
    say "  check: my-nat's tcp masquerade rule counted ${hits:-?} new connections"
    # the ACL path really went through the ACL, and only its last rule matched
    local last others
    read -r last others <<<"$(acl_counters benchacl)"
    say "  check: bench-acl's rule 290 counted $last packets, its rules 100-280 counted $others"
    ((last > 0 && others == 0)) || die "the measured traffic did not match only the ACL's last rule"
    # the flow-log path really counted every packet, on app and on my-nat
    local on_app on_nat
    on_app=$(flow_counted benchflow app) on_nat=$(flow_counted benchflow my-nat)
    say "  check: benchflow's flow-log sets counted $on_app packets on app and $on_nat on my-nat"
    ((on_app > 0 && on_nat > 0)) || die "the flow-log lab counted nothing"
    "$VPCLAB" down benchnat >/dev/null || die "vpclab down benchnat failed"
    "$VPCLAB" down benchacl >/dev/null || die "vpclab down benchacl failed"
    "$VPCLAB" down benchflow >/dev/null || die "vpclab down benchflow failed"
    "$BENCH/plain-chain.sh" down
    local mn ma mf mp md; mn=$(median "${nat[@]}"); ma=$(median "${acl[@]}"); mf=$(median "${flow[@]}")
    mp=$(median "${plain[@]}"); md=$(median "${direct[@]}")
    local mr mar mfr; mr=$(median "${paired[@]}"); mar=$(median "${acl_paired[@]}"); mfr=$(median "${flow_paired[@]}")
    say "  median of $rounds: NAT path $mn, with ACL $ma, with flow logs $mf, plain chain $mp, direct pair $md Gbit/s"
    say "  NAT / plain $(ratio "$mn" "$mp"), ACL / NAT $(ratio "$ma" "$mn"), flow logs / NAT $(ratio "$mf" "$mn"), NAT / direct $(ratio "$mn" "$md"), plain / direct $(ratio "$mp" "$md")"
    say "  median of the $rounds per-round ratios: NAT / plain $mr, ACL / NAT $mar, flow logs / NAT $mfr"
    record nat "NAT path throughput" "$mn" Gbit/s "$rounds" - "${nat[@]}"
    record nat "NAT path with a 20-rule ACL throughput" "$ma" Gbit/s "$rounds" - "${acl[@]}"
    record nat "NAT path with flow logs throughput" "$mf" Gbit/s "$rounds" - "${flow[@]}"
    record nat "plain chain throughput" "$mp" Gbit/s "$rounds" - "${plain[@]}"
    record nat "direct veth throughput" "$md" Gbit/s "$rounds" - "${direct[@]}"
    record nat "NAT path / plain chain" "$(ratio "$mn" "$mp")" x "$rounds" ">= 0.90"
    record nat "NAT / plain, median of round ratios" "$mr" x "$rounds" - "${paired[@]}"
    record nat "NAT path with a 20-rule ACL / NAT path" "$(ratio "$ma" "$mn")" x "$rounds" ">= 0.9"
    record nat "ACL / NAT, median of round ratios" "$mar" x "$rounds" - "${acl_paired[@]}"
    record nat "NAT path with flow logs / NAT path" "$(ratio "$mf" "$mn")" x "$rounds" ">= 0.9"
    record nat "flow logs / NAT, median of round ratios" "$mfr" x "$rounds" - "${flow_paired[@]}"
    record nat "NAT path / direct pair" "$(ratio "$mn" "$md")" x "$rounds" -
    record nat "plain chain / direct pair" "$(ratio "$mp" "$md")" x "$rounds" -
}

# ---------------------------------------------------------------- main

# apply_ms LAB FILE -> the "ms" vpclab apply reports (its own clock, from reading the file to done)
apply_ms() {
    "$VPCLAB" apply "$2" --name "$1" --json >"$TMP/apply.json" || { cat "$TMP/apply.json" >&2; die "vpclab apply $2 failed"; }
    awk -F': ' '/"ms"/ { gsub(/[^0-9]/, "", $2); print $2 / 1000 }' "$TMP/apply.json"
}

section_apply() {
    say ""
    say "== apply: changing running labs (vpclab apply FILE --name LAB --json; its own \"ms\")"
    local scale=$ROOT/labs/scale-1000.yaml rule=$TMP/scale-rule.yaml extra=$TMP/extra.yaml
    sed 's|      - { type: ssh, source: 10.20.0.0/16 }|&\n      - { protocol: tcp, port: 9090, source: 10.20.0.0/16 }|' "$scale" >"$rule"
    grep -q 'port: 9090' "$rule" || die "could not add a rule to $scale"
    awk '{ print } /^instances:/ { print "  extra:\n    subnet: public-2c\n    public_ip: auto\n    key_pair: aws-study\n    security_groups: [MyWebServer-SecurityGroup]\n    services: [ssh, http]" }' \
        "$ROOT/labs/handson.yaml" >"$extra"
    local rules=() rebuilds=() nochange=() adds=() t u d r writes
    LABS_UP+=(benchapply)
    "$VPCLAB" up --name benchapply --fabric-only --quiet "$scale" || die "vpclab up benchapply failed"
    for ((r = 1; r <= RUNS; r++)); do
        # The rule on, then off again: each is one change to the `app` group (920 members).
        t=$(apply_ms benchapply "$rule"); rules+=("$t")
        t=$(apply_ms benchapply "$scale"); rules+=("$t")
        t=$(apply_ms benchapply "$scale"); nochange+=("$t")
        writes=$(awk -F': ' '/"kernel_writes"/ { gsub(/[^0-9]/, "", $2); print $2 }' "$TMP/apply.json")
        [[ $writes == 0 ]] || die "a no-change apply made $writes kernel writes"
        # The alternative without apply: the whole lab down and up again with the rule.
        timed d "$VPCLAB" down benchapply >/dev/null || die "vpclab down benchapply failed"
        timed u "$VPCLAB" up --name benchapply --fabric-only --quiet "$scale" || die "vpclab up benchapply failed"
        rebuilds+=("$(awk -v a="$d" -v b="$u" 'BEGIN { printf "%.3f", a + b }')")
        say "  run $r/$RUNS: rule on ${rules[-2]} s, off ${rules[-1]} s, no change ${nochange[-1]} s (0 kernel writes); down + up ${rebuilds[-1]} s"
    done
    "$VPCLAB" down benchapply >/dev/null
    pause
    LABS_UP+=(benchadd)
    "$VPCLAB" up --name benchadd --no-databases --quiet || die "vpclab up benchadd failed"
    for ((r = 1; r <= RUNS; r++)); do
        t=$(apply_ms benchadd "$extra"); adds+=("$t")
        apply_ms benchadd "$ROOT/labs/handson.yaml" >/dev/null
        say "  run $r/$RUNS: instance with sshd and nginx added in $t s"
    done
    "$VPCLAB" down benchadd >/dev/null
    local mr mb mn ma; mr=$(median "${rules[@]}"); mb=$(median "${rebuilds[@]}"); mn=$(median "${nochange[@]}"); ma=$(median "${adds[@]}")
    say "  medians: rule change $mr s, down + up $mb s (apply is $(ratio "$mb" "$mr")x faster), no change $mn s, instance added $ma s"
    record apply "1,000 instances: one SG rule (920 members)" "$mr" s "$((2 * RUNS))" "<= 0.05" "${rules[@]}"
    record apply "1,000 instances: down + up instead" "$mb" s "$RUNS" - "${rebuilds[@]}"
    record apply "down + up / apply of one rule" "$(ratio "$mb" "$mr")" x "$RUNS" -
    record apply "1,000 instances: no-change apply" "$mn" s "$RUNS" "<= 0.1" "${nochange[@]}"
    record apply "built-in lab: one instance added" "$ma" s "$RUNS" "<= 0.3" "${adds[@]}"
}

# A free loopback TCP port.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_port PORT PID: until something listens on PORT, while PID lives (60 s at most).
wait_port() {
    local i
    for ((i = 0; i < 600; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
# stop_pid PID: SIGTERM, then wait for it (a process this run started).
stop_pid() { kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null; forget_pid "$1"; }
# server_p50 LOG ACTION [FROM_LINE]: the median of the "ACTION ok N ms" lines serve logged.
server_p50() {
    # shellcheck disable=SC2046
    median $(tail -n +"${3:-1}" "$1" | awk -v a="$2" '$1 == a && $2 == "ok" && $4 == "ms" { print $3 }')
}

MOTO_VENV=/var/cache/vpclab/moto-venv
section_api() {
    say ""
    say "== api: vpclab serve vs moto server, the write-up's VPC by the same aws ec2 calls"
    if [[ ! -x $MOTO_VENV/bin/moto_server ]]; then
        say "  installing moto[server] into $MOTO_VENV ..."
        { python3 -m venv "$MOTO_VENV" && "$MOTO_VENV/bin/pip" install -q 'moto[server]' boto3; } >"$TMP/moto-install.log" 2>&1 ||
            die "could not install moto[server]: $(tail -3 "$TMP/moto-install.log")"
    fi
    # The aws CLI as `scripts/setup.sh --test` installs it, else the one on PATH.
    [[ -x /opt/vpclab/venv/bin/aws ]] && PATH=/opt/vpclab/venv/bin:$PATH
    command -v aws >/dev/null || die "no aws CLI (sudo scripts/setup.sh --test installs it)"
    local vport mport vpid mpid state=$TMP/api-state log=$TMP/serve.log
    vport=$(free_port); mport=$(free_port)
    "$VPCLAB" serve --listen "127.0.0.1:$vport" --state-dir "$state" 2>"$log" &
    vpid=$!; BG_PIDS+=("$vpid")
    "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$mport" >"$TMP/moto.log" 2>&1 &
    mpid=$!; BG_PIDS+=("$mpid")
    wait_port "$vport" "$vpid" || die "vpclab serve did not start: $(tail -3 "$log")"
    wait_port "$mport" "$mpid" || die "moto_server did not start: $(tail -3 "$TMP/moto.log")"
    local -a venv=(env AWS_CONFIG_FILE=/dev/null AWS_DEFAULT_REGION=ap-northeast-2
        AWS_SHARED_CREDENTIALS_FILE="$state/credentials" AWS_PROFILE=vpclab-root)
    local -a menv=(env AWS_CONFIG_FILE=/dev/null AWS_DEFAULT_REGION=ap-northeast-2
        AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench)
    local seed=$BENCH/api-seed.sh vs=() ms=() vd=() md=() r t
    LABS_UP+=(benchapi)
    for ((r = 1; r <= RUNS; r++)); do
        timed t "${venv[@]}" "$seed" up "http://127.0.0.1:$vport" benchapi "$TMP/vpclab.ids" ||
            die "the seed script failed against vpclab serve: $(tail -3 "$log")"
        vs+=("$t")
        timed t "${menv[@]}" "$seed" up "http://127.0.0.1:$mport" benchapi "$TMP/moto.ids" ||
            die "the seed script failed against moto"
        ms+=("$t")
        timed t "${venv[@]}" "$seed" down "http://127.0.0.1:$vport" benchapi "$TMP/vpclab.ids" ||
            die "deleting the VPC through vpclab serve failed: $(tail -3 "$log")"
        vd+=("$t")
        timed t "${menv[@]}" "$seed" down "http://127.0.0.1:$mport" benchapi "$TMP/moto.ids" ||
            die "deleting the VPC through moto failed"
        md+=("$t")
        say "  run $r/$RUNS: built in vpclab ${vs[-1]} s, moto ${ms[-1]} s; deleted in vpclab ${vd[-1]} s, moto ${md[-1]} s"
    done
    stop_pid "$mpid"
    # DescribeInstances on the built-in lab, as a script polling it would call it.
    LABS_UP+=(benchapihs)
    "$VPCLAB" up --name benchapihs --no-databases --quiet >/dev/null || die "vpclab up benchapihs failed"
    local from calls=50
    from=$(($(wc -l <"$log") + 1))
    "${venv[@]}" ENDPOINT="http://127.0.0.1:$vport" CALLS=$calls "$MOTO_VENV/bin/python3" -c '
import os, boto3
ec2 = boto3.client("ec2", endpoint_url=os.environ["ENDPOINT"])
vpc = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["benchapihs"]}])["Vpcs"][0]["VpcId"]
for _ in range(int(os.environ["CALLS"])):
    r = ec2.describe_instances(Filters=[{"Name": "vpc-id", "Values": [vpc]}])
    assert sum(len(x["Instances"]) for x in r["Reservations"]) > 0
' || die "DescribeInstances on benchapihs failed: $(tail -3 "$log")"
    stop_pid "$vpid"
    "$VPCLAB" down benchapihs >/dev/null
    local mv mm di cs ai
    mv=$(median "${vs[@]}"); mm=$(median "${ms[@]}")
    di=$(server_p50 "$log" DescribeInstances "$from")
    cs=$(server_p50 "$log" CreateSubnet); ai=$(server_p50 "$log" AuthorizeSecurityGroupIngress)
    say "  medians: built in vpclab $mv s, moto $mm s (vpclab / moto $(ratio "$mv" "$mm")x); deleted in vpclab $(median "${vd[@]}") s, moto $(median "${md[@]}") s"
    say "  server side p50: DescribeInstances on the built-in lab $di ms ($calls calls), CreateSubnet $cs ms, AuthorizeSecurityGroupIngress $ai ms ($RUNS runs)"
    record api "seed script, vpclab serve" "$mv" s "$RUNS" - "${vs[@]}"
    record api "seed script, moto server" "$mm" s "$RUNS" - "${ms[@]}"
    record api "vpclab / moto, seed script" "$(ratio "$mv" "$mm")" x "$RUNS" "<= 1.2"
    record api "DescribeInstances p50, server side" "$di" ms "$calls" "<= 2"
    record api "CreateSubnet p50, server side" "$cs" ms "$((4 * RUNS))" "<= 30"
    record api "AuthorizeSGIngress p50, server side" "$ai" ms "$((3 * RUNS))" "<= 30"
}

summary() {
    local i w=42
    say ""
    say "== summary (medians; ratios from medians of interleaved runs in this invocation)"
    printf '%-9s %-*s %10s %-7s %5s %-9s %s\n' section "$w" metric median unit runs target result
    for i in "${!SUM_METRIC[@]}"; do
        printf '%-9s %-*s %10s %-7s %5s %-9s %s\n' "${SUM_SECTION[$i]}" "$w" "${SUM_METRIC[$i]}" \
            "${SUM_VALUE[$i]}" "${SUM_UNIT[$i]}" "${SUM_RUNS[$i]}" "${SUM_TARGET[$i]}" "${SUM_RESULT[$i]}"
    done
}

json_out() {
    local f=$1 i first=1 v
    {
        printf '{\n  "started": "%s",\n  "wall_s": %s,\n  "runs": %s,\n  "quick": %s,\n' \
            "$STARTED" "$WALL" "$RUNS" "$([[ $QUICK == 1 ]] && echo true || echo false)"
        printf '  "host": {"kernel": "%s", "cpus": %s, "vpclab": "%s"},\n' "$(uname -r)" "$(nproc)" "$("$VPCLAB" --version 2>/dev/null)"
        printf '  "root_namespace_unchanged": %s,\n  "metrics": [\n' "$ROOT_OK"
        for i in "${!SUM_METRIC[@]}"; do
            ((first)) || printf ',\n'; first=0
            v=${SUM_VALUE[$i]}; [[ $v == skip || $v == nan ]] && v=null
            printf '    {"section": "%s", "metric": "%s", "median": %s, "unit": "%s", "runs": %s, "target": "%s", "result": "%s", "values": [%s]}' \
                "${SUM_SECTION[$i]}" "${SUM_METRIC[$i]}" "$v" "${SUM_UNIT[$i]}" "${SUM_RUNS[$i]}" \
                "${SUM_TARGET[$i]}" "${SUM_RESULT[$i]}" "$(tr ' ' ',' <<<"${SUM_VALUES[$i]}")"
        done
        printf '\n  ]\n}\n'
    } >"$f"
}

T_START=$(now_us)
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
pkgs=(iproute2 nftables)
selected nat && pkgs+=(iperf3)
{ selected scale || selected scaling; } && pkgs+=(mininet bridge-utils net-tools)
ensure_packages "${pkgs[@]}"
find_vpclab
stale_cleanup
root_snapshot >"$TMP/root-before"

say "vpclab benchmarks: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs, $("$VPCLAB" --version 2>/dev/null)"
say "sections: ${SELECTED[*]}; runs: $RUNS$( ((QUICK)) && echo ' (--quick)'); binary: $VPCLAB"
for s in "${SELECTED[@]}"; do "section_${s//-/_}"; done

root_snapshot >"$TMP/root-after"
if diff -u "$TMP/root-before" "$TMP/root-after" >"$TMP/root.diff"; then
    ROOT_OK=true
else
    ROOT_OK=false
fi
T_END=$(now_us)
WALL=$(secs "$T_START" "$T_END")
summary
say ""
if [[ $ROOT_OK == true ]]; then
    say "host root network namespace: unchanged (ip -d link, ip addr, ip route show table all, ip rule, nft list ruleset, sysctls)"
else
    say "host root network namespace: CHANGED during the run:"; cat "$TMP/root.diff"
fi
say "wall time: $WALL s"
if [[ -n $JSON ]]; then json_out "$JSON"; say "JSON written to $JSON"; fi
fails=$(printf '%s\n' "${SUM_RESULT[@]}" | grep -c FAIL)
[[ $ROOT_OK == true ]] || exit 3
((fails == 0)) || exit 1
exit 0
