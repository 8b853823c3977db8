#!/usr/bin/env bash
# Install what berth's build and tests need on a fresh Debian 12 machine (root). Idempotent.
set -euo pipefail
need=()
for p in busybox-static libseccomp-dev pkg-config iptables nftables iproute2 util-linux procps runc skopeo; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  echo "ci-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # skopeo and runc are interop peers: tests skip with a reason when they cannot be installed.
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || \
    apt-get install -y -qq --no-install-recommends busybox-static libseccomp-dev pkg-config iptables nftables iproute2 util-linux procps
fi
command -v cargo >/dev/null || { echo "ci-deps: cargo not found (install Rust stable with rustup)"; exit 1; }
