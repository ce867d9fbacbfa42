// Rough scale check: N peers connect to a server and announce into one network; reports the time
// until every peer has discovered every other one, and the server's RSS (from /health when it is
// PeerPigeon-rs, or from /proc/<pid>/status when a pid is given).
//
//   node interop/crowd.mjs ws://127.0.0.1:3000 [peers=1000] [pid]
//
// A first look only; the proper load generator is bench/loadgen.rs (docs/performance.md).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';

const url = process.argv[2] ?? 'ws://127.0.0.1:3000';
const count = Number(process.argv[3] ?? 1000);
const pid = process.argv[4];
setTimeout(() => { console.error('crowd: gave up after 120 s'); process.exit(1); }, 120_000).unref();

function rssKiB() {
  if (!pid) return null;
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(line.split(/\s+/)[1]);
}

const before = rssKiB();
const peers = [];
let complete = 0;
const started = Date.now();
await Promise.all(Array.from({ length: count }, () => new Promise((resolve, reject) => {
  const id = randomBytes(20).toString('hex');
  const ws = new WebSocket(`${url}/?peerId=${id}`);
  const peer = { ws, seen: 0 };
  peers.push(peer);
  ws.on('message', (raw) => {
    const m = JSON.parse(raw);
    if (m.type === 'connected') {
      ws.send(JSON.stringify({ type: 'announce', networkName: 'crowd', data: { peerId: id } }));
      resolve();
    } else if (m.type === 'peer-discovered' && ++peer.seen === count - 1) {
      complete++;
    }
  });
  ws.on('error', reject);
})));
while (complete < count) await new Promise((r) => setTimeout(r, 5));
const elapsed = Date.now() - started;
const after = rssKiB();
console.log(JSON.stringify({ peers: count, fullDiscoveryMs: elapsed, rssBeforeKiB: before, rssAfterKiB: after,
  rssPerPeerKiB: before && after ? Math.round((after - before) / count * 10) / 10 : null }));
for (const p of peers) p.ws.terminate();
process.exit(0);
