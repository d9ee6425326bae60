import assert from 'node:assert/strict';
import { test } from 'node:test';
import { flush, LP_WELCOME, retry, setup, STABLE_AFTER, vectors, WAKE_CHECK_TIMEOUT } from './helpers.mjs';

const wsOnly = { transports: ['websocket'] };

test('states: connecting, connected, reconnecting (attempt, next retry time), disconnected', () => {
  const { client, ws, clock, states } = setup(wsOnly);
  assert.equal(client.state.state, 'disconnected');
  client.connect();
  assert.deepEqual(client.state, { state: 'connecting', transport: 'websocket' });
  assert.equal(ws.sockets.length, 1);
  assert.equal(ws.last().url, 'ws://h:8080/ws');
  ws.last().welcome();
  assert.deepEqual(client.state, { state: 'connected', transport: 'websocket' });
  ws.last().drop();
  const s = client.state;
  assert.equal(s.state, 'reconnecting');
  assert.equal(s.attempt, 1);
  assert.equal(s.code, 1006);
  assert.equal(s.nextRetryAt, clock.now() + 250); // random 0.5 * minDelay 500
  clock.advance(249);
  assert.equal(ws.sockets.length, 1);
  clock.advance(1);
  assert.equal(ws.sockets.length, 2);
  assert.equal(client.state.state, 'reconnecting'); // while the retry is under way
  ws.last().welcome();
  assert.equal(client.state.state, 'connected');
  client.disconnect();
  assert.equal(client.state.state, 'disconnected');
  assert.equal(client.state.code, 1000);
  assert.equal(ws.last().closed.code, 1000);
  assert.deepEqual(
    states.map((x) => x.state),
    ['connecting', 'connected', 'reconnecting', 'connected', 'disconnected'],
  );
});

test('a manual disconnect stays disconnected: no retry, no request after it', () => {
  const { client, ws, http, clock } = setup();
  client.connect();
  ws.last().drop();
  client.disconnect();
  clock.advance(3_600_000);
  assert.equal(ws.sockets.length, 1);
  assert.equal(http.requests.length, 0);
  assert.equal(client.state.state, 'disconnected');
  assert.deepEqual(clock.pending(), []);
  // connect() starts again.
  client.connect();
  assert.equal(ws.sockets.length, 2);
});

const closeCodes = vectors('close_codes.json');
const rangeCodes = closeCodes.ranges.flatMap(({ from, to, reconnect }) => [from, to].map((code) => ({ code, reconnect })));
for (const { code, reconnect } of [...closeCodes.codes, ...rangeCodes]) {
  test(`close code ${code} → ${reconnect}`, async () => {
    let calls = 0;
    const { client, ws, clock } = setup({ ...wsOnly, token: () => `t${++calls}` });
    client.connect();
    await flush();
    ws.last().welcome();
    ws.last().serverClose(code, 'bye');
    await flush();
    if (reconnect === 'never') {
      assert.equal(client.state.state, 'disconnected');
      assert.equal(client.state.code, code);
      clock.advance(600_000);
      await flush();
      assert.equal(ws.sockets.length, 1);
    } else {
      assert.equal(client.state.state, 'reconnecting');
      assert.equal(client.state.code, code);
      retry({ client, clock });
      await flush();
      assert.equal(ws.sockets.length, 2);
      assert.equal(calls, 2, 'the token function is called before every attempt');
      assert.match(ws.last().url, /token=t2$/);
    }
  });
}

test('4002 with a token function: the token is refreshed before reconnecting', async () => {
  const tokens = ['old', 'new'];
  const { client, ws, clock } = setup({ ...wsOnly, token: async () => tokens.shift() });
  client.connect();
  await flush();
  assert.equal(ws.last().url, 'ws://h:8080/ws?token=old');
  ws.last().welcome();
  ws.last().serverClose(4002, 'token expired');
  assert.equal(client.state.state, 'reconnecting');
  clock.advance(500);
  await flush();
  assert.equal(ws.last().url, 'ws://h:8080/ws?token=new');
});

