// Long polling (docs/longpoll.md), the fallback to it and the probe back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FIRST_PROBE_DELAY, LP_WELCOME, MAX_SEND_BATCH, fakeEnv, fakeStorage, flush, setup } from './helpers.mjs';

const lpOnly = { WebSocket: null };
const retry = ({ client, clock }) => clock.advance(client.state.nextRetryAt - clock.now());

/**
 * Opens a long-poll session: answers /lp/open with the welcome, and the ping
 * that follows it with a pong when it is sent alone (nothing to restore).
 */
async function openLp(http, welcome = LP_WELCOME) {
  const open = http.last('open');
  assert.ok(open, 'an /lp/open request');
  open.respond(200, welcome);
  await flush();
  const send = http.last('send');
  assert.equal(send?.json[0]?.type, 'ping', 'a ping follows the welcome');
  if (send.json.length === 1) {
    send.respond(200, [{ type: 'pong' }]);
    await flush();
  }
}

/** Lets `ms` pass with a live long-poll server: polls answered `[]` every 20 s, pings answered. */
async function idleLp({ clock, http }, ms) {
  for (let t = 0; t < ms; t += 5000) {
    clock.advance(Math.min(5000, ms - t));
    await flush();
    for (const r of http.open('send')) if (r.json.every((m) => m.type === 'ping')) r.respond(200, [{ type: 'pong' }]);
    if ((t / 5000) % 4 === 3) for (const r of http.open('poll')) r.respond(200, []);
    await flush();
  }
}

async function subscribeLp(ctx, channel, fields, handlers) {
  const sub = ctx.client.subscribe(channel, handlers);
  await flush();
  const send = ctx.http.last('send');
  const req = send.json.find((m) => m.type === 'subscribe' && m.channel === channel);
  send.respond(200, [{ type: 'subscribed', id: req.id, channel, publications: [], ...fields }]);
  await flush();
  return { sub, req };
}

test('no WebSocket: long polling directly; requests as the spec says', async () => {
  const ctx = setup({ ...lpOnly, token: 'jwt1' }, 'http://h:8080');
  const { client, http } = ctx;
  client.connect();
  assert.equal(client.state.transport, 'longpoll');
  const open = http.requests[0];
  assert.equal(open.url, 'http://h:8080/lp/open');
  assert.equal(open.headers['Content-Type'], 'text/plain;charset=UTF-8');
  assert.equal(open.headers.Authorization, 'Bearer jwt1');
  assert.deepEqual(open.json, {});
  await openLp(http);
  assert.deepEqual(client.state, { state: 'connected', transport: 'longpoll' });
  const poll = http.last('poll');
  assert.equal(poll.url, 'http://h:8080/lp/poll?client=lp-1');
  assert.equal(poll.headers.Authorization, 'Bearer jwt1');
  assert.deepEqual(poll.json, { channels: {} });
});

test('subscribe over /lp/send, then the poll names the channel with its position', async () => {
  const ctx = setup(lpOnly);
  const { client, http } = ctx;
  const seen = [];
  client.connect();
  await openLp(http);
  const firstPoll = http.last('poll');
  const { req } = await subscribeLp(ctx, 'news', { epoch: 'e', offset: 45, recovered: false }, {
    onMessage: (m) => seen.push(m.offset),
  });
  assert.equal(req.recover, undefined);
  const send = http.requests.find((r) => r.route === 'send');
  assert.equal(send.client, 'lp-1');
  assert.ok(firstPoll.aborted, 'the running poll is aborted when the subscription set changes');
  const poll = http.last('poll');
  assert.deepEqual(poll.json, { channels: { news: { epoch: 'e', offset: 45 } } });
  assert.equal(http.open('poll').length, 1, 'one poll at a time');
  poll.respond(200, [
    { type: 'message', channel: 'news', offset: 46, data: 'a' },
    { type: 'message', channel: 'news', offset: 47, data: 'b' },
  ]);
  await flush();
  assert.deepEqual(seen, [46, 47]);
  assert.deepEqual(http.last('poll').json, { channels: { news: { epoch: 'e', offset: 47 } } });
  // An empty answer (poll timeout): poll again, same positions.
  http.last('poll').respond(200, []);
  await flush();
  assert.deepEqual(http.last('poll').json, { channels: { news: { epoch: 'e', offset: 47 } } });
});

