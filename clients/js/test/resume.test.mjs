// Offline/online, visibility, pageshow and wall-clock jumps (sleep/wake).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { flush, retry, setup, WAKE_CHECK_TIMEOUT, WATCH_EVERY } from './helpers.mjs';

const wsOnly = { transports: ['websocket'] };

test('navigator.onLine false: state offline, no attempt until online, then at once', () => {
  const { client, ws, env, clock } = setup(wsOnly);
  env.online = false;
  client.connect();
  assert.equal(client.state.state, 'offline');
  clock.advance(600_000);
  assert.equal(ws.sockets.length, 0);
  env.online = true;
  env.fire('online');
  assert.equal(ws.sockets.length, 1);
  assert.equal(client.state.state, 'connecting');
});

test('going offline while waiting to retry pauses retries; online retries at once', () => {
  const { client, ws, env, clock } = setup({ ...wsOnly, minDelay: 10_000 });
  client.connect();
  ws.last().welcome();
  ws.last().drop();
  assert.equal(client.state.state, 'reconnecting');
  env.online = false;
  env.fire('offline');
  assert.equal(client.state.state, 'offline');
  clock.advance(600_000);
  assert.equal(ws.sockets.length, 1);
  env.online = true;
  env.fire('online');
  assert.equal(ws.sockets.length, 2);
});

test('a connection lost while offline waits for online', () => {
  const { client, ws, env, clock } = setup(wsOnly);
  client.connect();
  ws.last().welcome();
  env.online = false;
  ws.last().drop();
  assert.equal(client.state.state, 'offline');
  clock.advance(600_000);
  assert.equal(ws.sockets.length, 1);
  env.online = true;
  env.fire('online');
  assert.equal(ws.sockets.length, 2);
});

for (const event of ['visibilitychange', 'pageshow', 'resume', 'online', 'offline']) {
  test(`${event} while connected: ping at once with a short deadline; no answer → reconnect`, () => {
    const { client, ws, env, clock } = setup(wsOnly);
    client.connect();
    const s = ws.last();
    s.welcome();
    s.receive({ type: 'pong' }); // the ping after the welcome
    env.fire(event);
    assert.equal(s.sentOf('ping').length, 2, 'pinged at once');
    clock.advance(WAKE_CHECK_TIMEOUT - 1);
    assert.equal(client.state.state, 'connected');
    clock.advance(1);
    assert.ok(s.closed, 'the zombie socket is closed');
    assert.equal(client.state.state, 'reconnecting');
    assert.match(client.state.reason, /no answer to a ping within 3000 ms/);
  });
}

test('visible again and the pong arrives: the connection is kept', () => {
  const { client, ws, env, clock } = setup(wsOnly);
  client.connect();
  const s = ws.last();
  s.welcome();
  env.fire('visibilitychange');
  clock.advance(100);
  s.receive({ type: 'pong' });
  assert.equal(client.rtt, 100);
  clock.advance(WAKE_CHECK_TIMEOUT * 2);
  assert.equal(client.state.state, 'connected');
  assert.equal(s.closed, null);
});

test('hidden: no ping on visibilitychange, and retries never stop', () => {
  const { client, ws, env, clock } = setup(wsOnly);
  client.connect();
  ws.last().welcome();
  env.isVisible = false;
  env.fire('visibilitychange');
  assert.equal(ws.last().sentOf('ping').length, 1, 'only the ping after the welcome');
  for (let i = 1; i <= 20; i++) {
    ws.last().drop();
    assert.equal(client.state.state, 'reconnecting');
    retry({ client, clock });
    assert.equal(ws.sockets.length, i + 1);
  }
});

test('visible again after a throttled retry timer: the due retry starts at once', () => {
  const { client, ws, env, clock } = setup({ ...wsOnly, minDelay: 10_000 });
  client.connect();
  ws.last().drop();
  clock.jump(20_000); // the timer did not fire (throttled tab)
  env.fire('visibilitychange');
  assert.equal(ws.sockets.length, 2);
});

