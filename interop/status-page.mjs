// The status page at `/`, in headless Chromium: it renders, the numbers it shows are the ones
// /stats reports, it draws the message rate, and the console stays free of errors.
//
//   node interop/status-page.mjs ws://127.0.0.1:PORT [screenshot.png]
import { chromium } from 'playwright-core';
import WebSocket from 'ws';

const server = process.argv[2];
const screenshot = process.argv[3];
const http = server.replace(/^ws/, 'http');
const fail = (message) => {
  console.error(`STATUS PAGE FAILED: ${message}`);
  process.exit(1);
};

// A few peers in two networks, one of them chatty, so there is something to show.
const randomId = () => [...crypto.getRandomValues(new Uint8Array(20))].map((b) => b.toString(16).padStart(2, '0')).join('');
const peers = await Promise.all(['alpha', 'alpha', 'beta'].map((network) => new Promise((resolve, reject) => {
  const socket = new WebSocket(`${server}/?peerId=${randomId()}`);
  socket.on('open', () => {
    socket.send(JSON.stringify({ type: 'announce', networkName: network, data: {} }));
    resolve(socket);
  });
  socket.on('error', reject);
})));
const chatter = setInterval(() => peers[0].send(JSON.stringify({ type: 'ping' })), 20);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const consoleErrors = [];
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 720 } });
  page.on('console', (message) => { if (message.type() === 'error') consoleErrors.push(message.text()); });
  page.on('pageerror', (error) => consoleErrors.push(String(error)));
  await page.goto(`${http}/`);
  const stats = await (await fetch(`${http}/stats`)).json();
  // Numbers shown are those /stats reports; the rate appears after the second poll (3 s).
  await page.waitForFunction(
    ([peers, networks]) => document.getElementById('peers').textContent === String(peers)
      && document.getElementById('networks').textContent === String(networks)
      && document.getElementById('rate').textContent !== '–'
      && document.getElementById('line').getAttribute('points') !== '',
    [stats.peers, stats.networks],
    { timeout: 15000 },
  ).catch(async () => fail(`shows peers=${await page.textContent('#peers')} networks=${await page.textContent('#networks')} rate=${await page.textContent('#rate')}, /stats says ${stats.peers} and ${stats.networks}`));
  const rate = Number(await page.textContent('#rate'));
  if (!(rate > 0)) fail(`a message rate of ${rate} while a peer pings 50 times a second`);
  if (screenshot) {
    // For a picture worth having: let the chart gather a few points while the load changes.
    let burst = 0;
    const burster = setInterval(() => { for (let i = 0; i < (burst++ % 4) * 40; i++) peers[1].send(JSON.stringify({ type: 'ping' })); }, 500);
    await page.waitForFunction(() => document.getElementById('line').getAttribute('points').split(' ').length >= 10, null, { timeout: 60000 });
    clearInterval(burster);
    await page.screenshot({ path: screenshot });
  }
  if (consoleErrors.length) fail(`console errors: ${consoleErrors.join('; ')}`);
  console.log(`STATUS PAGE OK: ${stats.peers} peers, ${stats.networks} networks, ${rate} messages/s shown`);
} finally {
  clearInterval(chatter);
  for (const socket of peers) socket.close();
  await browser.close();
}
