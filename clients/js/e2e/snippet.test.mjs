// docs/browser.md's page snippet, as written, in Chromium against a real
// `tether serve --jwt-secret`, getting its token from the doc's example token
// endpoint. One origin, as the doc describes (your application and Tether
// behind one proxy): a small router sends /app/ to the application (the page,
// the doc's app.js byte for byte, and the token endpoint process) and
// everything else — /tether.js, the WebSocket — to Tether.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { docBlock } from '../test/doc_snippets.mjs';
import { launch, WAIT } from './support/browser.mjs';
import { FAST, startServer, stopProcess } from './support/server.mjs';

const SECRET = 'e2e-snippet-secret';
const PAGE = '<!doctype html><p id="status"></p><pre id="feed"></pre><script type="module" src="/app/app.js"></script>';

const ctx = { tmp: '', server: null, endpoint: null, router: null, browser: null, upgrades: [], tokenRequests: 0 };

/** Starts the doc's token endpoint on a free port; resolves with that port. */
function startEndpoint(file) {
  const proc = spawn(process.execPath, [file], {
    env: { ...process.env, TETHER_AUTH_JWT_SECRET: SECRET, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  ctx.endpoint = proc;
  return new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.setEncoding('utf8').on('data', (d) => {
      out += d;
      const m = /127\.0\.0\.1:(\d+)\/app\/tether-token/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code) => reject(new Error(`the token endpoint exited (${code}) before listening`)));
    setTimeout(() => reject(new Error('the token endpoint did not listen in time')), WAIT).unref();
  });
}

/** Passes an HTTP request on to 127.0.0.1:`port` and its answer back. */
function forward(req, res, port) {
  const up = http.request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (r) => {
    res.writeHead(r.statusCode, r.headers);
    r.pipe(res);
  });
  up.on('error', () => res.destroy());
  req.pipe(up);
}

/** The one origin: /app/ is the application, the rest (and every upgrade) Tether. */
function startRouter(appPort, tetherPort) {
  const sockets = new Set();
  const router = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://x');
    if (pathname === '/app/') return res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
    if (pathname === '/app/app.js') {
      return res.writeHead(200, { 'content-type': 'text/javascript' }).end(docBlock('app.js'));
    }
    if (pathname === '/app/tether-token') ctx.tokenRequests++;
    forward(req, res, pathname.startsWith('/app/') ? appPort : tetherPort);
  });
  router.on('upgrade', (req, sock, head) => {
    ctx.upgrades.push(req.url);
    const up = net.connect(tetherPort, '127.0.0.1', () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(`${lines.join('\r\n')}\r\n\r\n`);
      up.write(head);
      sock.pipe(up).pipe(sock);
    });
    for (const s of [sock, up]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
  });
  router.stopAll = () => {
    for (const s of sockets) s.destroy();
    router.closeAllConnections();
    return new Promise((r) => router.close(() => r()));
  };
  return new Promise((resolve) => router.listen(0, '127.0.0.1', () => resolve(router)));
}

before(async () => {
  ctx.tmp = mkdtempSync(path.join(os.tmpdir(), 'tether-e2e-snippet-'));
  const endpointFile = path.join(ctx.tmp, 'token-endpoint.mjs');
  writeFileSync(endpointFile, docBlock('token-endpoint.mjs'));
  ctx.server = await startServer({ args: [...FAST, '--jwt-secret', SECRET] });
  const appPort = await startEndpoint(endpointFile);
  ctx.router = await startRouter(appPort, ctx.server.port);
  ctx.browser = await launch();
});

after(async () => {
  await ctx.browser?.close();
  await ctx.router?.stopAll();
  if (ctx.endpoint) await stopProcess(ctx.endpoint);
  await ctx.server?.stop();
  if (ctx.tmp) rmSync(ctx.tmp, { recursive: true, force: true });
});

test("browser.md's app.js, as written, connects with the endpoint's token, subscribes and publishes", async () => {
  const page = await ctx.browser.context.newPage();
  const logs = [];
  const errors = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => errors.push(e));
  const { port } = ctx.router.address();
  await page.goto(`http://127.0.0.1:${port}/app/`);

  // The page's own publish comes back through its subscription, and the
  // module's top-level `await client.publish(...)` resolved with its offset.
  await page.locator('#feed', { hasText: '1: {"text":"hi"}' }).waitFor({ timeout: WAIT });
  await page.waitForFunction(() => document.querySelector('#status').textContent === 'connected', null, { timeout: WAIT });
  const deadline = Date.now() + WAIT;
  while (!logs.includes('log: published at offset 1') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.ok(logs.includes('log: published at offset 1'), logs.join('\n'));
  assert.deepEqual(errors, []);
  assert.ok(!logs.some((l) => l.startsWith('warning: tether:')), `no token or server error: ${logs.join('\n')}`);

  // The token came from the application's endpoint and went on the WebSocket.
  assert.ok(ctx.tokenRequests >= 1);
  assert.ok(ctx.upgrades.length >= 1 && ctx.upgrades.every((u) => /^\/ws\?token=[\w-]+\.[\w-]+\.[\w-]+$/.test(u)), ctx.upgrades.join('\n'));
  await page.close();
});
