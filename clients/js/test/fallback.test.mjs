// The fallback from WebSocket to long polling, the probe back, and what is
// remembered (docs/browser.md, "Fallback rules").
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FIRST_PROBE_DELAY, fakeEnv, fakeStorage, flush, setup } from './helpers.mjs';
import { idleLp, lpOnly, openLp, retry, subscribeLp } from './lp_helpers.mjs';

test(`fallback: after fallbackAfter WebSocket failures in a row, long polling, remembered`, async () => {
  const ctx = setup({ fallbackAfter: 2 });
  const { client, ws, http } = ctx;
  client.connect();
  ws.last().drop(); // never opened (blocked)
  assert.equal(client.state.transport, 'websocket');
  retry(ctx);
  ws.last().drop();
  assert.equal(client.state.transport, 'longpoll');
  retry(ctx);
  assert.equal(ws.sockets.length, 2);
  await openLp(http);
  assert.deepEqual(client.state, { state: 'connected', transport: 'longpoll' });
  // Remembered: the next reconnect uses long polling again.
  http.last('poll').respond(503, 'busy\n');
  await flush();
  retry(ctx);
  assert.equal(ws.sockets.length, 2);
  assert.equal(http.open('open').length, 1);
});

test('fallback: a WebSocket that opens but never sends a welcome → long polling at once', () => {
  const ctx = setup({ handshakeTimeout: 1000, fallbackAfter: 5 });
  const { client, ws, clock } = ctx;
  client.connect();
  ws.last().open();
  clock.advance(1000);
  assert.equal(client.state.transport, 'longpoll');
});

test('probe: while on long polling, a WebSocket with a welcome takes over, recovering positions', async () => {
  const ctx = setup({ fallbackAfter: 1, probeInterval: 60_000 });
  const { client, ws, http, clock } = ctx;
  const seen = [];
  client.connect();
  ws.last().drop();
  retry(ctx);
  await openLp(http);
  await subscribeLp(ctx, 'news', { epoch: 'e', offset: 5, recovered: false }, { onMessage: (m) => seen.push(m.offset) });
  http.last('poll').respond(200, [{ type: 'message', channel: 'news', offset: 6, data: null }]);
  await flush();
  // A failed probe: long polling goes on, another probe later.
  await idleLp(ctx, 60_000);
  assert.equal(ws.sockets.length, 2);
  ws.last().drop();
  assert.deepEqual(client.state, { state: 'connected', transport: 'longpoll' });
  await idleLp(ctx, 60_000);
  assert.equal(ws.sockets.length, 3);
  const pending = http.requests.filter((r) => !r.settled);
  const probe = ws.last();
  probe.welcome();
  assert.deepEqual(client.state, { state: 'connected', transport: 'websocket' });
  assert.ok(pending.every((r) => r.aborted), 'the long-poll requests are aborted');
  const sub = probe.sentOf('subscribe')[0];
  assert.deepEqual(sub.recover, { epoch: 'e', offset: 6 });
  probe.receive({ type: 'subscribed', id: sub.id, channel: 'news', epoch: 'e', offset: 7, recovered: true, publications: [{ offset: 6, data: null }, { offset: 7, data: null }] });
  assert.deepEqual(seen, [6, 7], 'nothing lost, nothing twice');
  // Back on WebSocket for good: the next failure retries WebSocket first.
  const count = http.requests.length;
  probe.drop();
  retry(ctx);
  assert.equal(ws.sockets.length, 4);
  assert.equal(http.requests.length, count);
});

test('an unacked publish survives the switch from long polling to WebSocket with its key', async () => {
  const ctx = setup({ fallbackAfter: 1, probeInterval: 1000 });
  const { client, ws, http, clock } = ctx;
  client.connect();
  ws.last().drop();
  retry(ctx);
  await openLp(http);
  const p = client.publish('chat', 'x');
  const key = http.last('send').json[0].key;
  clock.advance(1000);
  ws.last().welcome();
  const resent = ws.last().sentOf('publish')[0];
  assert.equal(resent.key, key);
  ws.last().receive({ type: 'ack', id: resent.id, offset: 3 });
  assert.deepEqual(await p, { offset: 3 });
});

test('transports: the order is ignored, WebSocket is tried first when allowed', () => {
  const { client, ws, http } = setup({ transports: ['longpoll', 'websocket'] });
  assert.equal(client.state.transport, 'websocket');
  client.connect();
  assert.equal(ws.sockets.length, 1);
  assert.equal(http.requests.length, 0);
});

