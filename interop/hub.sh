#!/usr/bin/env bash
# Hub interoperability: PeerPigeon-rs hubs and JavaScript reference hubs (peerpigeon@1.1.3) in one
# mesh, both ways round:
#   (a) a PeerPigeon-rs hub bootstraps to a JavaScript hub;
#   (b) a JavaScript hub bootstraps to a PeerPigeon-rs hub;
#   (c) the same with HUB_TOKEN set on the PeerPigeon-rs hub, which the JavaScript hub presents as a
#       segment of its bootstrap URL's path (it appends ?peerId= to the URL, so a path is what it can carry).
# Without HUB_TOKEN a PeerPigeon-rs hub takes links from loopback only, which is what (a) and (b) use.
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
source "$(dirname "$0")/common.sh"

echo "== (a) PeerPigeon-rs hub bootstraps to a JavaScript hub"
js_port="$(free_port)"
rs_port="$(free_port)"
start_js js-a "$js_port" --hub
start_rust rs-a "$rs_port" IS_HUB=true BOOTSTRAP_HUBS="ws://127.0.0.1:$js_port"
wait_until "the link to the JavaScript hub" "stat_is $rs_port 'j.bootstrapHubs.connected===1'"
SKIP_LEAVE=1 node "$here/signaling-client.mjs" "ws://127.0.0.1:$js_port" "ws://127.0.0.1:$rs_port"
node "$here/signaling-client.mjs" "ws://127.0.0.1:$rs_port" "ws://127.0.0.1:$js_port"

echo "== (b) a JavaScript hub bootstraps to a PeerPigeon-rs hub"
rs_port="$(free_port)"
js_port="$(free_port)"
start_rust rs-b "$rs_port" IS_HUB=true
start_js js-b "$js_port" --hub --bootstrap "ws://127.0.0.1:$rs_port"
wait_until "the JavaScript hub's link" "stat_is $rs_port 'j.hubLinks===1'"
node "$here/signaling-client.mjs" "ws://127.0.0.1:$js_port" "ws://127.0.0.1:$rs_port"
node "$here/signaling-client.mjs" "ws://127.0.0.1:$rs_port" "ws://127.0.0.1:$js_port"

echo "== (c) with HUB_TOKEN: the JavaScript hub presents it as a path segment of its bootstrap URL"
rs_port="$(free_port)"
js_port="$(free_port)"
start_rust rs-c "$rs_port" IS_HUB=true HUB_TOKEN=interop-mesh-secret
start_js js-c "$js_port" --hub --bootstrap "ws://127.0.0.1:$rs_port/mesh/interop-mesh-secret"
wait_until "the JavaScript hub's link with the token" "stat_is $rs_port 'j.hubLinks===1'"
node "$here/signaling-client.mjs" "ws://127.0.0.1:$js_port" "ws://127.0.0.1:$rs_port"

echo "== hub interop: both directions passed"