test('4002 with a static token: disconnected, no retry', () => {
  const { client, ws } = setup({ ...wsOnly, token: 'static' });
  client.connect();
  ws.last().welcome();
  ws.last().serverClose(4002, 'token expired');
  assert.equal(client.state.state, 'disconnected');
  assert.equal(client.state.code, 4002);
  assert.match(client.state.reason, /no token function/);
});

test('4002 without any token (a session the connect hook made): reconnects through the hook', async () => {
  const { client, ws, clock } = setup({ ...wsOnly });
  client.connect();
  ws.last().welcome();
  ws.last().serverClose(4002, 'session expired; not refreshed');
  assert.equal(client.state.state, 'reconnecting');
  assert.equal(ws.sockets.length, 1);
  clock.advance(1000);
  await flush();
  assert.equal(ws.sockets.length, 2, 'a new connection');
  assert.equal(ws.last().url, 'ws://h:8080/ws');
});

test('a failing token function is retried with backoff and reported', async () => {
  let n = 0;
  const { client, ws, clock, errors } = setup({
    ...wsOnly,
    token: () => {
      if (++n === 1) throw new Error('auth server down');
      return 'ok';
    },
  });
  client.connect();
  await flush();
  assert.equal(ws.sockets.length, 0);
  assert.equal(client.state.state, 'reconnecting');
  assert.equal(errors[0].code, 'token');
  clock.advance(500);
  await flush();
  assert.equal(ws.last().url, 'ws://h:8080/ws?token=ok');
});

test('1013 retry_after_ms is a floor, with jitter above it', () => {
  const { client, ws, clock } = setup(wsOnly);
  client.connect();
  ws.last().welcome();
  ws.last().serverClose(1013, 'overloaded retry_after_ms=7000');
  assert.equal(client.state.nextRetryAt - clock.now(), 7250);
  clock.advance(7249);
  assert.equal(ws.sockets.length, 1);
  clock.advance(1);
  assert.equal(ws.sockets.length, 2);
});

test('1012: clients return jittered, not all at once', () => {
  const delays = [0.1, 0.5, 0.9].map((u) => {
    const { client, ws, clock } = setup({ ...wsOnly, random: () => u });
    client.connect();
    ws.last().welcome();
    ws.last().serverClose(1012, 'server restarting');
    return client.state.nextRetryAt - clock.now();
  });
  assert.deepEqual(delays, [50, 250, 450]);
  // With the server's jittered hint: at least the hint.
  const { client, ws, clock } = setup({ ...wsOnly, random: () => 0 });
  client.connect();
  ws.last().welcome();
  ws.last().serverClose(1012, 'restarting retry_after_ms=3210');
  assert.equal(client.state.nextRetryAt - clock.now(), 3210);
});

test('backoff grows, capped by maxDelay; maxAttempts stops with the last code', () => {
  const { client, ws, clock } = setup({ ...wsOnly, random: () => 0.999999, minDelay: 100, maxDelay: 1000, maxAttempts: 5 });
  client.connect();
  const got = [];
  for (let i = 0; i < 5; i++) {
    ws.last().drop();
    got.push(client.state.nextRetryAt - clock.now());
    clock.advance(got[i]);
  }
  assert.deepEqual(got, [99, 199, 399, 799, 999]);
  ws.last().drop();
  assert.equal(client.state.state, 'disconnected');
  assert.equal(client.state.code, 1006);
  assert.match(client.state.reason, /gave up after 5 attempts/);
});

test('before connect(): disconnected without code or reason', () => {
  assert.deepEqual(setup(wsOnly).client.state, { state: 'disconnected', transport: 'websocket' });
  assert.deepEqual(setup({ WebSocket: null }).client.state, { state: 'disconnected', transport: 'longpoll' });
});

