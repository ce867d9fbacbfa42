#!/usr/bin/env bash
# Capacity: 10,000 peers (100 networks of 100) connect and announce at once, against PeerPigeon-rs
# (MAX_CONNECTIONS=12000) and then the JavaScript reference (maxConnections 12000); one JSON line
# each from bench/loadgen.rs: connect failures, full-discovery time, incomplete peers, RSS per
# peer, and the latency of GET /health polled every 100 ms throughout.
#
#   bash bench/capacity.sh [peers=10000] [networks=100]
#
# Every peer is two server threads plus a load-generator thread: raise the system limits first
# (as root): sysctl -w vm.max_map_count=262144 kernel.pid_max=4194304 (docs/deploy.md, "Sizing").
source "$(dirname "$0")/../interop/common.sh"
peers="${1:-10000}"
networks="${2:-100}"
if [ "$(cat /proc/sys/vm/max_map_count)" -lt 131072 ] || [ "$(cat /proc/sys/kernel/pid_max)" -lt 65536 ]; then
  echo "raise the limits first: sysctl -w vm.max_map_count=262144 kernel.pid_max=4194304" >&2
  exit 1
fi
ulimit -n "$(ulimit -Hn)"
(cd "$root" && cargo build --release --quiet -p peerpigeon-bench --bin loadgen)
loadgen="$root/target/release/loadgen"

port="$(free_port)"
start_rust "capacity-rs" "$port" MAX_CONNECTIONS=12000 MAX_PENDING_HANDSHAKES_PER_IP=1024
echo "rs: $("$loadgen" connect --url "ws://127.0.0.1:$port" --peers "$peers" --networks "$networks" --pid "${pids[-1]}")"
kill "${pids[-1]}"

port="$(free_port)"
start_js "capacity-js" "$port" --max-connections 12000
echo "js: $("$loadgen" connect --url "ws://127.0.0.1:$port" --peers "$peers" --networks "$networks" --pid "${pids[-1]}")"
