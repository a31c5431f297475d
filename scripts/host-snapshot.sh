#!/usr/bin/env bash
# Prints the host's root network namespace state that a lab must never change:
# links, addresses, routes, rules, the nftables ruleset and IPv4 sysctls. Lifetimes of
# dynamic addresses and routes count down by themselves, so they are masked.
set -u
{
  echo "## ip -d link";            ip -d link show
  echo "## ip addr";               ip addr show
  echo "## ip route show table all"; ip route show table all
  echo "## ip rule";               ip rule show
  echo "## nft list ruleset";      nft list ruleset 2>&1
  echo "## ipv4 sysctls";          sysctl -a -r '^net\.ipv4\.' 2>/dev/null | sort
} | sed -E 's/(valid_lft|preferred_lft) [0-9]+sec/\1 N/g; s/expires [0-9]+sec/expires N/g'