test('maxAttempts running out stops with the last failure\'s code, not 1006 (as documented)', async () => {
  const { client, ws, clock } = setup({ ...wsOnly, maxAttempts: 1 });
  client.connect();
  ws.last().serverClose(4003, 'no pong');
  const pending = client.publish('chat', 1);
  retry({ client, clock });
  assert.equal(ws.sockets.length, 2);
  ws.last().serverClose(4004, 'too slow');
  assert.equal(client.state.state, 'disconnected');
  assert.equal(client.state.code, 4004);
  assert.equal(client.state.reason, 'gave up after 1 attempts; last: closed with 4004: too slow');
  await assert.rejects(pending, (e) => e.code === 'disconnected' && e.closeCode === 4004);
});

test('backoff resets only once a connection proved usable', () => {
  const { client, ws, clock } = setup(wsOnly);
  client.connect();
  // Welcome, then an immediate close: not usable, the attempts keep counting.
  ws.last().welcome();
  ws.last().serverClose(1011);
  assert.equal(client.state.attempt, 1);
  retry({ client, clock });
  ws.last().welcome();
  ws.last().serverClose(1011);
  assert.equal(client.state.attempt, 2);
  // Up for STABLE_AFTER: usable.
  retry({ client, clock });
  ws.last().welcome();
  clock.advance(STABLE_AFTER);
  ws.last().serverClose(1011);
  assert.equal(client.state.attempt, 1);
  // A completed subscribe: usable at once.
  client.subscribe('news');
  retry({ client, clock });
  ws.last().welcome();
  const id = ws.last().sentOf('subscribe')[0].id;
  ws.last().receive({ type: 'subscribed', id, channel: 'news', epoch: 'e', offset: 0, recovered: false, publications: [] });
  ws.last().serverClose(1011);
  assert.equal(client.state.attempt, 1);
});

test('handshake timeout: open + welcome within handshakeTimeout', () => {
  const { client, ws, clock } = setup({ ...wsOnly, handshakeTimeout: 2000 });
  client.connect();
  ws.last().open();
  clock.advance(1999);
  assert.equal(client.state.state, 'connecting');
  clock.advance(1);
  assert.ok(ws.sockets[0].closed);
  assert.equal(client.state.state, 'reconnecting');
  assert.match(client.state.reason, /no welcome within 2000 ms/);
});

test('a first message that is not a welcome fails the attempt', () => {
  const { client, ws } = setup(wsOnly);
  client.connect();
  ws.last().open();
  ws.last().receive({ type: 'pong' });
  assert.equal(client.state.state, 'reconnecting');
});

test('heartbeat: ping after ping_interval of silence, dead after ping_interval + pong_timeout', () => {
  const { client, ws, clock } = setup(wsOnly);
  client.connect();
  const s = ws.last();
  s.welcome(1000, 500);
  assert.equal(s.sentOf('ping').length, 1, 'the ping after the welcome');
  clock.advance(10);
  s.receive({ type: 'pong' });
  assert.equal(client.rtt, 10);
  clock.advance(900);
  s.receive({ type: 'message', channel: 'x', offset: 1, data: null }); // anything resets it
  clock.advance(999);
  assert.equal(s.sentOf('ping').length, 1);
  clock.advance(1);
  assert.equal(s.sentOf('ping').length, 2);
  clock.advance(40);
  s.receive({ type: 'pong' });
  assert.equal(client.rtt, 40);
  clock.advance(1000);
  assert.equal(s.sentOf('ping').length, 3);
  clock.advance(499);
  assert.equal(client.state.state, 'connected');
  clock.advance(1);
  assert.ok(s.closed);
  assert.equal(client.state.state, 'reconnecting');
  assert.match(client.state.reason, /nothing heard for 1500 ms/);
});

