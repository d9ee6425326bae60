// The `data` option (connect data for the backend's connect hook): `data=`
// on the WebSocket URL and on /lp/open only, a function asked before every
// attempt and probe, the 4 KiB bound, and a connect hook's refusal (a close
// before the welcome, or a `close` answering /lp/open) obeyed per its code.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_CONNECT_DATA_BYTES, Tether, flush, retry, setup } from './helpers.mjs';
import { lpOnly, openLp } from './lp_helpers.mjs';

const wsOnly = { transports: ['websocket'] };

/** The JSON in a URL's `data=` parameter. */
function dataOf(url) {
  return JSON.parse(new URL(url).searchParams.get('data'));
}

test('fixed data goes on every WebSocket URL, after the token', async () => {
  const data = { room: 'a b&c=d', é: [1, null] };
  const { client, clock, ws } = setup({ ...wsOnly, token: 'tok', data });
  client.connect();
  const url = ws.last().url;
  assert.ok(url.startsWith('ws://h:8080/ws?token=tok&data=%7B'), url);
  assert.equal(url.split('data=')[1], encodeURIComponent(JSON.stringify(data)));
  assert.deepEqual(dataOf(url), data);
  ws.last().welcome();
  ws.last().drop();
  retry({ client, clock });
  assert.deepEqual(dataOf(ws.last().url), data);
});

test('a data function is asked before every attempt (sync or async)', async () => {
  let n = 0;
  const { client, clock, ws } = setup({ ...wsOnly, data: async () => ({ attempt: ++n }) });
  client.connect();
  await flush();
  assert.deepEqual(dataOf(ws.last().url), { attempt: 1 });
  ws.last().drop();
  retry({ client, clock });
  await flush();
  assert.deepEqual(dataOf(ws.last().url), { attempt: 2 });
  assert.equal(ws.sockets.length, 2);
});

test('data the server would refuse: the constructor throws; a function failing or answering so fails the attempt', async () => {
  const big = { k: 'x'.repeat(MAX_CONNECT_DATA_BYTES) };
  assert.throws(() => new Tether('ws://h/ws', { data: big }), (e) => e.code === 'connect_data' && /bytes URL-encoded; the server accepts at most 4096/.test(e.message));
  assert.throws(() => new Tether('ws://h/ws', { data: [1] }), (e) => e.code === 'connect_data' && /not an array/.test(e.message));
  // Exactly at the bound is fine: {"k":"x…"} is 22 bytes encoded around its n x's.
  new Tether('ws://h/ws', { data: { k: 'x'.repeat(MAX_CONNECT_DATA_BYTES - 22) }, WebSocket: class {} });

  const answers = [() => big, () => { throw new Error('no session'); }, () => 'text', () => ({ ok: true })];
  const { client, clock, ws, errors } = setup({ ...wsOnly, data: () => answers.shift()() });
  client.connect();
  for (const why of [/4\d{3} bytes URL-encoded/, /the data function failed: no session/, /must be a JSON object, not a string/]) {
    await flush();
    assert.equal(ws.sockets.length, 0);
    assert.equal(client.state.state, 'reconnecting');
    assert.match(client.state.reason, why);
    assert.equal(errors.at(-1).code, 'connect_data');
    retry({ client, clock });
  }
  await flush();
  assert.deepEqual(dataOf(ws.last().url), { ok: true });
});

test('a data function that never answers fails the attempt after handshakeTimeout', async () => {
  const { client, clock, ws, errors } = setup({ ...wsOnly, handshakeTimeout: 2000, token: () => 't', data: () => new Promise(() => {}) });
  client.connect();
  await flush();
  clock.advance(2000);
  assert.equal(ws.sockets.length, 0);
  assert.equal(errors.at(-1).code, 'connect_data');
  assert.equal(errors.at(-1).message, 'the data function did not answer within 2000 ms');
});

test('long polling: data= on /lp/open only', async () => {
  const ctx = setup({ ...lpOnly, data: { locale: 'fr' } }, 'http://h:8080/?x=1');
  ctx.client.connect();
  await flush();
  const open = ctx.http.last('open');
  assert.deepEqual(dataOf(open.url), { locale: 'fr' });
  assert.match(open.url, /\?x=1&data=/);
  await openLp(ctx.http);
  for (const r of ctx.http.requests.slice(1)) assert.equal(new URL(r.url).searchParams.get('data'), null, r.url);
  assert.ok(ctx.http.last('poll'), 'polling');
});

test('the WebSocket probe from long polling carries the data too', async () => {
  let n = 0;
  const ctx = setup({ fallbackAfter: 1, probeInterval: 1000, data: () => ({ n: ++n }) });
  ctx.client.connect();
  await flush();
  ctx.ws.last().drop(); // the WebSocket fails: long polling
  retry(ctx);
  await flush();
  assert.deepEqual(dataOf(ctx.http.last('open').url), { n: 2 });
  await openLp(ctx.http);
  ctx.clock.advance(1000);
  await flush();
  assert.equal(ctx.ws.sockets.length, 2);
  assert.deepEqual(dataOf(ctx.ws.last().url), { n: 3 });
});

test("a connect hook's refusal before the welcome follows its code: 4500-4999 stop, 4000-4499 retry", async () => {
  for (const [code, state] of [
    [4503, 'disconnected'],
    [4999, 'disconnected'],
    [4403, 'reconnecting'],
    [1008, 'disconnected'],
  ]) {
    const { client, ws } = setup(wsOnly);
    client.connect();
    ws.last().open();
    ws.last().serverClose(code, 'refused by the backend');
    assert.equal(client.state.state, state, `${code}`);
    assert.equal(client.state.code, code);
    assert.match(client.state.reason, /refused by the backend/);
  }
});

test('long polling: a close answering /lp/open is obeyed like a close frame', async () => {
  for (const [code, state] of [
    [4503, 'disconnected'],
    [4403, 'reconnecting'],
  ]) {
    const ctx = setup(lpOnly);
    ctx.client.connect();
    await flush();
    ctx.http.last('open').respond(200, { type: 'close', code, reason: 'no session cookie' });
    await flush();
    assert.equal(ctx.client.state.state, state, `${code}`);
    assert.equal(ctx.client.state.code, code);
    assert.match(ctx.client.state.reason, /no session cookie/);
  }
  // A welcome is still required otherwise.
  const ctx = setup(lpOnly);
  ctx.client.connect();
  await flush();
  ctx.http.last('open').respond(200, [{ type: 'pong' }]);
  await flush();
  assert.equal(ctx.client.state.state, 'reconnecting');
  assert.match(ctx.client.state.reason, /not a welcome/);
});
