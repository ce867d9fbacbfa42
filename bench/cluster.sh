#!/usr/bin/env bash
# What a cluster costs: three PeerPigeon-rs instances sharing a real redis-server (cluster mode),
# against one instance alone and one instance in cluster mode, measured from the outside by the
# same load generator (bench/loadgen.rs), arrangements alternating, several runs each; prints a
# table of medians, and Redis's own CPU.
#
#   bash bench/cluster.sh [runs=3] [peers=1000]
#
# - discovery: `peers` peers in one network, spread over the instances in turn, all announcing at
#   once; the time until every peer has heard of every other.
# - relay p99 at 5,000 signals/s: the same peers, offers to random peers of the network (with three
#   instances two of three cross instances); and `hub` with half of 200 peers on each of two
#   instances, every offer crossing.
# - Redis CPU: what `INFO cpu` says Redis spent during each measurement, per second of it.
#
# All of it shares the machine's cores with the load generator and Redis: compare the arrangements
# with each other, not with a machine that has a core per instance. Raw results go to
# bench/results-cluster-<date>.jsonl.
source "$(dirname "$0")/../interop/common.sh"
runs="${1:-3}"
peers="${2:-1000}"
(cd "$root" && cargo build --release --quiet -p peerpigeon-bench --bin loadgen)
loadgen="$root/target/release/loadgen"
results="$root/bench/results-cluster-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
: >"$results"

# redis_cpu PORT: Redis's CPU seconds so far (user + system).
redis_cpu() {
  redis-cli -p "$1" info cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { printf "%.3f", s }'
}

# measure ARRANGEMENT NAME ARGS...: starts ARRANGEMENT (alone, cluster-1, cluster-3) on free ports,
# runs the load generator with ARGS against its instances, appends its JSON (tagged, with Redis's
# CPU) to the results, stops everything.
measure() {
  local arrangement="$1" name="$2"
  shift 2
  local redis="" count=1 urls=() first_pid=${#pids[@]}
  case "$arrangement" in
    cluster-1) count=1 ;;
    cluster-3) count=3 ;;
  esac
  if [ "$arrangement" != alone ]; then
    redis="$(free_port)"
    start_redis bench-redis "$redis"
  fi
  for i in $(seq "$count"); do
    local port
    port="$(free_port)"
    if [ -n "$redis" ]; then
      start_rust "bench-$i" "$port" MAX_CONNECTIONS=20000 MAX_PENDING_HANDSHAKES_PER_IP=1024 CLUSTER_REDIS_URL="redis://127.0.0.1:$redis"
    else
      start_rust "bench-$i" "$port" MAX_CONNECTIONS=20000 MAX_PENDING_HANDSHAKES_PER_IP=1024
    fi
    urls+=("ws://127.0.0.1:$port")
  done
  if [ -n "$redis" ]; then
    for url in "${urls[@]}"; do
      wait_until "instance $url to see the others" "stat_is ${url##*:} 'j.cluster.otherInstances===$((count - 1))'"
    done
  fi
  local list line cpu_before=0 cpu_after=0 started ended
  list="$(IFS=,; echo "${urls[*]}")"
  if [ "$name" = across ]; then
    set -- "$@" --url "${urls[0]}" --url2 "${urls[1]:-${urls[0]}}"
  else
    set -- "$@" --url "$list"
  fi
  [ -n "$redis" ] && cpu_before="$(redis_cpu "$redis")"
  started="$(date +%s.%N)"
  line="$("$loadgen" "$@" 2>/dev/null || echo '{}')"
  ended="$(date +%s.%N)"
  [ -n "$redis" ] && cpu_after="$(redis_cpu "$redis")"
  for pid in "${pids[@]:$first_pid}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]:$first_pid}"; do wait "$pid" 2>/dev/null || true; done
  local redis_share
  redis_share="$(awk -v a="$cpu_after" -v b="$cpu_before" -v s="$started" -v e="$ended" 'BEGIN { printf "%.4f", (a - b) / (e - s) }')"
  echo "{\"arrangement\":\"$arrangement\",\"name\":\"$name\",\"redisCpuShare\":$redis_share,\"result\":$line}" >>"$results"
  echo "  $arrangement $name (Redis CPU $redis_share): $line" | cut -c1-220
}

for run in $(seq "$runs"); do
  echo "== run $run of $runs"
  for arrangement in alone cluster-1 cluster-3; do
    measure "$arrangement" discovery connect --peers "$peers" --networks 1 --settle 0.5
    measure "$arrangement" latency-5k relay --peers "$peers" --seconds 10 --rate 5000
  done
  # Every signal from one instance's peers to another's (alone: both halves on the one server).
  for arrangement in alone cluster-3; do
    measure "$arrangement" across hub --peers 200 --seconds 10 --rate 5000
  done
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
FIGURES = [
    ("discovery", "full discovery, one network, ms", lambda r: r["result"].get("fullDiscoveryMs")),
    ("discovery", "  Redis CPU meanwhile, share of one core", lambda r: r.get("redisCpuShare")),
    ("latency-5k", "relay p99 at 5,000/s, random targets, ms", lambda r: (r["result"].get("latencyMs") or {}).get("p99")),
    ("latency-5k", "  lost + duplicated", lambda r: r["result"].get("lost", 0) + r["result"].get("duplicated", 0)),
    ("latency-5k", "  Redis CPU meanwhile, share of one core", lambda r: r.get("redisCpuShare")),
    ("across", "relay p99 at 5,000/s, every signal across, ms", lambda r: (r["result"].get("latencyMs") or {}).get("p99")),
    ("across", "  lost + duplicated", lambda r: r["result"].get("lost", 0) + r["result"].get("duplicated", 0)),
    ("across", "  Redis CPU meanwhile, share of one core", lambda r: r.get("redisCpuShare")),
]
arrangements = ["alone", "cluster-1", "cluster-3"]
print(f"{'figure':48} {'1 instance':>12} {'1 in cluster':>13} {'3 in cluster':>13}")
for name, label, get in FIGURES:
    cells = []
    for a in arrangements:
        xs = [get(r) for r in rows if r["arrangement"] == a and r["name"] == name]
        xs = [x for x in xs if isinstance(x, (int, float))]
        cells.append("-" if not xs else f"{statistics.median(xs):,.2f}")
    print(f"{label:48} {cells[0]:>12} {cells[1]:>13} {cells[2]:>13}")
print("(medians; 'alone' is one instance without CLUSTER_REDIS_URL)")
PY