test('rtt is undefined until measured, and read-only', () => {
  const { client } = setup(wsOnly);
  assert.equal(client.rtt, undefined);
  assert.throws(() => {
    client.rtt = 5;
  }, TypeError);
  assert.equal(client.rtt, undefined);
});

test('debug logs state changes with console.debug', (t) => {
  const debug = t.mock.method(console, 'debug', () => {});
  const { client, ws } = setup({ ...wsOnly, debug: true });
  client.connect();
  ws.last().welcome();
  const lines = debug.mock.calls.map((c) => c.arguments.join(' '));
  assert.ok(lines.some((l) => l.includes('"state":"connecting"')));
  assert.ok(lines.some((l) => l.includes('"state":"connected"')));
  const quiet = setup(wsOnly);
  const before = debug.mock.callCount();
  quiet.client.connect();
  assert.equal(debug.mock.callCount(), before);
});

test('URLs: an http base derives /ws and /lp; a prefix is kept', () => {
  const a = setup({ WebSocket: null }, 'https://example.com/tether/');
  a.client.connect();
  assert.equal(a.http.requests[0].url, 'https://example.com/tether/lp/open');
  const b = setup(wsOnly, 'http://h:1/prefix');
  b.client.connect();
  assert.equal(b.ws.last().url, 'ws://h:1/prefix/ws');
});

test('listeners that throw do not break the client; errors are reported', () => {
  const { client, ws, errors } = setup(wsOnly);
  client.on('state', () => {
    throw new Error('app bug');
  });
  client.connect();
  ws.last().welcome();
  assert.equal(client.state.state, 'connected');
  assert.ok(errors.some((e) => e.message === 'app bug'));
});

test('a WebSocket error without a close event (Node 20) still ends the attempt', () => {
  const { client, ws } = setup(wsOnly);
  client.connect();
  ws.last().onerror({});
  assert.equal(client.state.state, 'reconnecting');
  assert.ok(ws.last().closed);
  ws.last().onclose?.({ code: 1006, reason: '' }); // a late close changes nothing
  assert.equal(client.state.attempt, 1);
});

test('an acked publish proves the connection usable: the backoff starts over', () => {
  const { client, ws, clock } = setup(wsOnly);
  client.connect();
  ws.last().welcome();
  ws.last().serverClose(1011);
  retry({ client, clock });
  ws.last().welcome();
  ws.last().serverClose(1011);
  assert.equal(client.state.attempt, 2, 'welcomes alone do not reset the count');
  retry({ client, clock });
  ws.last().welcome();
  client.publish('chat', 1);
  const pub = ws.last().sentOf('publish')[0];
  ws.last().receive({ type: 'ack', id: pub.id, offset: 1 });
  ws.last().serverClose(1011);
  assert.equal(client.state.attempt, 1);
  assert.equal(client.state.nextRetryAt - clock.now(), 250, 'the first backoff step again');
});

/** A client whose token function never answers by itself, connected, disconnected and connected again. */
async function reconnectedWaitingForTokens() {
  const calls = [];
  const ctx = setup({
    ...wsOnly,
    token: () => new Promise((resolve, reject) => calls.push({ resolve, reject })),
  });
  ctx.client.connect();
  await flush();
  ctx.client.disconnect();
  ctx.client.connect();
  await flush();
  return { ...ctx, calls };
}

test('a token that arrives after disconnect() and a new connect() is ignored', async () => {
  const { ws, errors, calls } = await reconnectedWaitingForTokens();
  assert.equal(calls.length, 2);
  calls[0].resolve('stale');
  await flush();
  assert.equal(ws.sockets.length, 0, "the old attempt's token opens nothing");
  calls[1].resolve('fresh');
  await flush();
  assert.equal(ws.sockets.length, 1);
  assert.equal(ws.last().url, 'ws://h:8080/ws?token=fresh');
  assert.deepEqual(errors, []);
});

