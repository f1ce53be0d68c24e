#!/usr/bin/env bash
# System packages FlexBSO builds against (liburing, jansson, ISA-L, lz4, zstd, zlib, GnuTLS) and the real
# clients and peers its tests and benchmarks use (QEMU tools, libnbd, nbdkit, fio).
# Then installs the npm dependencies and builds the native engine and the TypeScript
# (`npm ci` runs node-gyp on native/binding.gyp and tsc). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(build-essential pkg-config liburing-dev libisal-dev liblz4-dev zlib1g-dev libjansson-dev libzstd-dev libgnutls28-dev
      qemu-utils qemu-system-x86 nbdkit libnbd-bin python3-libnbd fio openssl
      )
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
npm ci --no-audit --no-fund
