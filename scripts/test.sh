#!/usr/bin/env bash
# README command (b): install what is missing, then run every test, kernel tests included.
# Kernel tests need root (they create cgroups, load eBPF and attach only to their own cgroups).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root: the kernel tests load eBPF programs" >&2; exit 1; }
bash scripts/bootstrap.sh
cargo test --workspace --locked -- --test-threads="${MESHWARD_TEST_THREADS:-4}"
