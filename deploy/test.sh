#!/usr/bin/env bash
# Checks the deployment kit in deploy/. The systemd unit passes `systemd-analyze verify` and keeps
# its sandbox (exposure at most 1.5 by `systemd-analyze security`); the sysctl drop-in names
# settings this kernel has. Then the reverse-proxy configurations as shipped: PeerPigeon-rs on a loopback
# port, Debian's nginx (deploy/nginx/peerpigeon.conf) and then Caddy (deploy/caddy/Caddyfile) in
# front of it with a throw-away self-signed certificate, and the JavaScript reference's own
# SignalingClient connecting over wss:// through each: both peers announce, discover each other,
# exchange an offer and an answer, and one is told when the other leaves. /health is read over
# https:// as well. The server is a hub without HUB_TOKEN: a client through the proxy that claims to
# be a hub must stay an ordinary peer, although the proxy connects from loopback. Last, two hubs
# with HUB_TOKEN link over TLS through nginx (deploy/nginx/hub-link-tls.conf), as across machines;
# and three cluster instances sharing a real redis-server behind nginx (deploy/nginx/cluster.conf),
# with two clients through the one address served by different instances. Only the listen address,
# certificate paths and upstream ports are changed from the shipped files; the proxying lines are
# the ones a user copies.
#
#   bash deploy/test.sh
#
# Needs systemd-analyze, nginx, caddy, openssl and redis-server (.ci/run installs them); a missing one
# fails the run. The container files (Dockerfile, compose*.yaml) need a container engine and are not run
# here; the cluster compose file's nginx block is checked with `nginx -t`.
source "$(dirname "$0")/../interop/common.sh"
deploy="$root/deploy"
work="$(mktemp -d)"

echo "== systemd unit: systemd-analyze verify and security"
sed "s|/usr/local/bin/peerpigeon|$root/target/release/peerpigeon|" "$deploy/systemd/peerpigeon.service" >"$work/peerpigeon.service"
systemd-analyze verify "$work/peerpigeon.service"
# --threshold is in tenths of the 0-10 exposure scale that systemd-analyze prints.
systemd-analyze security --offline=yes --threshold=15 "$work/peerpigeon.service" | tail -n 1
echo "== sysctl drop-in: every setting exists on this kernel"
grep -E '^[a-z]' "$deploy/systemd/99-peerpigeon.conf" | cut -d= -f1 | while read -r key; do
  test -e "/proc/sys/${key//.//}" || { echo "no such kernel setting: $key" >&2; exit 1; }
done

echo "== a throw-away certificate for 127.0.0.1"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
# Node.js trusts it for this run only.
export NODE_EXTRA_CA_CERTS="$work/cert.pem"

upstream="$(free_port)"
echo "== PeerPigeon-rs, a hub without HUB_TOKEN, on 127.0.0.1:$upstream"
start_rust rust "$upstream" IS_HUB=true

# claims_hub URL: announces as a hub at URL; prints what the hub made of it (hub-hello: a link).
claims_hub() {
  node -e "
    const WebSocket = require('$root/interop/node_modules/ws');
    const id = require('crypto').randomBytes(20).toString('hex');
    const ws = new WebSocket('$1' + '?peerId=' + id);
    setTimeout(() => { console.log('no answer'); process.exit(1); }, 5000);
    ws.on('open', () => ws.send(JSON.stringify({ type: 'announce', networkName: 'pigeonhub-mesh', data: { isHub: true } })));
    ws.on('message', (raw) => {
      const m = JSON.parse(raw);
      if (m.type === 'hub-hello' || m.type === 'error') { console.log(m.type === 'error' ? m.code : m.type); process.exit(0); }
    });"
}
direct="$(claims_hub "ws://127.0.0.1:$upstream/")"
test "$direct" = hub-hello || { echo "a hub on this machine was not taken as a link: $direct" >&2; exit 1; }

# has_one_link PORT: whether the hub on PORT has one live hub link.
has_one_link() {
  node -e "fetch('http://127.0.0.1:$1/hubstats').then(r=>r.json()).then(j=>process.exit(j.connectedHubs===1?0:1)).catch(()=>process.exit(1))"
}

# announces: how many announces PeerPigeon-rs has counted (its /metrics).
announces() {
  node -e "
    fetch('http://127.0.0.1:$upstream/metrics').then(r => r.text()).then(t => {
      const line = t.split('\n').find(l => l.startsWith('peerpigeon_messages_received_total{type=\"announce\"}'));
      console.log(line ? line.split(' ').pop() : 0);
    }).catch(e => { console.error(e); process.exit(1); })"
}

