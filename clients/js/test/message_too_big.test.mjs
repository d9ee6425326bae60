// A publish larger than the server accepts (its --max-message-bytes): the
// server closes with 1009, or answers a long-poll send with 413. Resent, it
// would get the same answer forever and hold up the publishes behind it; it
// is rejected with message_too_big instead.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_SEND_BYTES, TetherError, flush, isRetryable, setup } from './helpers.mjs';
import { lpOnly, openLp, retry } from './lp_helpers.mjs';

const wsOnly = { transports: ['websocket'] };
const bytes = (msg) => Buffer.byteLength(JSON.stringify(msg));
const tooBig = (n) => (e) =>
  e instanceof TetherError &&
  e.code === 'message_too_big' &&
  e.message === `the server closed with 1009: this publish (${n} bytes) is larger than its --max-message-bytes`;

/** Records how each promise settled, by name, in order. */
function settled(promises) {
  const log = [];
  for (const [name, p] of Object.entries(promises)) {
    p.then(
      (r) => log.push(`${name}:${r.offset}`),
      (e) => log.push(`${name}:${e.code}`),
    );
  }
  return log;
}

test('WebSocket 1009: the largest publish sent is rejected (message_too_big), the others are resent with their keys', async () => {
  const ctx = setup(wsOnly);
  const { client, ws } = ctx;
  client.connect();
  ws.last().welcome();
  const huge = 'x'.repeat(100_000);
  const all = { a: client.publish('chat', 1), big: client.publish('chat', huge), c: client.publish('chat', 3) };
  const log = settled(all);
  const first = ws.last().sentOf('publish');
  assert.equal(first.length, 3);
  ws.last().serverClose(1009, 'message of 100092 bytes exceeds the limit of 65536');
  await flush();
  assert.deepEqual(log, ['big:message_too_big']);
  await assert.rejects(all.big, tooBig(bytes(first[1])));
  assert.equal(isRetryable('message_too_big'), false);
  assert.equal(client.state.state, 'reconnecting');
  assert.equal(client.state.code, 1009);

  retry(ctx);
  ws.last().welcome();
  const resent = ws.last().sentOf('publish');
  assert.deepEqual(resent.map((m) => m.key), [first[0].key, first[2].key]);
  assert.deepEqual(resent.map((m) => m.data), [1, 3]);
  for (const [i, m] of resent.entries()) ws.last().receive({ type: 'ack', id: m.id, offset: i + 1 });
  assert.deepEqual(await all.a, { offset: 1 });
  assert.deepEqual(await all.c, { offset: 2 });
  assert.equal(client.state.state, 'connected');
});

test('WebSocket: two publishes too big, two 1009s: the larger goes first, then the other; the small ones are acked', async () => {
  const ctx = setup(wsOnly);
  const { client, ws } = ctx;
  client.connect();
  ws.last().welcome();
  const h1 = 'x'.repeat(80_000);
  const h2 = 'y'.repeat(120_000);
  const all = {
    s1: client.publish('chat', 1),
    h1: client.publish('chat', h1),
    s2: client.publish('chat', 2),
    h2: client.publish('chat', h2),
    s3: client.publish('chat', 3),
  };
  const log = settled(all);
  const first = ws.last().sentOf('publish');
  const key = Object.fromEntries(Object.keys(all).map((name, i) => [name, first[i].key]));

  ws.last().serverClose(1009, 'message too big');
  await flush();
  assert.deepEqual(log, ['h2:message_too_big'], 'the largest first');
  await assert.rejects(all.h2, tooBig(bytes(first[3])));
  retry(ctx);
  ws.last().welcome();
  const second = ws.last().sentOf('publish');
  assert.deepEqual(second.map((m) => m.key), [key.s1, key.h1, key.s2, key.s3]);

  ws.last().serverClose(1009, 'message too big');
  await flush();
  assert.deepEqual(log, ['h2:message_too_big', 'h1:message_too_big']);
  await assert.rejects(all.h1, tooBig(bytes(second[1])));
  retry(ctx);
  ws.last().welcome();
  const third = ws.last().sentOf('publish');
  assert.deepEqual(third.map((m) => m.key), [key.s1, key.s2, key.s3]);
  for (const [i, m] of third.entries()) ws.last().receive({ type: 'ack', id: m.id, offset: i + 1 });
  await flush();
  assert.deepEqual(log, ['h2:message_too_big', 'h1:message_too_big', 's1:1', 's2:2', 's3:3']);
});

test('a 1009 rejects only a publish sent on that connection: one queued before its welcome is kept', async () => {
  const ctx = setup(wsOnly);
  const { client, ws } = ctx;
  const p = client.publish('chat', 'x'.repeat(100_000));
  client.connect();
  ws.last().open();
  ws.last().serverClose(1009, 'message too big'); // before the welcome: nothing was sent
  await flush();
  retry(ctx);
  ws.last().welcome();
  const [sent] = ws.last().sentOf('publish');
  assert.ok(sent, 'still sent');
  ws.last().receive({ type: 'ack', id: sent.id, offset: 7 });
  assert.deepEqual(await p, { offset: 7 });
});