test('a token function failing after disconnect() and a new connect() is ignored', async () => {
  const { client, ws, errors, calls } = await reconnectedWaitingForTokens();
  calls[0].reject(new Error('old failure'));
  await flush();
  assert.deepEqual(errors, [], 'no error reported for the old attempt');
  assert.equal(client.state.state, 'connecting', 'the new attempt goes on');
  calls[1].resolve('fresh');
  await flush();
  assert.equal(ws.sockets.length, 1);
});

test('a WebSocket that never opened within handshakeTimeout is an ordinary failure, not a forced fallback', () => {
  const { client, ws, clock } = setup({ handshakeTimeout: 1000, fallbackAfter: 2 });
  client.connect();
  clock.advance(1000); // never opened: blocked or slow, counted like any failure
  assert.ok(ws.sockets[0].closed);
  assert.equal(client.state.state, 'reconnecting');
  assert.equal(client.state.transport, 'websocket', 'one failure of two: still WebSocket');
  retry({ client, clock });
  assert.equal(ws.sockets.length, 2);
  clock.advance(1000);
  assert.equal(client.state.transport, 'longpoll', 'the second failure in a row falls back');
});

test('a token function that never answers: the attempt ends after handshakeTimeout, is reported and retried; a late answer is ignored', async () => {
  const calls = [];
  const { client, ws, clock, errors } = setup({
    ...wsOnly,
    handshakeTimeout: 2000,
    token: () => new Promise((resolve) => calls.push(resolve)),
  });
  client.connect();
  await flush();
  clock.advance(1999);
  await flush();
  assert.equal(client.state.state, 'connecting');
  assert.deepEqual(errors, []);
  clock.advance(1);
  await flush();
  assert.equal(client.state.state, 'reconnecting');
  assert.equal(client.state.code, 1006);
  assert.match(client.state.reason, /the token function did not answer within 2000 ms/);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'token');
  assert.equal(errors[0].message, 'the token function did not answer within 2000 ms');
  assert.equal(client.state.nextRetryAt - clock.now(), 250, 'the normal backoff');
  calls[0]('late');
  await flush();
  assert.equal(ws.sockets.length, 0, 'the late answer opens nothing');
  assert.equal(client.state.state, 'reconnecting');
  clock.advance(250);
  await flush();
  assert.equal(calls.length, 2, 'the retry asks again');
  calls[1]('fresh');
  await flush();
  assert.equal(ws.last().url, 'ws://h:8080/ws?token=fresh');
  assert.equal(errors.length, 1);
});

test('the token deadline is cleared by disconnect() and while offline', async () => {
  const { client, clock, env, errors } = setup({ ...wsOnly, handshakeTimeout: 2000, token: () => new Promise(() => {}) });
  client.connect();
  await flush();
  client.disconnect();
  assert.deepEqual(clock.pending(), []);
  client.connect();
  await flush();
  env.online = false;
  env.fire('offline');
  assert.deepEqual(clock.pending(), []);
  clock.advance(10_000);
  await flush();
  assert.equal(client.state.state, 'offline');
  assert.deepEqual(errors, []);
});

test('a ping follows every welcome, before the resubscribes: the RTT is known at connect', () => {
  const { client, ws, clock } = setup(wsOnly);
  client.subscribe('news');
  client.connect();
  ws.last().welcome();
  assert.deepEqual(
    ws.last().sent.map((m) => m.type),
    ['ping', 'subscribe'],
  );
  clock.advance(7);
  ws.last().receive({ type: 'pong' });
  assert.equal(client.rtt, 7);
  ws.last().drop();
  retry({ client, clock });
  ws.last().welcome();
  assert.equal(ws.last().sent[0].type, 'ping', 'and after a reconnect');
  clock.advance(3);
  ws.last().receive({ type: 'pong' });
  assert.equal(client.rtt, 3);
});