test('a lost poll response is read again: the next poll names the same positions', async () => {
  const ctx = setup(lpOnly);
  const { client, http, clock } = ctx;
  const seen = [];
  client.connect();
  await openLp(http);
  await subscribeLp(ctx, 'news', { epoch: 'e', offset: 5, recovered: false }, { onMessage: (m) => seen.push(m.offset) });
  const before = http.last('poll').json;
  http.last('poll').fail(new TypeError('network error')); // the response is lost
  await flush();
  assert.deepEqual(http.last('poll').json, before);
  http.last('poll').respond(200, []);
  await flush();
  // A poll that hangs is aborted after poll_timeout_ms + requestTimeout; read again.
  const hanging = http.last('poll');
  clock.advance(25_000); // silence: the client pings over /lp/send
  await flush();
  const ping = http.last('send');
  assert.deepEqual(ping.json, [{ type: 'ping' }]);
  ping.respond(200, [{ type: 'pong' }]);
  await flush();
  clock.advance(10_000);
  await flush();
  assert.ok(hanging.aborted);
  assert.deepEqual(http.last('poll').json, before);
  http.last('poll').respond(200, [{ type: 'message', channel: 'news', offset: 6, data: null }]);
  await flush();
  assert.deepEqual(seen, [6]);
  assert.equal(client.state.state, 'connected');
});

test('a gap in a poll answer is not delivered; the next poll re-reads from the last offset', async () => {
  const ctx = setup(lpOnly);
  const { client, http } = ctx;
  const seen = [];
  client.connect();
  await openLp(http);
  await subscribeLp(ctx, 'news', { epoch: 'e', offset: 5, recovered: false }, { onMessage: (m) => seen.push(m.offset) });
  http.last('poll').respond(200, [{ type: 'message', channel: 'news', offset: 7, data: null }]);
  await flush();
  assert.deepEqual(seen, []);
  assert.equal(client.state.state, 'connected');
  assert.deepEqual(http.last('poll').json.channels.news, { epoch: 'e', offset: 5 });
});

test('an id-less subscribed in a poll answer is the resync signal (recovered:false)', async () => {
  const ctx = setup(lpOnly);
  const { client, http } = ctx;
  const events = [];
  client.connect();
  await openLp(http);
  await subscribeLp(ctx, 'news', { epoch: 'e', offset: 5, recovered: false }, {
    onSubscribed: (s) => events.push(s),
    onMessage: (m) => events.push(m.offset),
  });
  http.last('poll').respond(200, [
    { type: 'subscribed', channel: 'news', epoch: 'f', offset: 2, recovered: false },
    { type: 'message', channel: 'news', offset: 3, data: null },
  ]);
  await flush();
  assert.deepEqual(events.slice(1), [{ channel: 'news', epoch: 'f', offset: 2, recovered: false, resync: true }, 3]);
  assert.deepEqual(http.last('poll').json.channels.news, { epoch: 'f', offset: 3 });
});

test('a close message is obeyed like a WebSocket close code', async () => {
  for (const [code, state] of [[4001, 'disconnected'], [1008, 'disconnected'], [1011, 'reconnecting'], [4003, 'reconnecting']]) {
    const { client, http } = setup(lpOnly);
    client.connect();
    await openLp(http);
    http.last('poll').respond(200, [{ type: 'close', code, reason: 'bye' }]);
    await flush();
    assert.equal(client.state.state, state, `${code}`);
    assert.equal(client.state.code, code);
    assert.equal(http.open('poll').length, 0, 'nothing polls after a close');
  }
  // 1012 with its hint: a floor.
  const { client, http, clock } = setup({ ...lpOnly, random: () => 0 });
  client.connect();
  await openLp(http);
  http.last('poll').respond(200, [{ type: 'close', code: 1012, reason: 'draining retry_after_ms=4321' }]);
  await flush();
  assert.equal(client.state.nextRetryAt - clock.now(), 4321);
});

test('4002 in a poll answer: the token function is called again before /lp/open', async () => {
  const tokens = ['a', 'b'];
  const ctx = setup({ ...lpOnly, token: () => tokens.shift() });
  const { client, http } = ctx;
  client.connect();
  await flush();
  assert.equal(http.last('open').headers.Authorization, 'Bearer a');
  await openLp(http);
  http.last('poll').respond(200, [{ type: 'close', code: 4002, reason: 'token expired' }]);
  await flush();
  retry(ctx);
  await flush();
  assert.equal(http.last('open').headers.Authorization, 'Bearer b');
});