# through_proxy NAME PORT: the checks a user of the proxy on PORT would make.
through_proxy() {
  local name="$1" port="$2" before
  wait_until "$name to accept TLS" "node -e \"fetch('https://127.0.0.1:$port/health').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))\""
  echo "== $name: /health over https://"
  node -e "
    fetch('https://127.0.0.1:$port/health').then(r => r.json()).then(j => {
      if (j.status !== 'healthy') { console.error('unexpected /health', j); process.exit(1); }
      console.log('/health says', j.status);
    }).catch(e => { console.error(e); process.exit(1); })"
  echo "== $name: two SignalingClients over wss://"
  before="$(announces)"
  node "$root/interop/signaling-client.mjs" "wss://127.0.0.1:$port/" "wss://127.0.0.1:$port/signal"
  # They really went through to PeerPigeon-rs: it counted their announces.
  test "$(announces)" = $((before + 2)) || { echo "PeerPigeon-rs did not count two announces" >&2; exit 1; }
  echo "== $name: a client claiming to be a hub, through the proxy from loopback"
  local claim
  claim="$(claims_hub "wss://127.0.0.1:$port/")"
  test "$claim" = not-a-hub-link || { echo "through $name, a claimed hub got: $claim" >&2; exit 1; }
  echo "told $claim (directly from loopback: $direct)"
}

# render_site PORT UPSTREAM: deploy/nginx/peerpigeon.conf for a TLS listener on PORT in front of UPSTREAM.
render_site() {
  local site
  site="$(sed -e "s|listen 443 ssl;|listen 127.0.0.1:$1 ssl;|" \
    -e "/listen \[::\]:443 ssl;/d" \
    -e "s|server_name .*;|server_name localhost;|" \
    -e "s|ssl_certificate .*;|ssl_certificate $work/cert.pem;|" \
    -e "s|ssl_certificate_key .*;|ssl_certificate_key $work/key.pem;|" \
    -e "s|server 127.0.0.1:3000;|server 127.0.0.1:$2;|" \
    "$deploy/nginx/peerpigeon.conf")"
  for line in "listen 127.0.0.1:$1 ssl;" "server 127.0.0.1:$2;" "ssl_certificate_key $work/key.pem;"; do
    grep -qF "$line" <<<"$site" || { echo "deploy/nginx/peerpigeon.conf changed shape: '$line' not rendered" >&2; exit 1; }
  done
  echo "$site"
}

