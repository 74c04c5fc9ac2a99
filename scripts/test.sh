#!/usr/bin/env bash
# README command (b): install what is missing, then run every test, kernel tests included.
# Kernel tests need root (they create cgroups, load eBPF and attach only to their own cgroups).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root: the kernel tests load eBPF programs" >&2; exit 1; }
bash scripts/bootstrap.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --lib --bins --tests --locked -- --test-threads="${MESHWARD_TEST_THREADS:-4}" 2>&1 |
  tee "$log" || status=$?
# One closing line over every test binary (cargo prints one per binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
