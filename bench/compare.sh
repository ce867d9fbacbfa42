#!/usr/bin/env bash
# Side-by-side performance: PeerPigeon-rs against the JavaScript reference (peerpigeon@1.1.3),
# measured from the outside by the same load generator (bench/loadgen.rs), servers alternating,
# several runs each, plus two linked hubs of each kind; prints a table of medians and ratios
# (PeerPigeon-rs / reference).
#
#   bash bench/compare.sh [runs=3] [peers=1000]
#
# Each measurement gets a freshly started server. Raw results go to bench/results-<date>.jsonl.
# The machine is small and shared with the load generator: trust the ratios, not one absolute number.
# Memory is read 0.5 s after the last discovery arrived (no quiet period). The /health monitor asks
# for real-time scheduling (root only), as in earlier results; bench/capacity.sh runs it ordinary.
source "$(dirname "$0")/../interop/common.sh"
runs="${1:-3}"
peers="${2:-1000}"
(cd "$root" && cargo build --release --quiet -p peerpigeon-bench --bin loadgen)
loadgen="$root/target/release/loadgen"
results="$root/bench/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
: >"$results"

# measure SERVER NAME ARGS...: starts SERVER ("rs" or "js") on a free port, runs the load generator
# scenario ARGS against it, appends its JSON (tagged) to the results, stops the server.
measure() {
  local server="$1" name="$2"
  shift 2
  local port
  port="$(free_port)"
  if [ "$server" = rs ]; then
    start_rust "bench-rs" "$port" MAX_CONNECTIONS=20000 MAX_PENDING_HANDSHAKES_PER_IP=1024
  else
    start_js "bench-js" "$port"
  fi
  local pid="${pids[-1]}"
  local line
  line="$("$loadgen" "$@" --url "ws://127.0.0.1:$port" --pid "$pid" 2>/dev/null || echo '{}')"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "{\"server\":\"$server\",\"name\":\"$name\",\"result\":$line}" >>"$results"
  echo "  $server $name: $line" | cut -c1-200
}

# measure_hub SERVER: two hubs of SERVER ("rs" or "js"), B linked to A; the load generator's `hub`
# scenario puts half of 200 peers on each (cross-hub discovery, then signals across the link at
# 1,000/s). Appended to the results like the others.
measure_hub() {
  local server="$1" port_a port_b
  port_a="$(free_port)"
  port_b="$(free_port)"
  if [ "$server" = rs ]; then
    start_rust "bench-hub-a" "$port_a" IS_HUB=true MAX_PENDING_HANDSHAKES_PER_IP=1024
    start_rust "bench-hub-b" "$port_b" IS_HUB=true MAX_PENDING_HANDSHAKES_PER_IP=1024 BOOTSTRAP_HUBS="ws://127.0.0.1:$port_a"
  else
    start_js "bench-hub-a" "$port_a" --hub
    start_js "bench-hub-b" "$port_b" --hub --bootstrap "ws://127.0.0.1:$port_a"
  fi
  local hub_a="${pids[-2]}" hub_b="${pids[-1]}"
  local line
  line="$("$loadgen" hub --url "ws://127.0.0.1:$port_a" --url2 "ws://127.0.0.1:$port_b" --peers 200 \
    --seconds 10 --rate 1000 2>/dev/null || echo '{}')"
  kill "$hub_a" "$hub_b" 2>/dev/null || true
  wait "$hub_a" "$hub_b" 2>/dev/null || true
  echo "{\"server\":\"$server\",\"name\":\"hub\",\"result\":$line}" >>"$results"
  echo "  $server hub: $line" | cut -c1-200
}

for run in $(seq "$runs"); do
  echo "== run $run of $runs"
  for server in rs js; do
    measure "$server" discovery connect --peers "$peers" --networks 1 --settle 0.5 --monitor realtime
    measure "$server" memory connect --peers "$peers" --networks $((peers / 100 > 0 ? peers / 100 : 1)) --settle 0.5 --monitor realtime
    measure "$server" saturation relay --peers "$peers" --seconds 10 --inflight 2
    measure "$server" latency-5k relay --peers "$peers" --seconds 10 --rate 5000
    measure "$server" latency-20k relay --peers "$peers" --seconds 10 --rate 20000
    measure "$server" churn churn --workers 100 --seconds 10
    measure_hub "$server"
  done
done
python3 "$root/bench/table.py" "$results"
