#!/usr/bin/env bash
# Installs what vpclab needs on Debian 12 (bookworm): the tools it drives inside lab
# namespaces (iproute2, nftables, OpenSSH, nginx, MariaDB, DNS clients, curl), the
# test and benchmark tools, and a Rust toolchain. Safe to run again: it installs only
# what is missing. Must run as root.
#
#   scripts/setup.sh            runtime + build
#   scripts/setup.sh --test     also what the tests need (tshark, vagrant, the AWS CLI,
#                               boto3 in /opt/vpclab/venv)
#   scripts/setup.sh --bench    also what the benchmarks need (mininet, iperf3, hyperfine)
set -euo pipefail

want_test=0
want_bench=0
for a in "$@"; do
  case "$a" in
    --test) want_test=1 ;;
    --bench) want_bench=1 ;;
    *) echo "setup.sh: unknown option $a (use --test or --bench)" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: needs root to install packages; run: sudo $0 $*" >&2
  exit 1
fi

packages=(
  iproute2 nftables conntrack util-linux procps iputils-ping
  openssh-server openssh-client nginx openssl netcat-openbsd
  mariadb-server mariadb-client
  dnsutils curl ca-certificates
  build-essential pkg-config
)
[ "$want_test" = 1 ] && packages+=(tshark vagrant librsvg2-bin awscli python3-venv)
[ "$want_bench" = 1 ] && packages+=(mininet bridge-utils iperf3 hyperfine)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  # Installing a server package would start it on the host (sshd, nginx, MariaDB on
  # the host's own ports). vpclab runs its own copies inside lab namespaces, so keep
  # the host's services as they were: a policy-rc.d that forbids starting services,
  # only for the duration of this install and only if the host has none of its own.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    own_policy=1
  fi
  trap '[ "$own_policy" = 1 ] && rm -f "$policy"' EXIT
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi

# boto3, for the EC2 API tests' SDK script: Debian's python3-boto3 lags the AWS CLI, so
# it comes from PyPI into a virtual environment of its own (the system Python stays as is).
if [ "$want_test" = 1 ] && [ ! -x /opt/vpclab/venv/bin/python3 ]; then
  echo "setup.sh: installing boto3 into /opt/vpclab/venv"
  python3 -m venv /opt/vpclab/venv
  /opt/vpclab/venv/bin/pip install -q boto3
fi

# Rust: the project uses edition 2024, newer than Debian's packaged rustc.
if [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup.sh: installing the Rust toolchain with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt -c clippy
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
for c in rustfmt clippy; do
  if ! cargo "$c" --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
    rustup component add "$c"
  fi
done
echo "setup.sh: ready ($(cargo --version))"
