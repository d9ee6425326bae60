// The Socket.IO 4 baseline `tether bench --protocol socketio` compares Tether
// against: the same work as the Node `ws` baseline (benches/node), spoken in
// Socket.IO's own protocol over the websocket transport only (no
// long-polling, no upgrade dance). One namespace ("/"), whose sockets form
// the broadcast group:
//   - `42["pub",payload]`  -> every other socket gets `42["msg",payload]`
//     (socket.broadcast.emit: the payload is encoded once per broadcast);
//   - `42["msg",payload]`  -> the same (what a plain relay client would send);
//   - `42["echo",payload]` -> the sender gets `42["echo",payload]` back.
// Run with: node server.js 127.0.0.1:18083  (prints `socket.io listening on ADDR`)
// PING_INTERVAL_MS and PING_TIMEOUT_MS (defaults 25000 and 20000, Socket.IO's
// own) shorten Engine.IO's heartbeat, to check that the load client answers
// pings: one that does not is dropped after interval + timeout.
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const [host, port] = (process.argv[2] || '127.0.0.1:18083').split(':');
const httpServer = http.createServer((req, res) => {
  res.writeHead(404).end();
});
const io = new Server(httpServer, {
  transports: ['websocket'],
  allowUpgrades: false,
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
  pingInterval: Number(process.env.PING_INTERVAL_MS || 25000),
  pingTimeout: Number(process.env.PING_TIMEOUT_MS || 20000),
});

io.on('connection', (socket) => {
  const relay = (payload) => socket.broadcast.emit('msg', payload);
  socket.on('pub', relay);
  socket.on('msg', relay);
  socket.on('echo', (payload) => socket.emit('echo', payload));
});

// backlog: the same accept queue as every server in benches/ (Tether's
// LISTEN_BACKLOG); Node's default is 511.
httpServer.listen({ port: Number(port), host, backlog: 4096 }, () => {
  const a = httpServer.address();
  console.log(`socket.io listening on ${a.address}:${a.port}`);
});
