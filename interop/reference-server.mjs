// Starts the JavaScript reference server (peerpigeon@1.1.3) for side-by-side comparison.
//
//   node interop/reference-server.mjs [port] [--hub] [--bootstrap ws://host:port,...] [--max-connections N]
//
// As a hub it is started with autoConnect: false and its bootstrap links opened by hand, which keeps
// its WebRTC hub mesh off (WebRTC is not installed with --ignore-scripts); see docs/protocol.md §5.
// The package exports only its root, so the server module is loaded by path.
const { PeerPigeonServer } = await import(new URL('./node_modules/peerpigeon/server/index.js', import.meta.url));

const args = process.argv.slice(2);
const port = Number(args.find((a) => /^\d+$/.test(a)) ?? 3000);
const isHub = args.includes('--hub');
const bootstrapAt = args.indexOf('--bootstrap');
const bootstrapHubs = bootstrapAt >= 0 ? args[bootstrapAt + 1].split(',') : [];
const maxAt = args.indexOf('--max-connections');
const maxConnections = maxAt >= 0 ? Number(args[maxAt + 1]) : undefined;

const server = new PeerPigeonServer({ port, host: '127.0.0.1', isHub, bootstrapHubs, autoConnect: false, maxConnections });
await server.start();
if (isHub && bootstrapHubs.length > 0) {
  await server.connectToBootstrapHubs();
}
console.log(`REFERENCE READY ws://127.0.0.1:${server.port}`);
const stop = async () => {
  await server.stop();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
