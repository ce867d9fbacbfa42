#!/usr/bin/env bash
# Hub interoperability: PeerPigeon-rs hubs and JavaScript reference hubs (peerpigeon@1.1.3) in one
# mesh, both ways round:
#   (a) a PeerPigeon-rs hub bootstraps to a JavaScript hub;
#   (b) a JavaScript hub bootstraps to a PeerPigeon-rs hub.
# In each, one peer (the reference's own SignalingClient) connects to each hub; they must discover
# each other and exchange an offer and an answer across the link, and one must see the other leave.
# Each case runs twice, with the peers connecting in either order.
#
# One leave is not checked: when the JavaScript hub is the one accepting the link, it answers the
# linked hub's `peer-disconnected` with its "does not route" error, so its peers cannot be told that
# a peer of the other hub left (a JavaScript hub linked to a JavaScript hub has the same gap).
#
#   bash interop/hub.sh
#
# The JavaScript hub is started through its PeerPigeonServer class with isHub and bootstrapHubs
# (interop/reference-server.mjs); npm installs it with --ignore-scripts on first use.
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
(cd "$root" && cargo build --release --quiet)

free_port() {
  node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

# Waits (at most 15 s) until command "$2" succeeds; $1 names what is awaited.
wait_until() {
  for _ in $(seq 150); do
    if eval "$2" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $1; logs:" >&2
  tail -n 30 "$logs"/*.log >&2
  return 1
}

json_field() { # url field
  node -e "fetch('$1').then(r=>r.json()).then(j=>{const v=$2; if(!v) process.exit(1)}).catch(()=>process.exit(1))"
}

start_rust_hub() { # name port bootstrap
  IS_HUB=true PORT="$2" HOST=127.0.0.1 BOOTSTRAP_HUBS="$3" LOG_LEVEL=info \
    "$root/target/release/peerpigeon" 2>"$logs/$1.log" &
  pids+=($!)
  wait_until "$1 to listen" "grep -q 'listening on' '$logs/$1.log'"
}

start_js_hub() { # name port [bootstrap]
  if [ -n "${3:-}" ]; then
    node "$here/reference-server.mjs" "$2" --hub --bootstrap "$3" >"$logs/$1.log" 2>&1 &
  else
    node "$here/reference-server.mjs" "$2" --hub >"$logs/$1.log" 2>&1 &
  fi
  pids+=($!)
  wait_until "$1 to listen" "grep -q 'REFERENCE READY' '$logs/$1.log'"
}

echo "== (a) PeerPigeon-rs hub bootstraps to a JavaScript hub"
js_port="$(free_port)"
rs_port="$(free_port)"
start_js_hub js-a "$js_port"
start_rust_hub rs-a "$rs_port" "ws://127.0.0.1:$js_port"
wait_until "the link to the JavaScript hub" "json_field http://127.0.0.1:$rs_port/stats 'j.bootstrapHubs.connected===1'"
SKIP_LEAVE=1 node "$here/signaling-client.mjs" "ws://127.0.0.1:$js_port" "ws://127.0.0.1:$rs_port"
node "$here/signaling-client.mjs" "ws://127.0.0.1:$rs_port" "ws://127.0.0.1:$js_port"

echo "== (b) a JavaScript hub bootstraps to a PeerPigeon-rs hub"
rs_port="$(free_port)"
js_port="$(free_port)"
start_rust_hub rs-b "$rs_port" ""
start_js_hub js-b "$js_port" "ws://127.0.0.1:$rs_port"
wait_until "the JavaScript hub's link" "json_field http://127.0.0.1:$rs_port/stats 'j.hubLinks===1'"
node "$here/signaling-client.mjs" "ws://127.0.0.1:$js_port" "ws://127.0.0.1:$rs_port"
node "$here/signaling-client.mjs" "ws://127.0.0.1:$rs_port" "ws://127.0.0.1:$js_port"

echo "== hub interop: both directions passed"