test('wall-clock jump (sleep): the late timer pings with a short deadline instead of trusting the socket', () => {
  const { client, ws, clock } = setup(wsOnly);
  client.connect();
  const s = ws.last();
  s.welcome(25_000, 10_000);
  s.receive({ type: 'pong' }); // the ping after the welcome
  clock.jump(3_600_000); // laptop asleep for an hour; timers did not run
  clock.runDue();
  assert.equal(s.sentOf('ping').length, 2);
  assert.equal(client.state.state, 'connected');
  clock.advance(WAKE_CHECK_TIMEOUT);
  assert.ok(s.closed);
  assert.equal(client.state.state, 'reconnecting');
});

test('wall-clock check before a send: past the deadline, the connection is suspect', () => {
  const { client, ws, clock } = setup(wsOnly);
  client.connect();
  const s = ws.last();
  s.welcome(25_000, 10_000);
  s.receive({ type: 'pong' }); // the ping after the welcome
  clock.jump(40_000);
  client.publish('chat', { hi: 1 });
  assert.deepEqual(
    s.sent.map((m) => m.type),
    ['ping', 'ping', 'publish'],
  );
  s.receive({ type: 'pong' });
  clock.runDue(); // the overdue timers fire late: the watch sees the jump and checks again
  s.receive({ type: 'pong' });
  clock.advance(WAKE_CHECK_TIMEOUT);
  assert.equal(client.state.state, 'connected');
});

