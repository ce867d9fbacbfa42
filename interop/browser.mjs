// Real browsers, real WebRTC: PeerPigeon's own browser bundle (peerpigeon@1.1.3,
// dist/peerpigeon-browser.js) in headless Chromium, driven by playwright-core.
//
//   node interop/browser.mjs --label NAME --peers N --repeat R ws://server-a [ws://server-b ...]
//
// Each round opens N pages, each in a browser context of its own (its own storage, as separate
// people would be), spread over the given signaling URLs in turn, all in a network of their own.
// A round passes when every page has a data channel open to every other page and has received a
// message from each of them over it. Every round's pages are closed before the next round starts,
// pass or fail, so a failed round cannot leave pages that reconnect into the next one.
// A round that fails is printed with what each page saw, and played once more with new pages and a
// new network: PeerPigeon's browser client itself now and then fails to connect two browsers, through
// the JavaScript reference too (2 rounds in about 180 on one server or linked hubs, one session on
// this machine; where traced, it had settled two crossed offers and then sent no ICE candidates with
// its answer). Exits 1 if a round fails twice, or if more than one round of the run had to be played
// again (`--allowed-retries`, 1), so a server that breaks rounds is still caught.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROUND_TIMEOUT_MS = 30_000;

function parseArgs(argv) {
  const options = { label: 'browsers', peers: 2, repeat: 3, allowedRetries: 1, urls: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--label') options.label = argv[++i];
    else if (arg === '--peers') options.peers = Number(argv[++i]);
    else if (arg === '--repeat') options.repeat = Number(argv[++i]);
    else if (arg === '--allowed-retries') options.allowedRetries = Number(argv[++i]);
    else options.urls.push(arg);
  }
  if (options.urls.length === 0 || !(options.peers >= 2) || !(options.repeat >= 1)) {
    console.error('usage: node browser.mjs [--label NAME] [--peers N] [--repeat R] ws://server [ws://server ...]');
    process.exit(2);
  }
  return options;
}

// Serves the test page and PeerPigeon's browser bundle on a loopback port of its own.
function servePage() {
  const files = {
    '/': [path.join(here, 'browser', 'page.html'), 'text/html'],
    '/peerpigeon-browser.js': [path.join(here, 'node_modules', 'peerpigeon', 'dist', 'peerpigeon-browser.js'), 'text/javascript'],
  };
  const server = http.createServer((request, response) => {
    const file = files[new URL(request.url, 'http://x').pathname];
    if (!file) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'Content-Type': file[1] });
    fs.createReadStream(file[0]).pipe(response);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// Polls `check` (an async function returning truthy when done) until it holds or `ms` pass.
async function waitFor(check, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

async function runRound(browser, pageUrl, options, round) {
  const network = `browser-${`${options.label}-${round}`.replace(/[^a-z0-9]+/gi, '-')}-${Date.now().toString(36)}`;
  const contexts = [];
  const pages = [];
  const started = Date.now();
  try {
    for (let i = 0; i < options.peers; i++) {
      const context = await browser.newContext();
      contexts.push(context);
      const page = await context.newPage();
      const consoleErrors = [];
      const frames = [];
      page.on('pageerror', (error) => consoleErrors.push(String(error)));
      page.on('websocket', (ws) => {
        const note = (dir) => (f) => frames.push(`${Date.now() - started} ${dir} ${String(f.payload).slice(0, 300)}`);
        ws.on('framesent', note('>'));
        ws.on('framereceived', note('<'));
      });
      const signal = options.urls[i % options.urls.length];
      await page.goto(`${pageUrl}/?signal=${encodeURIComponent(signal)}&network=${encodeURIComponent(network)}`);
      pages.push({ page, signal, consoleErrors, frames });
    }
    const states = () => Promise.all(pages.map(({ page }) => page.evaluate(() => window.peer)));
    const ids = async () => (await states()).map((s) => s.peerId);

    // 1. Every page has a data channel open to every other page.
    const meshed = await waitFor(async () => {
      const all = await states();
      const everyone = all.map((s) => s.peerId);
      return everyone.every(Boolean) && all.every((s) => everyone.every((id) => id === s.peerId || s.connected.includes(id)));
    }, ROUND_TIMEOUT_MS);
    const meshMs = Date.now() - started;

    // 2. A message from each page reaches every other page through the mesh.
    let delivered = false;
    if (meshed) {
      const everyone = await ids();
      for (const { page } of pages) await page.evaluate(() => window.broadcast(`hello from ${window.peer.peerId}`));
      delivered = await waitFor(async () => {
        const all = await states();
        return all.every((s) =>
          everyone.every((id) => id === s.peerId || s.received.some((m) => m.from === id && m.content === `hello from ${id}`)),
        );
      }, ROUND_TIMEOUT_MS);
    }
    const ok = meshed && delivered;
    const totalMs = Date.now() - started;
    if (ok) {
      console.log(`   round ${round}: ${options.peers} browsers meshed in ${meshMs} ms, messages delivered in ${totalMs} ms`);
      if (process.env.TRACE === 'all') pages.forEach((p, i) => console.log(`     --- page ${i} frames:\n       ${p.frames.join('\n       ')}`));
    } else {
      console.log(`   round ${round}: FAILED (${meshed ? 'messages not delivered' : 'no full mesh'} after ${totalMs} ms)`);
      const all = await states();
      all.forEach((s, i) => {
        console.log(`     page ${i} on ${pages[i].signal}: id ${s.peerId}, signaling ${s.signaling}, ` +
          `data channels to [${s.connected.map((c) => c.slice(0, 8)).join(', ')}], ` +
          `messages from [${s.received.map((m) => m.from.slice(0, 8)).join(', ')}]` +
          (s.errors.length || pages[i].consoleErrors.length ? `, errors: ${[...s.errors, ...pages[i].consoleErrors].join('; ')}` : ''));
      });
      if (process.env.TRACE) pages.forEach((p, i) => console.log(`     --- page ${i} frames:\n       ${p.frames.join('\n       ')}`));
    }
    return ok;
  } finally {
    // Closing the contexts closes their pages and with them their WebSockets and peer connections.
    await Promise.all(contexts.map((context) => context.close().catch(() => {})));
  }
}

const options = parseArgs(process.argv.slice(2));
const pageServer = await servePage();
const pageUrl = `http://127.0.0.1:${pageServer.address().port}`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-features=WebRtcHideLocalIpsWithMdns'],
});
console.log(`== ${options.label}: ${options.peers} browsers on ${options.urls.join(' + ')}, ${options.repeat} rounds`);
let failures = 0;
let retried = 0;
try {
  for (let round = 1; round <= options.repeat; round++) {
    if (await runRound(browser, pageUrl, options, round)) continue;
    retried++;
    console.log(`   round ${round}: played again with new pages and a new network`);
    if (!(await runRound(browser, pageUrl, options, `${round} (again)`))) failures++;
  }
} finally {
  await browser.close();
  pageServer.close();
}
if (failures > 0 || retried > options.allowedRetries) {
  console.log(`== ${options.label}: FAILED (${failures} of ${options.repeat} rounds failed twice, ${retried} played again)`);
  process.exit(1);
}
const again = retried > 0 ? ` (${retried} played again)` : '';
console.log(`== ${options.label}: all ${options.repeat} rounds passed${again}`);
