// client.rpc(): the request and its answer, refusals, the queue while
// disconnected, never sent twice (connection_lost), 1009 and 413 blaming a
// too-big rpc, and long polling.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { flush, retry, setup } from './helpers.mjs';
import { lpOnly, openLp } from './lp_helpers.mjs';

const wsOnly = { transports: ['websocket'] };

function connected(options = {}) {
  const ctx = setup({ ...wsOnly, ...options });
  ctx.client.connect();
  ctx.ws.last().welcome();
  return ctx;
}

test('rpc resolves with the result; an error rejects with its code', async () => {
  const { client, ws } = connected();
  const ok = client.rpc('get_profile', { id: 7 });
  const none = client.rpc('ping_backend');
  const bad = client.rpc('delete_everything', null);
  const [a, b, c] = ws.last().sentOf('rpc');
  assert.deepEqual(a, { type: 'rpc', id: a.id, method: 'get_profile', data: { id: 7 } });
  assert.deepEqual(b, { type: 'rpc', id: b.id, method: 'ping_backend', data: null });
  assert.equal(new Set([a.id, b.id, c.id]).size, 3);
  ws.last().receive({ type: 'rpc', id: b.id, result: null });
  ws.last().receive({ type: 'rpc', id: a.id, result: { name: 'Ann', tags: [1] } });
  ws.last().receive({ type: 'error', id: c.id, code: 'forbidden', message: 'not yours' });
  assert.deepEqual(await ok, { name: 'Ann', tags: [1] });
  assert.equal(await none, null);
  await assert.rejects(bad, (e) => e.code === 'forbidden' && e.message === 'not yours');
  // A retryable refusal (the hook slow or down) is the server's code as is.
  const slow = client.rpc('slow');
  const [, , , d] = ws.last().sentOf('rpc');
  ws.last().receive({ type: 'error', id: d.id, code: 'unavailable', message: 'the rpc hook did not answer within 2000 ms' });
  await assert.rejects(slow, (e) => e.code === 'unavailable');
});

test('a bad method or data is refused before anything is sent', async () => {
  const { client, ws } = connected();
  for (const method of ['', 'm'.repeat(257), 'é'.repeat(129), 7]) {
    await assert.rejects(client.rpc(method, 1), (e) => e.code === 'bad_request' && /rpc method/.test(e.message));
  }
  await assert.rejects(client.rpc('m', 1n), (e) => e.code === 'bad_request' && /not JSON-serialisable/.test(e.message));
  client.rpc('m'.repeat(256), 1);
  client.rpc('é'.repeat(128), 1);
  assert.equal(ws.last().sentOf('rpc').length, 2);
});

test('rpcs wait while disconnected and go out after the restore', async () => {
  const { client, ws } = setup(wsOnly);
  const sub = client.subscribe('news');
  const p = client.rpc('early', { n: 1 });
  client.connect();
  assert.equal(ws.last().sent.length, 0);
  ws.last().welcome();
  assert.deepEqual(
    ws.last().sent.map((m) => m.type),
    ['ping', 'subscribe', 'rpc'],
  );
  const [sent] = ws.last().sentOf('rpc');
  ws.last().receive({ type: 'rpc', id: sent.id, result: 'done' });
  assert.equal(await p, 'done');
  sub.unsubscribe();
});

test('an rpc whose connection ends before the answer rejects connection_lost and is not sent again', async () => {
  const { client, clock, ws } = connected();
  const p = client.rpc('charge', { cents: 500 });
  const queued = client.publish('log', 1);
  assert.equal(ws.last().sentOf('rpc').length, 1);
  ws.last().drop();
  await assert.rejects(p, (e) => e.code === 'connection_lost' && /may or may not have been carried out/.test(e.message) && /connection lost/.test(e.message));
  retry({ client, clock });
  ws.last().welcome();
  assert.equal(ws.last().sentOf('rpc').length, 0, 'not sent again');
  assert.equal(ws.last().sentOf('publish').length, 1, 'a publish is resent');
  ws.last().receive({ type: 'ack', id: ws.last().sentOf('publish')[0].id, offset: 3 });
  assert.deepEqual(await queued, { offset: 3 });
});

test('a full rpc queue rejects at once; disconnect() rejects the waiting ones', async () => {
  const { client, ws } = setup({ ...wsOnly, publishQueue: 2 });
  const a = client.rpc('a');
  const b = client.rpc('b');
  await assert.rejects(client.rpc('c'), (e) => e.code === 'queue_full' && /rpc queue full/.test(e.message));
  // Publishes have a queue of their own.
  const pub = client.publish('x', 1);
  client.connect();
  ws.last().welcome();
  assert.equal(ws.last().sentOf('rpc').length, 2);
  client.disconnect();
  await assert.rejects(a, (e) => e.code === 'disconnected');
  await assert.rejects(b, (e) => e.code === 'disconnected');
  await assert.rejects(pub, (e) => e.code === 'disconnected');
  await assert.rejects(client.rpc('late'), (e) => e.code === 'disconnected');
});

test('1009: a larger rpc takes the blame, not a smaller publish', async () => {
  const { client, clock, ws } = connected();
  const small = client.publish('chat', 'hi');
  const big = client.rpc('upload', { blob: 'x'.repeat(10_000) });
  ws.last().serverClose(1009, 'message too big');
  await assert.rejects(big, (e) => e.code === 'message_too_big' && /this rpc \(\d+ bytes\)/.test(e.message));
  retry({ client, clock });
  ws.last().welcome();
  const [resent] = ws.last().sentOf('publish');
  ws.last().receive({ type: 'ack', id: resent.id, offset: 9 });
  assert.deepEqual(await small, { offset: 9 });
});

test('long polling: rpcs go in /lp/send and their answers settle them; a 413 to one rpc rejects it', async () => {
  const ctx = setup(lpOnly);
  ctx.client.connect();
  await openLp(ctx.http);
  const p = ctx.client.rpc('whoami');
  await flush();
  const send = ctx.http.last('send');
  const [msg] = send.json;
  assert.deepEqual(msg, { type: 'rpc', id: msg.id, method: 'whoami', data: null });
  send.respond(200, [{ type: 'rpc', id: msg.id, result: { user: 'u1' } }]);
  assert.deepEqual(await p, { user: 'u1' });

  const big = ctx.client.rpc('upload', 'x'.repeat(300_000));
  await flush();
  ctx.http.last('send').respond(413, 'request body too large\n');
  await assert.rejects(big, (e) => e.code === 'message_too_big' && /this rpc/.test(e.message));
  assert.equal(ctx.client.state.state, 'connected');
});
