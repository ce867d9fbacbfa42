#!/usr/bin/env bash
# Checks deploy/Dockerfile and deploy/compose.yaml with a container engine: builds the image, runs
# it, asks /health from outside and `peerpigeon --healthcheck` inside, connects two SignalingClients,
# stops it (exit status 0 within 10 s); then brings up the two-hub compose file and signals from a
# peer on one hub to a peer on the other.
#
#   bash deploy/test-container.sh            # docker, or podman when there is no docker
#   ENGINE=podman COMPOSE=podman-compose bash deploy/test-container.sh
#
# Not part of .ci/run: it pulls base images from a container registry, which CI machines cannot
# reach. Uses host ports 23000, 23001 and 23002.
source "$(dirname "$0")/../interop/common.sh"
engine="${ENGINE:-$(command -v docker >/dev/null && echo docker || echo podman)}"
compose="${COMPOSE:-$engine compose}"
image=peerpigeon-rs-test

healthy() { node -e "fetch('http://127.0.0.1:$1/health').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"; }

echo "== $engine build -f deploy/Dockerfile"
"$engine" build --format docker -q -f "$root/deploy/Dockerfile" -t "$image" "$root" >/dev/null 2>&1 ||
  "$engine" build -q -f "$root/deploy/Dockerfile" -t "$image" "$root" >/dev/null
"$engine" rm -f pp-test >/dev/null 2>&1 || true
"$engine" run -d --name pp-test -p 127.0.0.1:23000:3000 "$image" >/dev/null
trap '"$engine" rm -f pp-test >/dev/null 2>&1; stop_servers' EXIT
wait_until "the container to answer /health" "healthy 23000"
test "$("$engine" exec pp-test id -u)" = 10001 || { echo "the server runs as root" >&2; exit 1; }
"$engine" exec pp-test peerpigeon --healthcheck
node "$root/interop/signaling-client.mjs" ws://127.0.0.1:23000
"$engine" stop -t 10 pp-test >/dev/null
status="$("$engine" inspect pp-test --format '{{.State.ExitCode}}')"
test "$status" = 0 || { echo "the container exited with $status on SIGTERM" >&2; exit 1; }
echo "== one container: healthy, non-root, signals, stops cleanly"

echo "== $compose -f deploy/compose.yaml: two hubs linked with HUB_TOKEN"
export HUB_TOKEN="$(openssl rand -hex 16)"
sed -e 's/"3000:3000"/"127.0.0.1:23001:3000"/' -e 's/"3001:3000"/"127.0.0.1:23002:3000"/' \
  "$root/deploy/compose.yaml" >"$root/deploy/.compose-test.yaml"
trap '$compose -f "$root/deploy/.compose-test.yaml" down >/dev/null 2>&1; rm -f "$root/deploy/.compose-test.yaml"; "$engine" rm -f pp-test >/dev/null 2>&1; stop_servers' EXIT
$compose -f "$root/deploy/.compose-test.yaml" up -d >/dev/null 2>&1
wait_until "both hubs to answer /health" "healthy 23001 && healthy 23002"
wait_until "hub-b's link to hub-a" "node -e \"fetch('http://127.0.0.1:23002/hubstats').then(r=>r.json()).then(j=>process.exit(j.connectedHubs===1?0:1)).catch(()=>process.exit(1))\""
node "$root/interop/signaling-client.mjs" ws://127.0.0.1:23001 ws://127.0.0.1:23002
echo "== containers: image and compose mesh passed"
