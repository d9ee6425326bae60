// The Node `ws` baseline `tether bench` compares Tether against: /echo echoes
// every message; any other path joins one broadcast group in which every
// message a connection sends goes to all the others.
// Run with: node server.js 127.0.0.1:18082  (prints `node-ws listening on ADDR`)
'use strict';
const { WebSocketServer, WebSocket } = require('ws');

const [host, port] = (process.argv[2] || '127.0.0.1:18082').split(':');
const group = new Set();
// backlog: the same accept queue as every server in benches/ (Tether's
// LISTEN_BACKLOG); Node's default is 511.
const wss = new WebSocketServer({ host, port: Number(port), backlog: 4096, perMessageDeflate: false, clientTracking: false });

wss.on('connection', (ws, req) => {
  if (req.url.startsWith('/echo')) {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    return;
  }
  group.add(ws);
  ws.on('message', (data, isBinary) => {
    for (const peer of group) {
      if (peer !== ws && peer.readyState === WebSocket.OPEN) peer.send(data, { binary: isBinary });
    }
  });
  ws.on('close', () => group.delete(ws));
  ws.on('error', () => group.delete(ws));
});
wss.on('listening', () => {
  const a = wss.address();
  console.log(`node-ws listening on ${a.address}:${a.port}`);
});