test('transports: ["longpoll"] never opens a WebSocket', async () => {
  const { client, ws, http } = setup({ transports: ['longpoll'] });
  client.connect();
  await openLp(http);
  assert.equal(ws.sockets.length, 0);
  assert.equal(client.state.transport, 'longpoll');
});

test('probe: a WebSocket that opens but sends no welcome within handshakeTimeout is given up', async () => {
  const ctx = setup({ fallbackAfter: 1, probeInterval: 10_000, handshakeTimeout: 2000 });
  const { client, ws, http } = ctx;
  client.connect();
  ws.last().drop();
  retry(ctx);
  await openLp(http);
  await idleLp(ctx, 10_000);
  const probe = ws.last();
  assert.equal(ws.sockets.length, 2);
  probe.open();
  await idleLp(ctx, 2000);
  assert.ok(probe.closed, 'the probe is closed');
  assert.deepEqual(client.state, { state: 'connected', transport: 'longpoll' });
  await idleLp(ctx, 10_000);
  assert.equal(ws.sockets.length, 3, 'probed again later');
});

test('when long polling fails as well, WebSocket is tried again', async () => {
  const ctx = setup({ fallbackAfter: 2 });
  const { client, ws, http } = ctx;
  client.connect();
  ws.last().drop();
  retry(ctx);
  ws.last().drop();
  retry(ctx); // long polling
  http.last('open').fail();
  await flush();
  assert.equal(client.state.transport, 'longpoll');
  retry(ctx);
  http.last('open').fail();
  await flush();
  assert.equal(client.state.transport, 'websocket');
  retry(ctx);
  assert.equal(ws.sockets.length, 3);
});

test('fallback counts WebSocket failures in a row: a welcome starts the count over', () => {
  const ctx = setup({ fallbackAfter: 2 });
  const { client, ws } = ctx;
  client.connect();
  ws.last().drop(); // never opened: failure 1
  retry(ctx);
  ws.last().welcome();
  ws.last().drop(); // welcomed, then lost: not a failure to open
  retry(ctx);
  ws.last().drop(); // failure 1 again, not 2
  assert.equal(client.state.transport, 'websocket');
  retry(ctx);
  assert.equal(ws.sockets.length, 4);
});

test('one failed poll is retried at once; two in a row end the session', async () => {
  const ctx = setup(lpOnly);
  const { client, http } = ctx;
  client.connect();
  await openLp(http);
  http.last('poll').fail();
  await flush();
  assert.equal(client.state.state, 'connected');
  assert.equal(http.open('poll').length, 1, 'polled again');
  http.last('poll').respond(200, []); // a success in between starts the count over
  await flush();
  http.last('poll').fail();
  await flush();
  assert.equal(client.state.state, 'connected');
  http.last('poll').fail();
  await flush();
  assert.equal(client.state.state, 'reconnecting');
  assert.match(client.state.reason, /\/lp\/poll failed: network error/);
  assert.equal(http.open('poll').length, 0);
});

test('probe: the token function is called before every probe; a failing or silent one fails the probe, tried again later', async () => {
  const answers = [
    () => 'a', // the WebSocket attempt
    () => 'b', // /lp/open
    () => {
      throw new Error('auth down');
    }, // probe 1
    () => new Promise(() => {}), // probe 2: never answers
    () => Promise.resolve('e'), // probe 3
  ];
  let calls = 0;
  const ctx = setup({ fallbackAfter: 1, probeInterval: 10_000, handshakeTimeout: 2000, token: () => answers[calls++]() });
  const { client, ws, http, errors } = ctx;
  client.connect();
  await flush();
  ws.last().drop();
  retry(ctx);
  await flush();
  assert.equal(http.last('open').headers.Authorization, 'Bearer b');
  await openLp(http);
  await idleLp(ctx, 10_000);
  assert.equal(calls, 3, 'probe 1 asked for a token');
  assert.equal(ws.sockets.length, 1, 'no WebSocket without a token');
  assert.equal(errors.at(-1).code, 'token');
  assert.match(errors.at(-1).message, /auth down/);
  assert.deepEqual(client.state, { state: 'connected', transport: 'longpoll' });
  await idleLp(ctx, 10_000);
  assert.equal(calls, 4, 'probe 2 asked for a token');
  await idleLp(ctx, 2000);
  assert.match(errors.at(-1).message, /the token function did not answer within 2000 ms/);
  assert.equal(ws.sockets.length, 1);
  assert.deepEqual(client.state, { state: 'connected', transport: 'longpoll' });
  await idleLp(ctx, 10_000);
  assert.equal(calls, 5, 'probe 3 asked for a token');
  assert.equal(ws.sockets.length, 2);
  assert.equal(ws.last().url, 'ws://h:8080/ws?token=e');
  ws.last().welcome();
  assert.deepEqual(client.state, { state: 'connected', transport: 'websocket' });
});

