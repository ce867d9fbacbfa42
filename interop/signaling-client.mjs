// Two instances of the JavaScript reference's own SignalingClient (peerpigeon@1.1.3,
// src/SignalingClient.js) talk through signaling servers: both connect and announce, each discovers
// the other, A sends B an offer, B answers, B leaves and A is told. Exits 0 when all of that
// happened, 1 otherwise.
//
//   node interop/signaling-client.mjs ws://localhost:3000              # both peers on one server
//   node interop/signaling-client.mjs ws://localhost:3000 ws://localhost:3001   # A on one hub, B on another
//
// Works against PeerPigeon-rs and against the JavaScript server alike (interop/run.sh and
// interop/hub.sh run it).
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';

// The client looks for a WebSocket implementation on the global object in Node.js.
globalThis.WebSocket = WebSocket;
const { SignalingClient } = await import(new URL('./node_modules/peerpigeon/src/SignalingClient.js', import.meta.url));

const urlA = process.argv[2] ?? 'ws://localhost:3000';
const urlB = process.argv[3] ?? urlA;
const networkName = 'interop-net';
const TIMEOUT_MS = 10_000;
// Whatever happens (a server that never answers, a client stuck reconnecting), give up in time.
setTimeout(() => {
  console.error('INTEROP FAILED: no result within 30 s');
  process.exit(1);
}, 30_000).unref();

function makeClient(label) {
  const peerId = randomBytes(20).toString('hex');
  // The client reads only `networkName` from its mesh.
  const client = new SignalingClient(peerId, 10, { networkName });
  client.label = label;
  client.received = [];
  client.on('signalingMessage', (message) => client.received.push(message));
  return client;
}

function waitFor(client, what, predicate) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = setInterval(() => {
      const found = client.received.find(predicate);
      if (found) {
        clearInterval(poll);
        resolve(found);
      } else if (Date.now() - started > TIMEOUT_MS) {
        clearInterval(poll);
        reject(new Error(`${client.label} did not receive ${what} within ${TIMEOUT_MS} ms; got ${JSON.stringify(client.received.map((m) => m.type))}`));
      }
    }, 10);
  });
}

const a = makeClient('A');
const b = makeClient('B');
try {
  await a.connect(urlA);
  await b.connect(urlB);
  console.log(`connected A=${a.peerId.slice(0, 8)} to ${urlA}, B=${b.peerId.slice(0, 8)} to ${urlB}, network '${networkName}'`);

  await waitFor(a, 'peer-discovered(B)', (m) => m.type === 'peer-discovered' && m.data?.peerId === b.peerId);
  await waitFor(b, 'peer-discovered(A)', (m) => m.type === 'peer-discovered' && m.data?.peerId === a.peerId);
  console.log('discovery: A and B discovered each other');

  const offer = { type: 'offer', sdp: `v=0 interop offer ${Date.now()}` };
  await a.sendSignalingMessage({ type: 'offer', data: offer, targetPeerId: b.peerId });
  const gotOffer = await waitFor(b, 'offer from A', (m) => m.type === 'offer');
  if (gotOffer.fromPeerId !== a.peerId || gotOffer.data?.sdp !== offer.sdp) {
    throw new Error(`offer arrived altered: ${JSON.stringify(gotOffer)}`);
  }
  console.log('signal: B received A\'s offer intact, fromPeerId = A');

  const answer = { type: 'answer', sdp: 'v=0 interop answer' };
  await b.sendSignalingMessage({ type: 'answer', data: answer, targetPeerId: a.peerId });
  const gotAnswer = await waitFor(a, 'answer from B', (m) => m.type === 'answer');
  if (gotAnswer.fromPeerId !== b.peerId || gotAnswer.data?.sdp !== answer.sdp) {
    throw new Error(`answer arrived altered: ${JSON.stringify(gotAnswer)}`);
  }
  console.log('signal: A received B\'s answer intact, fromPeerId = B');

  // SKIP_LEAVE=1: B's server cannot tell A's (a JavaScript hub accepting a link answers a hub's
  // peer-disconnected with "does not route"; see interop/hub.sh).
  if (process.env.SKIP_LEAVE === '1') {
    console.log('leave: not checked (the JavaScript hub cannot be told that a linked hub\'s peer left)');
  } else {
    // Leave as the real client does on unload: goodbye, then close. (The JavaScript hub tells linked
    // hubs about a departure only when the socket closes.)
    b.sendGoodbyeMessage();
    b.disconnect();
    await waitFor(a, 'peer-disconnected(B)', (m) => m.type === 'peer-disconnected' && m.data?.peerId === b.peerId);
    console.log('leave: A was told that B left');
  }
  console.log('INTEROP OK');
  a.disconnect();
  if (b.websocket) b.disconnect();
  process.exit(0);
} catch (error) {
  console.error(`INTEROP FAILED: ${error.message}`);
  process.exit(1);
}