test('long polling: a 413 to a send of one publish rejects it (message_too_big); the session goes on with the rest', async () => {
  const ctx = setup(lpOnly);
  const { client, http, states } = ctx;
  client.connect();
  await openLp(http);
  const poll = http.last('poll');
  const big = client.publish('chat', 'x'.repeat(MAX_SEND_BYTES + 10_000));
  await flush();
  const send = http.last('send');
  assert.deepEqual(send.json.map((m) => m.type), ['publish']);
  const small = client.publish('chat', 2); // waits behind it: one send at a time
  const log = settled({ big, small });
  const seen = states.length;
  send.respond(413, 'request body over 4 × --max-message-bytes + 1 KiB (263168 bytes)');
  await flush();
  assert.deepEqual(log, ['big:message_too_big']);
  await assert.rejects(
    big,
    (e) =>
      e instanceof TetherError &&
      e.code === 'message_too_big' &&
      e.message === `this publish (${Buffer.byteLength(send.body) - 2} bytes) is larger than the server accepts (HTTP 413)`,
  );
  assert.equal(states.length, seen, 'no state change');
  assert.equal(client.state.state, 'connected');
  assert.equal(http.requests.filter((r) => r.route === 'open').length, 1, 'no new /lp/open');
  assert.equal(poll.settled, false, 'the poll is left alone');
  const next = http.last('send');
  assert.equal(next.client, 'lp-1');
  assert.deepEqual(next.json.map((m) => m.data), [2]);
  next.respond(200, [{ type: 'ack', id: next.json[0].id, offset: 5 }]);
  assert.deepEqual(await small, { offset: 5 });
});

test('long polling: a close 1009 in a send answer rejects the largest publish sent; the reconnect resends the rest', async () => {
  const ctx = setup(lpOnly);
  const { client, http } = ctx;
  const huge = 'x'.repeat(100_000); // under MAX_SEND_BYTES: in one body with the others
  const all = { a: client.publish('chat', 1), big: client.publish('chat', huge), c: client.publish('chat', 3) };
  const log = settled(all);
  client.connect();
  await openLp(http);
  const send = http.last('send');
  const [, a, b, c] = send.json;
  assert.deepEqual(send.json.map((m) => m.type), ['ping', 'publish', 'publish', 'publish']);
  send.respond(200, [
    { type: 'pong' },
    { type: 'ack', id: a.id, offset: 1 },
    { type: 'close', code: 1009, reason: 'message of 100092 bytes exceeds the limit of 65536' },
  ]);
  await flush();
  assert.deepEqual(log, ['a:1', 'big:message_too_big']);
  await assert.rejects(all.big, tooBig(bytes(b)));
  assert.equal(client.state.code, 1009);
  retry(ctx);
  await openLp(http, { type: 'welcome', client: 'lp-2', ping_interval_ms: 25000, pong_timeout_ms: 10000, version: 1 });
  const again = http.last('send');
  assert.deepEqual(again.json.map((m) => m.type), ['ping', 'publish']);
  assert.equal(again.json[1].key, c.key);
  again.respond(200, [{ type: 'pong' }, { type: 'ack', id: again.json[1].id, offset: 2 }]);
  await flush();
  assert.deepEqual(log, ['a:1', 'big:message_too_big', 'c:2']);
});

test('long polling: a 413 to a send of several messages (a server with a small --max-message-bytes) halves the bodies that follow', async () => {
  const ctx = setup(lpOnly);
  const { client, http, errors } = ctx;
  const bound = 4 * 10_240 + 1024; // --max-message-bytes 10240: bodies up to 41,984 bytes
  const data = 'x'.repeat(9_000);
  const all = Array.from({ length: 20 }, () => client.publish('chat', data));
  client.connect();
  await openLp(http);
  const sizes = [];
  let offset = 0;
  for (let send = http.last('send'); send; send = http.last('send')) {
    const size = Buffer.byteLength(send.body);
    sizes.push(size);
    if (size > bound) send.respond(413, 'request body too large');
    else send.respond(200, send.json.map((m) => (m.type === 'ping' ? { type: 'pong' } : { type: 'ack', id: m.id, offset: ++offset })));
    await flush();
    assert.ok(sizes.length < 50, 'converges');
  }
  assert.ok(sizes[0] > bound, 'the first body is refused');
  assert.deepEqual((await Promise.all(all)).map((r) => r.offset), Array.from({ length: 20 }, (_, i) => i + 1));
  assert.equal(http.requests.filter((r) => r.route === 'open').length, 1, 'no new /lp/open');
  assert.equal(client.state.state, 'connected');
  assert.deepEqual(errors, []);
});