test('HTTP 429/503 with Retry-After on /lp/open set a floor; 401 stops', async () => {
  for (const status of [429, 503]) {
    const { client, http, clock } = setup({ ...lpOnly, random: () => 0 });
    client.connect();
    http.last('open').respond(status, 'busy\n', { 'Retry-After': '5' });
    await flush();
    assert.equal(client.state.state, 'reconnecting');
    assert.equal(client.state.code, status);
    assert.equal(client.state.nextRetryAt - clock.now(), 5000);
  }
  const { client, http } = setup(lpOnly);
  client.connect();
  http.last('open').respond(401, 'bad token\n');
  await flush();
  assert.equal(client.state.state, 'disconnected');
  assert.equal(client.state.code, 401);
});

test('every request is aborted after requestTimeout', async () => {
  const { client, http, clock } = setup({ ...lpOnly, requestTimeout: 2000 });
  client.connect();
  const open = http.last('open');
  clock.advance(2000);
  await flush();
  assert.ok(open.aborted);
  assert.equal(client.state.state, 'reconnecting');
  assert.match(client.state.reason, /timed out after 2000 ms/);
});

test('publish over /lp/send with its key; a failed send is retried with the same body', async () => {
  const ctx = setup(lpOnly);
  const { client, http } = ctx;
  client.connect();
  await openLp(http);
  const p = client.publish('chat', { hi: 1 });
  const send = http.last('send');
  const [msg] = send.json;
  assert.equal(msg.type, 'publish');
  assert.ok(msg.key);
  send.fail();
  await flush();
  const again = http.last('send');
  assert.equal(again.body, send.body);
  again.respond(200, [{ type: 'ack', id: msg.id, offset: 9 }]);
  assert.deepEqual(await p, { offset: 9 });
});

test(`a send body holds at most ${MAX_SEND_BATCH} messages`, async () => {
  const ctx = setup(lpOnly);
  const { client, http } = ctx;
  const all = Array.from({ length: 70 }, (_, i) => client.publish('chat', i));
  client.connect();
  await openLp(http);
  const first = http.last('send');
  assert.equal(first.json.length, MAX_SEND_BATCH);
  assert.equal(first.json[0].type, 'ping', 'the ping after the welcome, then 63 publishes');
  const pubs = first.json.slice(1);
  first.respond(200, [{ type: 'pong' }, ...pubs.map((m, i) => ({ type: 'ack', id: m.id, offset: i + 1 }))]);
  await flush();
  const second = http.last('send');
  assert.equal(second.json.length, 7);
  second.respond(200, second.json.map((m, i) => ({ type: 'ack', id: m.id, offset: 64 + i })));
  const offsets = (await Promise.all(all)).map((r) => r.offset);
  assert.deepEqual(offsets, Array.from({ length: 70 }, (_, i) => i + 1));
});

test('reconnecting on long polling: known positions go in the poll, not in a new subscribe', async () => {
  const ctx = setup(lpOnly);
  const { client, http } = ctx;
  client.connect();
  await openLp(http);
  await subscribeLp(ctx, 'news', { epoch: 'e', offset: 5, recovered: false });
  http.last('poll').respond(503, 'draining\n');
  await flush();
  assert.equal(client.state.state, 'reconnecting');
  retry(ctx);
  await openLp(http, { ...LP_WELCOME, client: 'lp-2' });
  assert.equal(http.open('send').length, 0);
  const poll = http.last('poll');
  assert.equal(poll.client, 'lp-2');
  assert.deepEqual(poll.json, { channels: { news: { epoch: 'e', offset: 5 } } });
});

test('disconnect() aborts every request; nothing is sent after it', async () => {
  const ctx = setup(lpOnly);
  const { client, http, clock } = ctx;
  client.connect();
  await openLp(http);
  client.publish('chat', 1).catch(() => {});
  const inflight = http.requests.filter((r) => !r.settled);
  assert.equal(inflight.length, 2); // the poll and the send
  client.disconnect();
  await flush();
  assert.ok(inflight.every((r) => r.aborted));
  const count = http.requests.length;
  clock.advance(3_600_000);
  await flush();
  assert.equal(http.requests.length, count);
  assert.equal(client.state.state, 'disconnected');
});

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
  retry(ctx);
  ws.last().welcome();
  assert.equal(storage.items.size, 0);
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