test('a sleep whose timers stopped with it: the watch notices the wake within WATCH_EVERY and checks at once', () => {
  const { client, ws, clock, states } = setup(wsOnly);
  client.connect();
  const s = ws.last();
  s.welcome(25_000, 10_000);
  s.receive({ type: 'pong' });
  clock.advance(10_000);
  const pings = s.sentOf('ping').length;
  // An hour asleep; the heartbeat timer still has ~15 s to run by its own
  // clock, and would only then notice the jump.
  clock.sleep(3_600_000);
  const wokeAt = clock.now();
  clock.advance(WATCH_EVERY);
  assert.equal(s.sentOf('ping').length, pings + 1, 'a ping within WATCH_EVERY of the wake');
  clock.advance(WAKE_CHECK_TIMEOUT);
  assert.ok(s.closed, 'dead: no answer to the check');
  const dropped = states.find((st) => st.state === 'reconnecting');
  assert.match(dropped.reason, /no answer to a ping within 3000 ms \(the wall clock jumped 3600 s/);
  assert.ok(clock.now() - wokeAt <= WATCH_EVERY + WAKE_CHECK_TIMEOUT, 'far below ping_interval');
});

test('the same sleep with the connection alive: the check is answered and the connection kept', () => {
  const { client, ws, clock } = setup(wsOnly);
  client.connect();
  const s = ws.last();
  s.welcome(25_000, 10_000);
  s.receive({ type: 'pong' });
  clock.sleep(600_000);
  clock.advance(WATCH_EVERY);
  s.receive({ type: 'pong' });
  clock.advance(WAKE_CHECK_TIMEOUT + WATCH_EVERY);
  assert.equal(client.state.state, 'connected');
  assert.equal(s.closed, null);
});

test('listeners are removed on disconnect', () => {
  const { client, env } = setup(wsOnly);
  client.connect();
  assert.equal(env.count('online'), 1);
  client.disconnect();
  assert.equal(env.count('online'), 0);
  assert.equal(env.count('visibilitychange'), 0);
});

test('online while waiting for a retry: the retry starts at once; other resumes wait until it is due', () => {
  const { client, ws, env } = setup({ ...wsOnly, minDelay: 10_000 });
  client.connect();
  ws.last().drop();
  assert.equal(client.state.state, 'reconnecting');
  env.fire('pageshow');
  env.fire('visibilitychange');
  env.fire('resume');
  assert.equal(ws.sockets.length, 1, 'not due yet: no attempt');
  env.fire('online');
  assert.equal(ws.sockets.length, 2, 'the network came back: retry now');
});

test('a token that arrives while offline starts no attempt; online asks for a new one', async () => {
  const calls = [];
  const { client, ws, env } = setup({ ...wsOnly, token: () => new Promise((resolve) => calls.push(resolve)) });
  client.connect();
  await flush();
  env.online = false;
  env.fire('offline');
  assert.equal(client.state.state, 'offline');
  calls[0]('t1');
  await flush();
  assert.equal(ws.sockets.length, 0, 'no attempt while offline');
  env.online = true;
  env.fire('online');
  await flush();
  assert.equal(calls.length, 2, 'a fresh token for the attempt');
  calls[1]('t2');
  await flush();
  assert.equal(ws.sockets.length, 1);
  assert.equal(ws.last().url, 'ws://h:8080/ws?token=t2');
});

test('offline after a failure keeps its code and reason; online again is a reconnection, not connecting', () => {
  const { client, ws, env, clock, states } = setup(wsOnly);
  client.connect();
  ws.last().welcome();
  env.online = false;
  ws.last().drop();
  assert.deepEqual(client.state, {
    state: 'offline',
    transport: 'websocket',
    code: 1006,
    reason: 'connection lost: closed without a close frame',
  });
  env.online = true;
  env.fire('online');
  assert.equal(ws.sockets.length, 2);
  assert.deepEqual(client.state, {
    state: 'reconnecting',
    transport: 'websocket',
    attempt: 1,
    nextRetryAt: clock.now(),
    code: 1006,
    reason: 'connection lost: closed without a close frame',
  });
  ws.last().welcome();
  assert.deepEqual(
    states.map((s) => s.state),
    ['connecting', 'connected', 'offline', 'reconnecting', 'connected'],
  );
});

test('the offline event while connected pings at once and drops the connection without an answer within 3 s', () => {
  const { client, ws, env, clock } = setup(wsOnly);
  client.connect();
  ws.last().welcome();
  ws.last().receive({ type: 'pong' }); // the welcome's ping
  env.online = false;
  env.fire('offline');
  assert.equal(ws.last().sentOf('ping').length, 2, 'a ping at once');
  clock.advance(WAKE_CHECK_TIMEOUT - 1);
  assert.equal(client.state.state, 'connected');
  clock.advance(1);
  assert.equal(client.state.state, 'offline');
  assert.equal(client.state.code, 1006);
});

test('the offline event while waiting to retry: offline keeps the code and reason that ended the connection', () => {
  const { client, ws, env } = setup({ ...wsOnly, minDelay: 10_000 });
  client.connect();
  ws.last().welcome();
  ws.last().serverClose(1011, 'boom');
  env.online = false;
  env.fire('offline');
  assert.deepEqual(client.state, { state: 'offline', transport: 'websocket', code: 1011, reason: 'closed with 1011: boom' });
});

test('only the first attempt after connect() is connecting, even when it began offline', () => {
  const { client, ws, env, states } = setup(wsOnly);
  env.online = false;
  client.connect();
  env.online = true;
  env.fire('online');
  assert.equal(client.state.state, 'connecting', 'no attempt was made yet: this is the first');
  ws.last().drop();
  env.online = false;
  env.fire('offline');
  env.online = true;
  env.fire('online');
  assert.equal(client.state.state, 'reconnecting');
  assert.equal(client.state.attempt, 1);
  // A new connect() starts over.
  client.disconnect();
  client.connect();
  assert.equal(client.state.state, 'connecting');
  assert.deepEqual(
    states.map((s) => s.state),
    ['offline', 'connecting', 'reconnecting', 'offline', 'reconnecting', 'disconnected', 'connecting'],
  );
});

test('already offline: visibilitychange, pageshow, resume and offline emit nothing', () => {
  const { client, ws, env, states } = setup(wsOnly);
  client.connect();
  ws.last().welcome();
  env.online = false;
  ws.last().drop();
  assert.equal(client.state.state, 'offline');
  const before = states.length;
  for (const event of ['visibilitychange', 'pageshow', 'resume', 'offline', 'online']) env.fire(event);
  assert.equal(states.length, before, 'no event without a change');
  assert.equal(client.state.state, 'offline');
  assert.equal(ws.sockets.length, 1);
});

test('a resume while an attempt waits for its token neither asks again nor changes the state', async () => {
  const calls = [];
  const { client, ws, env, states } = setup({ ...wsOnly, token: () => new Promise((resolve) => calls.push(resolve)) });
  client.connect();
  await flush();
  for (const event of ['visibilitychange', 'pageshow', 'resume', 'online']) env.fire(event);
  await flush();
  assert.equal(calls.length, 1, 'one token request');
  assert.deepEqual(states.map((s) => s.state), ['connecting']);
  calls[0]('t1');
  await flush();
  assert.equal(ws.sockets.length, 1);
  assert.equal(ws.last().url, 'ws://h:8080/ws?token=t1');
});