for (const event of ['visibilitychange', 'pageshow', 'resume', 'online']) {
  test(`${event} on long polling: the poll in flight (maybe a zombie) is replaced by one from the current positions`, async () => {
    const ctx = setup(lpOnly);
    const { client, http, env } = ctx;
    client.connect();
    await openLp(http);
    await subscribeLp(ctx, 'news', { epoch: 'e', offset: 5, recovered: false });
    const before = http.last('poll');
    env.fire(event);
    await flush();
    assert.ok(before.aborted, 'the old poll is aborted');
    assert.equal(http.open('poll').length, 1, 'one poll at a time');
    const poll = http.last('poll');
    assert.notEqual(poll, before);
    assert.deepEqual(poll.json, { channels: { news: { epoch: 'e', offset: 5 } } });
    assert.deepEqual(http.last('send').json, [{ type: 'ping' }], 'the liveness check as well');
    poll.respond(200, [{ type: 'message', channel: 'news', offset: 6, data: null }]);
    await flush();
    assert.equal(client.getSubscription('news').position.offset, 6);
    assert.equal(client.state.state, 'connected');
  });
}

/** Two failures to open a WebSocket in a row after `before()`, then the long-poll session opened. */
async function fallBack(ctx, before = () => {}) {
  const { client, ws, http } = ctx;
  client.connect();
  before();
  ws.last().drop();
  retry(ctx);
  ws.last().drop();
  assert.equal(client.state.transport, 'longpoll');
  retry(ctx);
  await openLp(http);
  assert.deepEqual(client.state, { state: 'connected', transport: 'longpoll' });
}

test('fallback after an outage (WebSocket worked before): the first probe within 1-3 s, later ones every probeInterval', async () => {
  assert.deepEqual(FIRST_PROBE_DELAY, [1000, 3000]);
  const ctx = setup({ fallbackAfter: 2, probeInterval: 60_000 }); // random() 0.5: 2000 ms
  const { client, ws, clock } = ctx;
  await fallBack(ctx, () => {
    ws.last().welcome(); // it worked; then the server went away (restart, 429 storm)
    ws.last().drop();
    retry(ctx);
  });
  const sockets = ws.sockets.length;
  clock.advance(1999);
  await flush();
  assert.equal(ws.sockets.length, sockets, 'not before 2000 ms');
  clock.advance(1);
  assert.equal(ws.sockets.length, sockets + 1, 'the first probe');
  ws.last().drop(); // still down for WebSocket
  await idleLp(ctx, 55_000);
  assert.equal(ws.sockets.length, sockets + 1, 'the next probe waits probeInterval');
  await idleLp(ctx, 5000);
  assert.equal(ws.sockets.length, sockets + 2);
  ws.last().welcome();
  assert.deepEqual(client.state, { state: 'connected', transport: 'websocket' });
});

test('the first probe delay is uniform in firstProbeDelay', async () => {
  for (const [u, want] of [[0, 100], [0.5, 200], [0.999, 300]]) {
    const ctx = setup({ fallbackAfter: 1, random: () => u, firstProbeDelay: [100, 300] });
    const { client, ws, http, clock } = ctx;
    client.connect();
    ws.last().welcome();
    ws.last().drop();
    retry(ctx);
    ws.last().drop(); // fallbackAfter 1: long polling now
    retry(ctx);
    await openLp(http);
    assert.equal(ws.sockets.length, 2);
    clock.advance(want - 1);
    assert.equal(ws.sockets.length, 2, `u=${u}: not before ${want} ms`);
    clock.advance(1);
    assert.equal(ws.sockets.length, 3, `u=${u}: probe at ${want} ms`);
  }
});

test('fallback with WebSocket never welcomed (blocked): no early probe, the first after probeInterval', async () => {
  const ctx = setup({ fallbackAfter: 2, probeInterval: 60_000 });
  const { ws } = ctx;
  await fallBack(ctx);
  await idleLp(ctx, 55_000);
  assert.equal(ws.sockets.length, 2, 'no probe yet');
  await idleLp(ctx, 5000);
  assert.equal(ws.sockets.length, 3);
});

