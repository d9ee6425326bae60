// Publishing: acks by id, the bounded queue, resend with the same key.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { flush, retry, setup } from './helpers.mjs';

const wsOnly = { transports: ['websocket'] };
test('publish resolves with the acked offset; an error reply rejects', async () => {
  const { client, ws } = setup(wsOnly);
  client.connect();
  ws.last().welcome();
  const ok = client.publish('chat', { text: 'hi' });
  const bad = client.publish('secret', 1);
  const [p1, p2] = ws.last().sentOf('publish');
  assert.equal(p1.channel, 'chat');
  assert.deepEqual(p1.data, { text: 'hi' });
  assert.equal(typeof p1.key, 'string');
  assert.notEqual(p1.key, p2.key);
  ws.last().receive({ type: 'ack', id: p1.id, offset: 47 });
  ws.last().receive({ type: 'error', id: p2.id, code: 'forbidden', message: 'no publish permission' });
  assert.deepEqual(await ok, { offset: 47 });
  await assert.rejects(bad, (e) => e.code === 'forbidden' && e.message === 'no publish permission');
});

test('a publish answered unavailable rejects and is not resent; a new publish() is a new key', async () => {
  const { client, clock, ws } = setup(wsOnly);
  client.connect();
  ws.last().welcome();
  const p = client.publish('chat', 1);
  const [sent] = ws.last().sentOf('publish');
  ws.last().receive({ type: 'error', id: sent.id, code: 'unavailable', message: 'Redis is unreachable (reconnecting); retry' });
  await assert.rejects(p, (e) => e.code === 'unavailable');
  clock.advance(20_000);
  assert.equal(ws.last().sentOf('publish').length, 1);
  const again = client.publish('chat', 1);
  const [, resent] = ws.last().sentOf('publish');
  assert.notEqual(resent.key, sent.key);
  ws.last().receive({ type: 'ack', id: resent.id, offset: 1 });
  assert.deepEqual(await again, { offset: 1 });
});

test('publishes wait while disconnected and are sent after the welcome', async () => {
  const { client, ws } = setup(wsOnly);
  const p = client.publish('chat', 1);
  client.connect();
  assert.equal(ws.last().sent.length, 0);
  ws.last().welcome();
  const sent = ws.last().sentOf('publish');
  assert.equal(sent.length, 1);
  ws.last().receive({ type: 'ack', id: sent[0].id, offset: 1 });
  assert.deepEqual(await p, { offset: 1 });
});

test('a full queue rejects at once', async () => {
  const { client } = setup({ ...wsOnly, publishQueue: 2 });
  const a = client.publish('c', 1);
  const b = client.publish('c', 2);
  await assert.rejects(client.publish('c', 3), (e) => e.code === 'queue_full');
  client.disconnect();
  await assert.rejects(a, (e) => e.code === 'disconnected');
  await assert.rejects(b, (e) => e.code === 'disconnected');
});

test('an unacked publish is resent with the same idempotency key after a reconnect', async () => {
  const ctx = setup(wsOnly);
  const { client, ws } = ctx;
  client.connect();
  ws.last().welcome();
  const p = client.publish('chat', { n: 1 });
  const first = ws.last().sentOf('publish')[0];
  ws.last().drop();
  // The ack of the lost connection never counts.
  ws.sockets[0].receive({ type: 'ack', id: first.id, offset: 99 });
  retry(ctx);
  ws.last().welcome();
  const again = ws.last().sentOf('publish')[0];
  assert.equal(again.key, first.key);
  assert.deepEqual(again.data, first.data);
  ws.last().receive({ type: 'ack', id: again.id, offset: 12 });
  assert.deepEqual(await p, { offset: 12 });
});

test('a publish first sent longer ago than the idempotency window is not resent', async () => {
  const ctx = setup({ ...wsOnly, idempotencyWindow: 60_000, minDelay: 120_000, maxDelay: 120_000 });
  const { client, ws } = ctx;
  client.connect();
  ws.last().welcome();
  const p = client.publish('chat', 1);
  const never = client.publish('chat', 2);
  ws.last().drop();
  const unsent = client.publish('chat', 3); // queued while disconnected: never sent, never expires
  retry(ctx);
  ws.last().welcome();
  await assert.rejects(p, (e) => e.code === 'idempotency_window_expired');
  await assert.rejects(never, (e) => e.code === 'idempotency_window_expired');
  const sent = ws.last().sentOf('publish');
  assert.deepEqual(sent.map((m) => m.data), [3]);
  ws.last().receive({ type: 'ack', id: sent[0].id, offset: 3 });
  assert.deepEqual(await unsent, { offset: 3 });
});

test('a terminal close rejects pending publishes, and later ones at once', async () => {
  const { client, ws } = setup(wsOnly);
  client.connect();
  ws.last().welcome();
  const p = client.publish('chat', 1);
  ws.last().serverClose(4001, 'unauthorized');
  await assert.rejects(p, (e) => e.code === 'disconnected' && e.closeCode === 4001);
  await assert.rejects(client.publish('chat', 2), (e) => e.code === 'disconnected');
  await flush();
});

test('data that is not JSON is refused at once, the connection is kept', async () => {
  const { client, ws } = setup(wsOnly);
  client.connect();
  ws.last().welcome();
  const cyclic = {};
  cyclic.self = cyclic;
  await assert.rejects(client.publish('chat', cyclic), (e) => e.code === 'bad_request');
  await assert.rejects(client.publish('chat', 10n), (e) => e.code === 'bad_request');
  assert.equal(client.state.state, 'connected');
  assert.equal(ws.last().sentOf('publish').length, 0);
});
