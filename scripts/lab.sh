#!/usr/bin/env bash
# The main job, in one command on a fresh Debian 12 machine:
#   sudo scripts/lab.sh
# Installs what is missing, builds vpclab, installs it as /usr/local/bin/vpclab, brings
# up the built-in hands-on lab (the seed's VPC) and leaves it up for you to explore.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/lab.sh needs root: a lab is made of network namespaces and nftables rules."
  echo "  run: sudo scripts/lab.sh"
  exit 1
fi

scripts/setup.sh
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
echo "==> building vpclab (release)"
cargo build --release --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
install -m 755 "$target_dir/release/vpclab" /usr/local/bin/vpclab

vpclab validate
if vpclab status handson >/dev/null 2>&1; then
  echo "==> the hands-on lab is already up"
  vpclab status handson
else
  echo "==> bringing up the hands-on lab"
  vpclab up
fi

cat <<'TRY'

Try this next:
  sudo vpclab exec web -- ip -br addr        # the instance holds only its private IP
  sudo vpclab exec app -- ping -c1 203.0.113.60
  sudo vpclab exec vpc-router -- ip rule     # route tables as policy routing
  vpclab plan | less                         # everything the lab is made of
  sudo vpclab down                           # remove it all
TRY