test('long polling: the ping after the welcome goes in the same /lp/send as the restore', async () => {
  const { client, http, clock } = setup({ WebSocket: null });
  client.subscribe('news');
  client.publish('chat', 1);
  client.connect();
  http.last('open').respond(200, LP_WELCOME);
  await flush();
  assert.equal(http.open('send').length, 1);
  assert.deepEqual(
    http.last('send').json.map((m) => m.type),
    ['ping', 'subscribe', 'publish'],
  );
  clock.advance(20);
  http.last('send').respond(200, [{ type: 'pong' }]);
  await flush();
  assert.equal(client.rtt, 20);
});

test('ping() resolves with the RTT; concurrent calls share the next pong', async () => {
  const { client, ws, clock } = setup(wsOnly);
  client.connect();
  const s = ws.last();
  s.welcome();
  s.receive({ type: 'pong' });
  const timers = clock.pending().length;
  const p1 = client.ping();
  assert.equal(s.sentOf('ping').length, 2, 'a ping sent');
  clock.advance(5);
  const p2 = client.ping();
  assert.equal(s.sentOf('ping').length, 2, 'pongs carry no id: the second call waits for the same pong');
  clock.advance(7);
  s.receive({ type: 'pong' });
  assert.deepEqual(await Promise.all([p1, p2]), [12, 12]);
  assert.equal(client.rtt, 12);
  assert.equal(clock.pending().length, timers, 'no timer left behind');
});

test('ping() rejects when not connected, without a pong within WAKE_CHECK_TIMEOUT, and when the connection ends', async () => {
  const { client, ws, clock } = setup(wsOnly);
  await assert.rejects(client.ping(), { code: 'disconnected' });
  client.connect();
  await assert.rejects(client.ping(), { code: 'disconnected' }, 'connecting is not connected');
  const s = ws.last();
  s.welcome();
  s.receive({ type: 'pong' });
  const late = client.ping();
  clock.advance(WAKE_CHECK_TIMEOUT - 1);
  let settled = false;
  late.then(() => (settled = true), () => (settled = true));
  await flush();
  assert.equal(settled, false);
  clock.advance(1);
  await assert.rejects(late, { code: 'timeout', message: 'no pong within 3000 ms' });
  assert.equal(client.state.state, 'connected', 'a slow pong does not drop the connection');
  // That pong counts as lost: the next call sends a new ping.
  const before = s.sentOf('ping').length;
  const again = client.ping();
  assert.equal(s.sentOf('ping').length, before + 1);
  s.drop();
  await assert.rejects(again, { code: 'disconnected' });
});

test('ping() waiting across the switch from long polling to WebSocket is answered by the new welcome ping', async () => {
  const { client, ws, http, clock } = setup({ fallbackAfter: 1, probeInterval: 1000 });
  client.connect();
  ws.last().drop();
  retry({ client, clock });
  http.last('open').respond(200, LP_WELCOME);
  await flush();
  http.last('send').respond(200, [{ type: 'pong' }]);
  await flush();
  const p = client.ping(); // its /lp/send is aborted by the switch
  clock.advance(1000);
  const probe = ws.last();
  probe.welcome();
  assert.equal(client.state.transport, 'websocket');
  assert.equal(probe.sentOf('ping').length, 1);
  clock.advance(4);
  probe.receive({ type: 'pong' });
  assert.equal(await p, 4);
});

test('disconnect() from the connected listener: nothing is sent and no timer is left', async () => {
  const { client, ws, http, clock } = setup({ fallbackAfter: 1 });
  client.subscribe('news');
  client.on('state', (s) => s.state === 'connected' && client.disconnect());
  client.connect();
  ws.last().drop();
  retry({ client, clock });
  http.last('open').respond(200, LP_WELCOME);
  await flush();
  assert.equal(client.state.state, 'disconnected');
  assert.equal(http.requests.filter((r) => r.route === 'send').length, 0);
  assert.deepEqual(clock.pending(), []);
});
