#!/usr/bin/env bash
# README command (a): build meshward and run the agent on the bundled example policy
# (examples/mesh.yaml, embedded in the binary: no control plane needed). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root: the agent loads eBPF programs" >&2; exit 1; }
bash scripts/bootstrap.sh
cargo build --release --bin meshward

CGROUP2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
DEMO_CGROUP="$CGROUP2/meshward-demo/web-client"
mkdir -p "$DEMO_CGROUP"
ADMIN=${MESHWARD_ADMIN_ADDR:-127.0.0.1:15020}

cat <<MSG

meshward is starting with the bundled example policy (examples/mesh.yaml).
  governed workload : demo/web-client = processes in cgroup $DEMO_CGROUP
  admin endpoint    : http://$ADMIN/healthz  /metrics  /policy  /events
From another terminal, as root, open a shell inside the workload:
  bash -c 'echo \$\$ > $DEMO_CGROUP/cgroup.procs; exec bash'
and try (allowed: 127.0.0.0/8:8080, any host :80 and :443; everything else is denied):
  curl -sS http://127.0.0.1:8080/   # allowed (connection refused if nothing listens), audited
  curl -sS http://127.0.0.1:9090/   # denied: connect() fails with EPERM (curl: "Could not connect")
Then: ./target/release/meshward events   |   ./target/release/meshward explain --from demo/web-client --to 127.0.0.1:9090
Stop with Ctrl-C: the pinned programs keep enforcing; 'meshward uninstall' removes them.

MSG
exec ./target/release/meshward run --admin-addr "$ADMIN" "$@"