# start_nginx NAME: runs nginx with the server blocks in $work/NAME/sites/, everything it writes there.
start_nginx() {
  local dir="$work/$1"
  cat >"$dir/nginx.conf" <<EOF
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {}
http {
    access_log $dir/access.log;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    include $dir/sites/*.conf;
}
EOF
  nginx -t -q -p "$dir" -c "$dir/nginx.conf"
  nginx -p "$dir" -c "$dir/nginx.conf" 2>"$logs/$1.log" &
  pids+=($!)
}

nginx_port="$(free_port)"
echo "== nginx $(nginx -v 2>&1 | sed 's/.*\///') on 127.0.0.1:$nginx_port with deploy/nginx/peerpigeon.conf"
mkdir -p "$work/nginx/sites"
render_site "$nginx_port" "$upstream" >"$work/nginx/sites/peerpigeon.conf"
start_nginx nginx
through_proxy nginx "$nginx_port"

caddy_port="$(free_port)"
echo "== caddy $(caddy version | cut -d' ' -f1) on 127.0.0.1:$caddy_port with deploy/caddy/Caddyfile"
mkdir -p "$work/caddy"
{
  # Test-only global options: no admin endpoint, no port 80 redirect, state kept in the work dir.
  printf '{\n\tadmin off\n\tauto_https disable_redirects\n\tstorage file_system %s\n}\n' "$work/caddy"
  sed -e "s|^signal.example.org {|https://127.0.0.1:$caddy_port {\n\ttls $work/cert.pem $work/key.pem|" \
    -e "s|reverse_proxy 127.0.0.1:3000|reverse_proxy 127.0.0.1:$upstream|" \
    "$deploy/caddy/Caddyfile"
} >"$work/caddy/Caddyfile"
grep -qF "reverse_proxy 127.0.0.1:$upstream" "$work/caddy/Caddyfile" ||
  { echo "deploy/caddy/Caddyfile changed shape: upstream not rendered" >&2; exit 1; }
XDG_DATA_HOME="$work/caddy" XDG_CONFIG_HOME="$work/caddy" \
  caddy run --adapter caddyfile --config "$work/caddy/Caddyfile" 2>"$logs/caddy.log" &
pids+=($!)
through_proxy caddy "$caddy_port"

echo "== a hub mesh across machines: a link over TLS (deploy/nginx/hub-link-tls.conf) with HUB_TOKEN"
# Hub A behind nginx with TLS as in deploy/nginx/peerpigeon.conf; hub B links to it through a local
# nginx that carries its ws:// link to A's wss:// address and checks A's certificate.
export HUB_TOKEN="$(openssl rand -hex 16)"
hub_a="$(free_port)" hub_a_tls="$(free_port)" link_out="$(free_port)" hub_b="$(free_port)"
start_rust hub-a "$hub_a" IS_HUB=true HUB_TOKEN="$HUB_TOKEN"
mkdir -p "$work/mesh/sites"
render_site "$hub_a_tls" "$hub_a" >"$work/mesh/sites/hub-a.conf"
sed -e "s|listen 127.0.0.1:3443;|listen 127.0.0.1:$link_out;|" \
  -e "s|https://hub-a.example.org;|https://127.0.0.1:$hub_a_tls;|" \
  -e "s|hub-a.example.org;|localhost;|g" \
  -e "s|proxy_ssl_trusted_certificate .*;|proxy_ssl_trusted_certificate $work/cert.pem;|" \
  "$deploy/nginx/hub-link-tls.conf" >"$work/mesh/sites/link-to-a.conf"
grep -qF "https://127.0.0.1:$hub_a_tls;" "$work/mesh/sites/link-to-a.conf" ||
  { echo "deploy/nginx/hub-link-tls.conf changed shape: target not rendered" >&2; exit 1; }
start_nginx mesh
start_rust hub-b "$hub_b" IS_HUB=true HUB_TOKEN="$HUB_TOKEN" BOOTSTRAP_HUBS="ws://127.0.0.1:$link_out"
wait_until "hub B's link to hub A through TLS" "has_one_link $hub_b && has_one_link $hub_a"
node "$root/interop/signaling-client.mjs" "wss://127.0.0.1:$hub_a_tls/" "ws://127.0.0.1:$hub_b/"

echo "== a cluster behind nginx (deploy/nginx/cluster.conf): three instances sharing a real redis-server"
redis_port="$(free_port)"
start_redis cluster-redis "$redis_port"
instances=("$(free_port)" "$(free_port)" "$(free_port)")
for i in 0 1 2; do
  start_rust "instance-$i" "${instances[$i]}" CLUSTER_REDIS_URL="redis://127.0.0.1:$redis_port" MAX_PENDING_HANDSHAKES_PER_IP=1024
done
for port in "${instances[@]}"; do
  wait_until "instance $port to see the other two" "stat_is $port 'j.cluster.otherInstances===2'"
done
cluster_tls="$(free_port)"
mkdir -p "$work/cluster/sites"
sed -e "s|listen 443 ssl;|listen 127.0.0.1:$cluster_tls ssl;|" \
  -e "/listen \[::\]:443 ssl;/d" \
  -e "s|server_name .*;|server_name localhost;|" \
  -e "s|ssl_certificate .*;|ssl_certificate $work/cert.pem;|" \
  -e "s|ssl_certificate_key .*;|ssl_certificate_key $work/key.pem;|" \
  -e "s|server 127.0.0.1:3001;|server 127.0.0.1:${instances[0]};|" \
  -e "s|server 127.0.0.1:3002;|server 127.0.0.1:${instances[1]};|" \
  -e "s|server 127.0.0.1:3003;|server 127.0.0.1:${instances[2]};|" \
  "$deploy/nginx/cluster.conf" >"$work/cluster/sites/cluster.conf"
for port in "${instances[@]}"; do
  grep -qF "server 127.0.0.1:$port;" "$work/cluster/sites/cluster.conf" ||
    { echo "deploy/nginx/cluster.conf changed shape: upstream $port not rendered" >&2; exit 1; }
done
start_nginx cluster
wait_until "nginx in front of the cluster" "node -e \"fetch('https://127.0.0.1:$cluster_tls/health').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))\""
# Two SignalingClients through the one address: nginx sends them to different instances (least_conn),
# and they discover each other, exchange an offer and an answer, and hear each other leave.
node "$root/interop/signaling-client.mjs" "wss://127.0.0.1:$cluster_tls/" "wss://127.0.0.1:$cluster_tls/"
served=0
for port in "${instances[@]}"; do
  if stat_is "$port" 'j.messagesHandled>0'; then served=$((served + 1)); fi
done
test "$served" -ge 2 || { echo "the two clients did not reach two different instances ($served)" >&2; exit 1; }
echo "the two clients were served by $served different instances"
echo "== deploy/compose-cluster.yaml: its nginx configuration passes nginx -t"
mkdir -p "$work/compose/sites"
sed -n '/content: |/,$p' "$deploy/compose-cluster.yaml" | tail -n +2 | sed -e 's/^      //' -e 's/\$\$/$/g' \
  -e "s/instance-[123]:3000/127.0.0.1:${instances[0]}/" >"$work/compose/sites/compose.conf"
grep -qF "proxy_pass http://peerpigeon_cluster;" "$work/compose/sites/compose.conf" ||
  { echo "deploy/compose-cluster.yaml changed shape: nginx configuration not found" >&2; exit 1; }
cat >"$work/compose/nginx.conf" <<EOF
pid $work/compose/nginx.pid;
error_log $work/compose/error.log warn;
events {}
http { access_log off; include $work/compose/sites/*.conf; }
EOF
nginx -t -q -p "$work/compose" -c "$work/compose/nginx.conf"

echo "== deploy: the systemd unit, nginx, Caddy, a hub link over TLS and a cluster behind nginx passed"
