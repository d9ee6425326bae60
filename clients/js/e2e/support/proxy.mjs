// A fault proxy (plain TCP, Node's net module) between the browser and the
// server, on 127.0.0.1. It reads the HTTP requests going to the server well
// enough to find WebSocket upgrades, and can:
//   - cut every open connection at once (`cutAll`);
//   - refuse WebSocket upgrades with HTTP 403 while passing other HTTP
//     through (`refuseWebSocket` / `allowWebSocket`);
//   - black-hole the open connections: stop forwarding in both directions
//     without closing anything, like a dead NAT entry (`blackholeAll`).
// It records every upgrade request (time, refused or not) and every request
// line it forwarded.

import net from 'node:net';

const MAX_HEAD = 64 * 1024;

export class FaultProxy {
  /** @param {{ port: number }} target the server (host 127.0.0.1) */
  constructor(target) {
    this.targetPort = target.port;
    this.conns = new Set();
    this.refusing = false;
    /** @type {Array<{ at: number, refused: boolean, path: string }>} */
    this.upgrades = [];
    /** @type {Array<{ at: number, method: string, path: string }>} */
    this.requests = [];
    this.server = net.createServer((sock) => this.accept(sock));
    this.port = 0;
  }

  /** Starts listening on a free loopback port. */
  listen() {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => {
        this.port = this.server.address().port;
        resolve(this);
      });
    });
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Forward to another server port from now on (a restarted server). */
  retarget(port) {
    this.targetPort = port;
  }

  /** Closes every open connection, both sides, at once. Returns how many. */
  cutAll() {
    const n = this.conns.size;
    for (const c of [...this.conns]) this.drop(c);
    return n;
  }

  /** Stops forwarding on every open connection, closing nothing. Returns how many. */
  blackholeAll() {
    for (const c of this.conns) c.blackholed = true;
    return this.conns.size;
  }

  /** Answers WebSocket upgrades with 403 from now on. */
  refuseWebSocket() {
    this.refusing = true;
  }

  allowWebSocket() {
    this.refusing = false;
  }

  /** Upgrade requests seen since `since` (a `Date.now()` time). */
  upgradesSince(since) {
    return this.upgrades.filter((u) => u.at >= since);
  }

  /** Open connections (including black-holed ones). */
  get open() {
    return this.conns.size;
  }

  close() {
    this.cutAll();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  // ---- one connection ----

  accept(client) {
    client.setNoDelay(true);
    const c = {
      client,
      upstream: null,
      blackholed: false,
      /** 'head': reading a request head; 'body': passing `left` body bytes; 'raw': passing everything */
      mode: 'head',
      left: 0,
      buf: Buffer.alloc(0),
    };
    this.conns.add(c);
    client.on('data', (chunk) => {
      if (c.blackholed) return;
      try {
        this.fromClient(c, chunk);
      } catch {
        this.drop(c);
      }
    });
    client.on('error', () => this.drop(c));
    client.on('close', () => this.drop(c));
  }

  fromClient(c, chunk) {
    if (c.mode === 'raw') return this.toUpstream(c, chunk);
    c.buf = c.buf.length ? Buffer.concat([c.buf, chunk]) : chunk;
    while (c.buf.length > 0 && this.conns.has(c)) {
      if (c.mode === 'raw') {
        this.toUpstream(c, c.buf);
        c.buf = Buffer.alloc(0);
        return;
      }
      if (c.mode === 'body') {
        const n = Math.min(c.left, c.buf.length);
        this.toUpstream(c, c.buf.subarray(0, n));
        c.buf = c.buf.subarray(n);
        c.left -= n;
        if (c.left === 0) c.mode = 'head';
        continue;
      }
      const end = c.buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (c.buf.length > MAX_HEAD) c.mode = 'raw'; // not HTTP as we know it: pass it on
        return;
      }
      const head = c.buf.subarray(0, end + 4);
      c.buf = c.buf.subarray(end + 4);
      const text = head.toString('latin1');
      const [method = '', path = ''] = text.split('\r\n', 1)[0].split(' ');
      const upgrade = /^upgrade:[ \t]*websocket[ \t]*$/im.test(text);
      const at = Date.now();
      if (upgrade) {
        this.upgrades.push({ at, refused: this.refusing, path });
        if (this.refusing) return this.refuse(c);
        c.mode = 'raw';
      } else {
        const length = /^content-length:[ \t]*(\d+)/im.exec(text);
        if (/^transfer-encoding:/im.test(text)) c.mode = 'raw';
        else if (length && Number(length[1]) > 0) {
          c.mode = 'body';
          c.left = Number(length[1]);
        }
      }
      this.requests.push({ at, method, path });
      this.toUpstream(c, head);
    }
  }

  refuse(c) {
    const body = 'WebSocket refused by the fault proxy\n';
    c.client.end(
      `HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    c.buf = Buffer.alloc(0);
    c.blackholed = true; // whatever else arrives on it is dropped
    c.upstream?.destroy();
  }

  toUpstream(c, data) {
    if (!c.upstream) {
      const up = net.connect({ host: '127.0.0.1', port: this.targetPort });
      up.setNoDelay(true);
      c.upstream = up;
      up.on('data', (chunk) => {
        if (!c.blackholed) c.client.write(chunk);
      });
      // A black-holed connection stays open on the browser's side whatever the server does.
      up.on('error', () => !c.blackholed && this.drop(c));
      up.on('close', () => !c.blackholed && this.drop(c));
    }
    c.upstream.write(data);
  }

  drop(c) {
    if (!this.conns.delete(c)) return;
    c.client.destroy();
    c.upstream?.destroy();
  }
}
