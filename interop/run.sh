#!/usr/bin/env bash
# Compatibility check: the JavaScript reference's own SignalingClient (peerpigeon@1.1.3) against
# PeerPigeon-rs, and the same script against the JavaScript reference server as a control.
#
#   bash interop/run.sh
#
# Installs the reference with npm (--ignore-scripts: its WebRTC dependency would try to download a
# binary) into interop/node_modules, builds the release binary, starts each server on a free
# loopback port, runs interop/signaling-client.mjs against it, and stops it. Exits non-zero if
# either run fails.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
logs="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

if [ ! -d "$here/node_modules/peerpigeon" ]; then
  echo "== installing peerpigeon@1.1.3 and ws with npm"
  (cd "$here" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
echo "== building PeerPigeon-rs (release)"
(cd "$root" && cargo build --release --quiet)

free_port() {
  node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

# Waits (at most 15 s) for a line matching $2 in log file $1.
wait_for_line() {
  for _ in $(seq 150); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server did not start; its log:" >&2
  cat "$1" >&2
  return 1
}

port="$(free_port)"
echo "== PeerPigeon-rs on port $port"
PORT="$port" HOST=127.0.0.1 "$root/target/release/peerpigeon" 2>"$logs/rust.log" &
pids+=($!)
wait_for_line "$logs/rust.log" "listening on"
node "$here/signaling-client.mjs" "ws://127.0.0.1:$port"

port="$(free_port)"
echo "== JavaScript reference server (peerpigeon@1.1.3) on port $port"
node "$here/reference-server.mjs" "$port" >"$logs/reference.log" 2>&1 &
pids+=($!)
wait_for_line "$logs/reference.log" "REFERENCE READY"
node "$here/signaling-client.mjs" "ws://127.0.0.1:$port"

echo "== interop: both servers passed"