test('online while on long polling: WebSocket is probed at once (the network may have changed)', async () => {
  const ctx = setup({ fallbackAfter: 2, probeInterval: 60_000 });
  const { client, ws, env } = ctx;
  await fallBack(ctx);
  env.fire('online');
  assert.equal(ws.sockets.length, 3, 'probed at once');
  ws.last().welcome();
  assert.deepEqual(client.state, { state: 'connected', transport: 'websocket' });
});

test('online while between long-poll attempts: the probe runs right after the next welcome', async () => {
  const ctx = setup({ fallbackAfter: 2, probeInterval: 60_000 });
  const { client, ws, env, http, clock } = ctx;
  await fallBack(ctx);
  env.online = false;
  http.last('poll').fail();
  await flush();
  http.last('poll').fail();
  await flush();
  assert.equal(client.state.state, 'offline');
  env.online = true;
  env.fire('online');
  assert.equal(ws.sockets.length, 2, 'the attempt itself stays on long polling');
  await openLp(http);
  clock.advance(0);
  assert.equal(ws.sockets.length, 3, 'probed right after the welcome');
  ws.last().welcome();
  assert.deepEqual(client.state, { state: 'connected', transport: 'websocket' });
});

test('the fallback is remembered for the tab: a reload starts on long polling and probes after probeInterval', async () => {
  const storage = fakeStorage();
  const envWith = () => Object.assign(fakeEnv(), { sessionStorage: () => storage });
  const first = setup({ fallbackAfter: 2, env: envWith() });
  await fallBack(first);
  assert.deepEqual([...storage.items], [['tether:fallback:ws://h:8080/ws', '1']]);
  first.client.disconnect();

  // The same tab reloads: a new client for the same endpoint.
  const ctx = setup({ fallbackAfter: 2, probeInterval: 60_000, env: envWith() });
  const { client, ws, http } = ctx;
  assert.equal(client.state.transport, 'longpoll');
  client.connect();
  assert.equal(ws.sockets.length, 0, 'no WebSocket failures paid again');
  await openLp(http);
  assert.deepEqual(client.state, { state: 'connected', transport: 'longpoll' });
  await idleLp(ctx, 55_000);
  assert.equal(ws.sockets.length, 0, 'WebSocket never worked in this life: no early probe');
  await idleLp(ctx, 5000);
  assert.equal(ws.sockets.length, 1, 'probed after probeInterval');
  ws.last().welcome();
  assert.deepEqual(client.state, { state: 'connected', transport: 'websocket' });
  assert.equal(storage.items.size, 0, 'back on WebSocket: forgotten');

  // Another endpoint is not affected.
  storage.setItem('tether:fallback:ws://h:8080/ws', '1');
  const other = setup({ env: envWith() }, 'ws://other:8080/ws');
  assert.equal(other.client.state.transport, 'websocket');
});

test('a WebSocket welcome clears a remembered fallback (long polling failed, WebSocket tried again)', async () => {
  const storage = fakeStorage();
  storage.setItem('tether:fallback:ws://h:8080/ws', '1');
  const ctx = setup({ fallbackAfter: 2, env: Object.assign(fakeEnv(), { sessionStorage: () => storage }) });
  const { client, ws, http } = ctx;
  client.connect();
  http.last('open').fail();
  await flush();
  retry(ctx);
  http.last('open').fail();
  await flush();
  assert.equal(client.state.transport, 'websocket');
  assert.equal(storage.items.size, 1, 'switching back does not clear it');
  retry(ctx);
  ws.last().drop();
  assert.equal(storage.items.size, 1, 'a WebSocket that fails does not clear it');
  retry(ctx);
  ws.last().welcome();
  assert.equal(storage.items.size, 0, 'only a welcome does');
});

test('a sessionStorage that throws is ignored: the fallback works, nothing reported', async () => {
  const denied = () => {
    throw new Error('SecurityError: access denied');
  };
  for (const sessionStorage of [denied, () => ({ getItem: denied, setItem: denied, removeItem: denied })]) {
    const ctx = setup({ fallbackAfter: 2, env: Object.assign(fakeEnv(), { sessionStorage }) });
    assert.equal(ctx.client.state.transport, 'websocket');
    await fallBack(ctx);
    assert.deepEqual(ctx.errors, []);
  }
});
