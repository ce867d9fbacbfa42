# Shared by interop/run.sh, interop/hub.sh and interop/browser.sh (source it; not a script of its own).
# Installs the JavaScript reference on first use, builds PeerPigeon-rs, and gives helpers to start
# servers on free loopback ports, wait for them, and stop them all on exit.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
logs="$(mktemp -d)"
pids=()
stop_servers() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_servers EXIT

if [ ! -d "$here/node_modules/peerpigeon" ]; then
  echo "== installing peerpigeon@1.1.3, ws and playwright-core with npm (--ignore-scripts: no WebRTC binary download)"
  (cd "$here" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
echo "== building PeerPigeon-rs (release)"
(cd "$root" && cargo build --release --quiet)

# Prints a free loopback port below 32768 (the kernel picks client ports above it, and one of
# those could take a server's port between this check and the server's start).
free_port() {
  node -e "
    const net = require('net');
    const attempt = () => {
      const port = 20000 + Math.floor(Math.random() * 12000);
      const s = net.createServer().once('error', attempt).listen(port, '127.0.0.1', () => { console.log(port); s.close(); });
    };
    attempt();"
}

# wait_until WHAT COMMAND: runs COMMAND every 0.1 s until it succeeds, at most 15 s.
wait_until() {
  for _ in $(seq 150); do
    if eval "$2" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $1; server logs:" >&2
  tail -n 30 "$logs"/*.log >&2
  return 1
}

# start_rust NAME PORT [ENV=VALUE ...]: starts the release binary on PORT with extra settings.
start_rust() {
  local name="$1" port="$2"
  shift 2
  env PORT="$port" HOST=127.0.0.1 "$@" "$root/target/release/peerpigeon" 2>"$logs/$name.log" &
  pids+=($!)
  wait_until "$name to listen" "grep -q 'listening on' '$logs/$name.log'"
}

# start_js NAME PORT [ARGS ...]: starts the JavaScript reference server (interop/reference-server.mjs).
start_js() {
  local name="$1" port="$2"
  shift 2
  node "$here/reference-server.mjs" "$port" "$@" >"$logs/$name.log" 2>&1 &
  pids+=($!)
  wait_until "$name to listen" "grep -q 'REFERENCE READY' '$logs/$name.log'"
}

# start_redis NAME PORT: starts Debian's redis-server on PORT (no persistence), for cluster mode.
start_redis() {
  local name="$1" port="$2"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >"$logs/$name.log" 2>&1 &
  pids+=($!)
  wait_until "$name to answer" "redis-cli -p '$port' ping | grep -q PONG"
}

# stat_is PORT EXPRESSION: whether PeerPigeon-rs on PORT reports /stats matching EXPRESSION (on `j`).
stat_is() {
  node -e "fetch('http://127.0.0.1:$1/stats').then(r=>r.json()).then(j=>process.exit(($2)?0:1)).catch(()=>process.exit(1))"
}
