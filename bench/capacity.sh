#!/usr/bin/env bash
# Capacity: 10,000 peers (100 networks of 100) connect and announce at once, against PeerPigeon-rs
# (MAX_CONNECTIONS = peers + 2,000) and then the JavaScript reference; one JSON line each from
# bench/loadgen.rs: connect failures, full-discovery time, incomplete peers, RSS per peer, and the
# latency of GET /health polled every 100 ms throughout by a monitor running as an ordinary process
# (beside how late the monitor itself woke and how long it waited for a CPU: ownWaitMaxMs, and
# p99LessOwnWaitMs, the p99 less those waits).
#
#   bash bench/capacity.sh [peers=10000] [networks=100]
#
# Every peer is one server thread and a socket on each side (the load generator serves its clients
# from a few threads: docs/performance.md, "The load generator's herd"). 10,000
# peers fit a stock kernel (vm.max_map_count 65,530, kernel.pid_max 32,768) and an open-file limit
# of 20,000; past about 12,000, raise the limits first (as root; docs/deploy.md, "Sizing"):
# sysctl -w vm.max_map_count=262144 kernel.pid_max=4194304, and LimitNOFILE / ulimit -n; with
# this load generator on the same machine, also net.core.netdev_max_backlog (docs/performance.md,
# "Capacity"). bench/capacity-vm.sh runs this in a virtual machine whose limits are its own.
source "$(dirname "$0")/../interop/common.sh"
peers="${1:-10000}"
networks="${2:-100}"
ulimit -n "$(ulimit -Hn)"
if [ "$peers" -gt 12000 ] && { [ "$(cat /proc/sys/vm/max_map_count)" -lt 131072 ] || [ "$(cat /proc/sys/kernel/pid_max)" -lt 65536 ]; }; then
  echo "raise the limits first: sysctl -w vm.max_map_count=262144 kernel.pid_max=4194304" >&2
  exit 1
fi
if [ "$(ulimit -n)" -lt $((peers + 1000)) ]; then
  echo "the open-file limit ($(ulimit -n)) is too low for $peers peers: raise it (ulimit -n, LimitNOFILE)" >&2
  exit 1
fi
echo "vm.max_map_count=$(cat /proc/sys/vm/max_map_count) kernel.pid_max=$(cat /proc/sys/kernel/pid_max) open files=$(ulimit -n)"
(cd "$root" && cargo build --release --quiet -p peerpigeon-bench --bin loadgen)
loadgen="$root/target/release/loadgen"

port="$(free_port)"
start_rust "capacity-rs" "$port" MAX_CONNECTIONS=$((peers + 2000)) MAX_PENDING_HANDSHAKES_PER_IP=1024
echo "rs: $("$loadgen" connect --url "ws://127.0.0.1:$port" --peers "$peers" --networks "$networks" --pid "${pids[-1]}")"
kill "${pids[-1]}"

port="$(free_port)"
start_js "capacity-js" "$port" --max-connections $((peers + 2000))
echo "js: $("$loadgen" connect --url "ws://127.0.0.1:$port" --peers "$peers" --networks "$networks" --pid "${pids[-1]}")"
