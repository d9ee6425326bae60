// docs/browser.md's snippets run as written: the page's module script (its
// token function included) against a fake page, fetch and WebSocket, and the
// example token endpoint as a real Node process whose token is checked.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { browserDoc as doc, docBlock } from './doc_snippets.mjs';
import { fakeWebSocket } from './helpers.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const tmp = mkdtempSync(join(os.tmpdir(), 'tether-snippet-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));
let runs = 0;

/** Waits (bounded) until `cond()` holds: the client's own timers run for real. */
async function until(cond, what) {
  for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setTimeout(r, 1));
  assert.ok(cond(), `timed out waiting for ${what}`);
}

/** A page element with the parts the snippet uses. */
function element() {
  return {
    textContent: '',
    append(text) {
      this.textContent += text;
    },
    replaceChildren() {
      this.textContent = '';
    },
  };
}

/**
 * Runs app.js as written (only its import of `/tether.js` points at the test
 * build) with the page's globals faked; `answers` are the token endpoint's
 * responses, in turn.
 */
async function runPage(answers) {
  const page = docBlock('app.js');
  const client = pathToFileURL(join(here, '../.test-build/tether.js')).href;
  const src = page.replace("from '/tether.js'", `from '${client}'`);
  assert.notEqual(src, page, "app.js imports from '/tether.js'");
  const file = join(tmp, `app-${++runs}.mjs`);
  writeFileSync(file, src);

  const ws = fakeWebSocket();
  const requests = [];
  const elements = { '#status': element(), '#feed': element() };
  const warned = [];
  const logged = [];
  const fakes = {
    location: { origin: 'https://app.example', href: 'https://app.example/page' },
    document: { querySelector: (sel) => elements[sel] ?? null },
    WebSocket: ws.FakeWS,
    fetch: async (url, init) => {
      requests.push({ url, init });
      const a = answers.shift();
      assert.ok(a, `an unexpected request for ${url}`);
      return { ok: a.status >= 200 && a.status < 300, status: a.status, text: async () => a.body };
    },
  };
  const saved = Object.fromEntries(Object.keys(fakes).map((k) => [k, Object.getOwnPropertyDescriptor(globalThis, k)]));
  const savedConsole = { warn: console.warn, log: console.log };
  const savedRandom = Math.random;
  for (const [k, v] of Object.entries(fakes)) Object.defineProperty(globalThis, k, { value: v, configurable: true, writable: true });
  console.warn = (...a) => warned.push(a);
  console.log = (...a) => logged.push(a);
  Math.random = () => 0; // the backoff after a failed token: retry at once
  const restore = () => {
    for (const [k, d] of Object.entries(saved)) {
      if (d) Object.defineProperty(globalThis, k, d);
      else delete globalThis[k];
    }
    Object.assign(console, savedConsole);
    Math.random = savedRandom;
  };
  const done = import(pathToFileURL(file).href);
  return { ws, requests, elements, warned, logged, done, restore };
}

/** Plays the server on `sock`: welcome, the subscribe, the publish's ack, the publication. */
async function serve(sock) {
  sock.welcome();
  await until(() => sock.sentOf('subscribe').length === 1 && sock.sentOf('publish').length === 1, 'subscribe and publish');
  const [sub] = sock.sentOf('subscribe');
  const [pub] = sock.sentOf('publish');
  assert.equal(sub.channel, 'news');
  assert.deepEqual(pub.data, { text: 'hi' });
  sock.receive({ type: 'subscribed', id: sub.id, channel: 'news', epoch: 'e', offset: 0, recovered: false, publications: [] });
  sock.receive({ type: 'ack', id: pub.id, offset: 1 });
  sock.receive({ type: 'message', channel: 'news', offset: 1, data: pub.data });
}

test("the page's snippet connects with the token its endpoint answered", async () => {
  const page = await runPage([{ status: 200, body: 'hdr.claims.sig' }]);
  try {
    await until(() => page.ws.sockets.length === 1, 'the WebSocket');
    assert.equal(page.requests[0].url, '/app/tether-token');
    assert.equal(page.ws.last().url, 'wss://app.example/ws?token=hdr.claims.sig');
    await serve(page.ws.last());
    await page.done; // the module's top-level `await client.publish(...)` resolved
    assert.deepEqual(page.logged, [['published at offset', 1]]);
    assert.equal(page.elements['#status'].textContent, 'connected');
    assert.equal(page.elements['#feed'].textContent, '1: {"text":"hi"}\n');
    assert.deepEqual(page.warned, []);
    page.ws.last().serverClose(1000); // stops the client: no timer left behind
    assert.equal(page.elements['#status'].textContent, 'disconnected');
  } finally {
    page.restore();
  }
});

test("a 404 from the token endpoint fails the attempt and is retried; its body never becomes the token", async () => {
  const page = await runPage([
    { status: 404, body: '<h1>Not Found</h1>' },
    { status: 200, body: 'fresh.token.ok' },
  ]);
  try {
    await until(() => page.ws.sockets.length === 1, 'the retry');
    assert.equal(page.ws.last().url, 'wss://app.example/ws?token=fresh.token.ok');
    assert.equal(page.requests.length, 2);
    assert.equal(page.warned.length, 1);
    const [prefix, code, message] = page.warned[0];
    assert.equal(prefix, 'tether:');
    assert.equal(code, 'token');
    assert.match(message, /HTTP 404/);
    await serve(page.ws.last());
    await page.done;
    assert.equal(page.elements['#status'].textContent, 'connected');
    page.ws.last().serverClose(1000);
  } finally {
    page.restore();
  }
});

test('the example token endpoint signs an HS256 token with the secret Tether is given (--jwt-secret)', async (t) => {
  const file = join(tmp, 'token-endpoint.mjs');
  writeFileSync(file, docBlock('token-endpoint.mjs'));
  const secret = 'snippet-test-secret';
  const child = spawn(process.execPath, [file], {
    env: { ...process.env, TETHER_AUTH_JWT_SECRET: secret, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => child.kill());
  const url = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/(http:\/\/127\.0\.0\.1:\d+\/app\/tether-token)/);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`the endpoint exited (${code}) before listening`)));
    setTimeout(() => reject(new Error('the endpoint did not listen within 10 s')), 10_000).unref();
  });

  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('cache-control'), 'no-store');
  const token = await res.text();
  const [header, claims, sig] = token.split('.');
  const json = (s) => JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
  assert.deepEqual(json(header), { alg: 'HS256', typ: 'JWT' });
  assert.equal(sig, createHmac('sha256', secret).update(`${header}.${claims}`).digest('base64url'));
  const c = json(claims);
  assert.equal(c.sub, 'user-42');
  const now = Date.now() / 1000;
  assert.ok(c.exp > now && c.exp <= now + 3600, `exp ${c.exp} is within the hour`);
  // What the page's snippet does with it: subscribe to and publish on `news`.
  assert.ok(c.subscribe.includes('news') && c.publish.includes('news'));

  assert.equal((await fetch(new URL('/token', url))).status, 404);
});

test("clients/js/README.md's token function is the one run here", () => {
  const fn = docBlock('app.js').match(/^async function token\(\) \{\n[\s\S]*?^\}$/m);
  assert.ok(fn, 'app.js defines async function token()');
  const readme = readFileSync(join(here, '../README.md'), 'utf8');
  assert.ok(readme.includes(fn[0]), 'clients/js/README.md shows the same token function');
  assert.ok(!readme.includes("fetch('/token')") && !doc.includes("fetch('/token')"), 'no snippet fetches /token');
});
