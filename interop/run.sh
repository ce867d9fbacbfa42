#!/usr/bin/env bash
# Compatibility check: the JavaScript reference's own SignalingClient (peerpigeon@1.1.3) against
# PeerPigeon-rs, and the same script against the JavaScript reference server as a control.
#
#   bash interop/run.sh
#
# Exits non-zero if either run fails. See interop/common.sh for the setup it does.
source "$(dirname "$0")/common.sh"

port="$(free_port)"
echo "== PeerPigeon-rs on port $port"
start_rust rust "$port"
node "$here/signaling-client.mjs" "ws://127.0.0.1:$port"

port="$(free_port)"
echo "== JavaScript reference server (peerpigeon@1.1.3) on port $port"
start_js reference "$port"
node "$here/signaling-client.mjs" "ws://127.0.0.1:$port"

echo "== interop: both servers passed"
