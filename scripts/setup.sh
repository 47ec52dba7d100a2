#!/usr/bin/env bash
# Installs what ringside needs on a fresh Debian 12 machine (idempotent, quick when all is present).
# Usage: scripts/setup.sh [--lab]    --lab also prepares the QEMU lab guest (bench-harness/lab).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive TMPDIR=${TMPDIR:-/var/tmp}
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

PKGS=(build-essential pkg-config clang libelf-dev zlib1g-dev make hwloc libhwloc-dev libudev-dev
      numactl jq iproute2 nftables tmux prometheus
      libibverbs-dev librdmacm-dev rdma-core ibverbs-providers ibverbs-utils libclang1-14
      chromium)  # chromium: the HTML report test (tests/tests/report_browser.rs, headless)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found: install a stable Rust toolchain (rustup) first"; exit 1; }
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt >/dev/null 2>&1 || true

if [ "${1:-}" = "--lab" ]; then
  bash bench-harness/lab/setup.sh
fi
