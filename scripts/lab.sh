#!/usr/bin/env bash
# The main job, in one command on a fresh Debian 12 machine:
#   sudo scripts/lab.sh
# Installs what is missing, builds vpclab, installs it as /usr/local/bin/vpclab, brings
# up the built-in hands-on lab (the write-up's VPC), checks every expectation with real
# clients (vpclab probe) and leaves the lab up for you to explore.
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

echo
echo "==> checking every expectation of the lab with real clients"
vpclab probe || { echo "some probes failed: see above (the lab stays up for you to look)"; exit 1; }

endpoint=$(vpclab status handson --json | sed -n 's/.*"endpoint": "\([^"]*\)".*/\1/p' | head -1)
cat <<TRY

Try this next (the write-up's hands-on, for real):
  sudo vpclab ssh web                                   # ssh -i aws-study.pem ec2-user@<public DNS>
  sudo vpclab exec web -- nslookup $endpoint
  sudo vpclab exec web -- mysql --defaults-extra-file=/run/vpclab/handson/keys/my-database.client.cnf -h $endpoint
  sudo vpclab reboot my-database --failover             # then nslookup again: the other AZ
  sudo vpclab trace app example-web --port 80           # the NAT gateway's 7 steps, from real packets
  sudo vpclab drill failover                            # RTO and lost writes, measured
  cp labs/handson.yaml my-lab.yaml                      # edit it (a rule, an instance, a route), then:
  sudo vpclab apply my-lab.yaml                         # only the difference, live
  vpclab reach stranger web --port 22                   # why a path is blocked, AWS's way
  vpclab diagram -o handson.svg                         # the architecture picture
  sudo vpclab down                                      # remove it all
TRY
