#!/usr/bin/env bash
# One command that sets up and passes all tests, on a fresh Debian 12 machine:
#   sudo scripts/test.sh
# Installs what the tests need, then runs: cargo fmt --check, cargo clippy -D warnings,
# vagrant validate, every unit and integration test (the root-only ones build real
# labs), and checks that the suite left the host exactly as it found it.
set -uo pipefail
cd "$(dirname "$0")/.."

fail() { echo; echo "FAIL: $*"; exit 1; }
step() { echo; echo "==> $*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh needs root: the integration tests build real labs (namespaces, nftables)."
  echo "  run: sudo scripts/test.sh"
  exit 1
fi

started=$(date +%s)
step "setup (packages, Rust)"
scripts/setup.sh --test || fail "setup"
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

snap_before=$(mktemp) snap_after=$(mktemp)
trap 'rm -f "$snap_before" "$snap_after"' EXIT
scripts/host-snapshot.sh > "$snap_before"
labs_before=$(ls /run/vpclab 2>/dev/null | sort)

step "cargo fmt --check"
cargo fmt --all -- --check || fail "cargo fmt: run \`cargo fmt\`"

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings || fail "clippy"

step "cargo build --release"
cargo build --release || fail "release build"

step "vagrant validate"
if command -v vagrant >/dev/null 2>&1; then
  # No hypervisor here (and none needed): check the Vagrantfile itself, not a provider.
  VAGRANT_CHECKPOINT_DISABLE=1 vagrant validate --ignore-provider || fail "vagrant validate"
else
  fail "vagrant is not installed (setup.sh --test installs it)"
fi

step "cargo test (unit and root integration tests)"
cargo test --all-targets -- --test-threads="${TEST_THREADS:-4}" || fail "cargo test"

step "the host is as the suite found it"
scripts/host-snapshot.sh > "$snap_after"
if ! diff -u "$snap_before" "$snap_after"; then
  fail "the host's root network namespace changed during the tests (diff above)"
fi
left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep '^vpclab-t-' || true)
[ -z "$left" ] || fail "test labs left namespaces behind: $left"
labs_after=$(ls /run/vpclab 2>/dev/null | sort)
[ "$labs_before" = "$labs_after" ] || fail "test labs left state dirs behind in /run/vpclab"
echo "host unchanged: links, addresses, routes, rules, nftables, IPv4 sysctls; no test namespaces or state left"

echo
echo "PASS: all checks and tests passed in $(( $(date +%s) - started )) s"
