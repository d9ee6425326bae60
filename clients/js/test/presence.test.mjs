// Presence over WebSocket (docs/presence.md): sub.presence(), sub.presenceStats(),
// the join/leave events, and what happens to a request while disconnected.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TetherError, flush, retry, setup } from './helpers.mjs';

const wsOnly = { transports: ['websocket'] };
const ANN = { client: 'n1-1a', user: 'ann', info: { name: 'Ann' }, joined_at_ms: 1765152000000 };
const ANON = { client: 'n1-1b', user: null, joined_at_ms: 1765152000100 };

/** A connected client subscribed to `channel` (answered at offset 0). */
function subscribed(channel = 'room:1', handlers = {}, options = {}) {
  const ctx = setup({ ...wsOnly, ...options });
  ctx.client.connect();
  ctx.ws.last().welcome();
  const sub = ctx.client.subscribe(channel, handlers);
  const req = ctx.ws.last().sentOf('subscribe').at(-1);
  ctx.ws.last().receive({ type: 'subscribed', id: req.id, channel, epoch: 'e', offset: 0, recovered: false, publications: [] });
  return { ...ctx, sub };
}

/** A promise's outcome so far, without waiting: 'pending', or {value} / {error}. */
function outcome(p) {
  const o = { state: 'pending' };
  p.then((value) => Object.assign(o, { state: 'resolved', value }), (error) => Object.assign(o, { state: 'rejected', error }));
  return o;
}

test('presence() and presenceStats() send their request and resolve with the answer', async () => {
  const { ws, sub } = subscribed();
  const who = sub.presence();
  const stats = sub.presenceStats();
  const [p] = ws.last().sentOf('presence');
  const [s] = ws.last().sentOf('presence_stats');
  assert.deepEqual(p, { type: 'presence', id: p.id, channel: 'room:1' });
  assert.deepEqual(s, { type: 'presence_stats', id: s.id, channel: 'room:1' });
  assert.notEqual(p.id, s.id);
  // Answered in any order, each by its id.
  ws.last().receive({ type: 'presence_stats', id: s.id, channel: 'room:1', clients: 2, users: 1 });
  ws.last().receive({ type: 'presence', id: p.id, channel: 'room:1', clients: [ANN, ANON] });
  assert.deepEqual(await who, [ANN, ANON]);
  assert.deepEqual(await stats, { clients: 2, users: 1 });
});

test("an error reply rejects with the server's code and message", async () => {
  const { ws, sub } = subscribed('plain');
  const who = sub.presence();
  const stats = sub.presenceStats();
  const [p] = ws.last().sentOf('presence');
  const [s] = ws.last().sentOf('presence_stats');
  const message = 'presence is not enabled for channel "plain" (a [[channels]] rule with presence = true; docs/presence.md)';
  ws.last().receive({ type: 'error', id: p.id, code: 'bad_request', message });
  ws.last().receive({ type: 'error', id: s.id, code: 'forbidden', message: 'no permission' });
  await assert.rejects(who, (e) => e instanceof TetherError && e.code === 'bad_request' && e.message === message);
  await assert.rejects(stats, (e) => e instanceof TetherError && e.code === 'forbidden');
});

test('join and leave reach the subscription with client, user and info (omitted when none)', () => {
  const events = [];
  const { ws, client, errors } = subscribed('room:1', {
    onJoin: (ev) => events.push(['join', ev]),
    onLeave: (ev) => events.push(['leave', ev]),
    onMessage: (m) => events.push(['message', m.offset]),
  });
  client.subscribe('other', { onJoin: (ev) => events.push(['other', ev]) });
  const sock = ws.last();
  sock.receive({ type: 'join', channel: 'room:1', client: 'n1-1a', user: 'ann', info: { name: 'Ann' } });
  sock.receive({ type: 'message', channel: 'room:1', offset: 1, data: 'hi' });
  sock.receive({ type: 'leave', channel: 'room:1', client: 'n1-1b', user: null });
  sock.receive({ type: 'join', channel: 'nobody-here', client: 'n1-1c', user: 'cat' });
  assert.deepEqual(events, [
    ['join', { channel: 'room:1', client: 'n1-1a', user: 'ann', info: { name: 'Ann' } }],
    ['message', 1],
    ['leave', { channel: 'room:1', client: 'n1-1b', user: null }],
  ]);
  assert.equal('info' in events[2][1], false);
  assert.deepEqual(errors, []);
});

test('no join or leave after unsubscribe(); a throwing handler is an error event, not a crash', () => {
  const events = [];
  const { ws, sub, errors } = subscribed('room:1', {
    onJoin: () => {
      throw new Error('app bug');
    },
    onLeave: (ev) => events.push(ev.client),
  });
  ws.last().receive({ type: 'join', channel: 'room:1', client: 'x', user: null });
  assert.deepEqual(errors.map((e) => e.message), ['app bug']);
  sub.unsubscribe();
  ws.last().receive({ type: 'leave', channel: 'room:1', client: 'x', user: null });
  assert.deepEqual(events, []);
});

test('a request made while disconnected waits and goes out behind the resubscribe; unsent calls share one request', async () => {
  const ctx = subscribed();
  const { client, ws, sub } = ctx;
  assert.equal(client.clientId, 'c1');
  ws.last().drop();
  assert.equal(client.clientId, undefined);
  const a = sub.presence();
  const b = sub.presence();
  const stats = sub.presenceStats();
  retry(ctx);
  assert.equal(ws.last().sent.length, 0, 'nothing before the welcome');
  ws.last().open();
  ws.last().receive({ type: 'welcome', client: 'c2', ping_interval_ms: 25000, pong_timeout_ms: 10000, version: 1 });
  assert.equal(client.clientId, 'c2');
  const types = ws.last().sent.map((m) => m.type);
  assert.deepEqual(types, ['ping', 'subscribe', 'presence', 'presence_stats'], 'one presence request for both calls, after the subscribe');
  const [p] = ws.last().sentOf('presence');
  const [s] = ws.last().sentOf('presence_stats');
  ws.last().receive({ type: 'presence', id: p.id, channel: 'room:1', clients: [ANON] });
  ws.last().receive({ type: 'presence_stats', id: s.id, channel: 'room:1', clients: 1, users: 0 });
  assert.deepEqual(await a, [ANON]);
  assert.deepEqual(await b, [ANON]);
  assert.deepEqual(await stats, { clients: 1, users: 0 });
});

test('a request whose connection drops before the answer is sent again on the next one', async () => {
  const ctx = subscribed();
  const { ws, sub } = ctx;
  const who = outcome(sub.presence());
  const [first] = ws.last().sentOf('presence');
  ws.last().drop();
  await flush();
  assert.equal(who.state, 'pending', 'a dropped connection does not reject it');
  // An answer on the dead connection is not taken.
  ws.sockets[0].receive({ type: 'presence', id: first.id, channel: 'room:1', clients: [ANN] });
  retry(ctx);
  ws.last().welcome();
  const [again] = ws.last().sentOf('presence');
  assert.equal(again.channel, 'room:1');
  // A second call while the first is sent is a request of its own.
  const fresh = sub.presence();
  assert.equal(ws.last().sentOf('presence').length, 2);
  ws.last().receive({ type: 'presence', id: again.id, channel: 'room:1', clients: [ANON] });
  await flush();
  assert.deepEqual(who, { state: 'resolved', value: [ANON] });
  const [, second] = ws.last().sentOf('presence');
  ws.last().receive({ type: 'presence', id: second.id, channel: 'room:1', clients: [] });
  assert.deepEqual(await fresh, []);
});

test('a request made in a state listener at connect goes out after the resubscribe', async () => {
  const ctx = subscribed();
  const { client, ws, sub } = ctx;
  let asked;
  client.on('state', (s) => {
    if (s.state === 'connected') asked = sub.presence();
  });
  ws.last().drop();
  retry(ctx);
  ws.last().welcome();
  assert.deepEqual(ws.last().sent.map((m) => m.type), ['ping', 'subscribe', 'presence']);
  const [p] = ws.last().sentOf('presence');
  ws.last().receive({ type: 'presence', id: p.id, channel: 'room:1', clients: [ANN] });
  assert.deepEqual(await asked, [ANN]);
});

test('disconnect() rejects waiting requests with disconnected, and later calls at once', async () => {
  const { client, ws, sub } = subscribed();
  const sent = sub.presence();
  ws.last().drop();
  const waiting = sub.presenceStats();
  client.disconnect();
  await assert.rejects(sent, (e) => e.code === 'disconnected');
  await assert.rejects(waiting, (e) => e.code === 'disconnected');
  await assert.rejects(sub.presence(), (e) => e.code === 'disconnected');
});

test('unsubscribe() rejects pending requests with not_subscribed; a final refusal with its own code', async () => {
  const { client, ws, sub } = subscribed();
  const pending = sub.presence();
  sub.unsubscribe();
  await assert.rejects(pending, (e) => e.code === 'not_subscribed');
  await assert.rejects(sub.presence(), (e) => e.code === 'not_subscribed');
  const [p] = ws.last().sentOf('presence');
  ws.last().receive({ type: 'presence', id: p.id, channel: 'room:1', clients: [] }); // ignored

  const secret = client.subscribe('secret');
  const asked = secret.presence();
  const req = ws.last().sentOf('subscribe').at(-1);
  ws.last().receive({ type: 'error', id: req.id, code: 'forbidden', message: 'no permission to subscribe to "secret"' });
  await assert.rejects(asked, (e) => e.code === 'forbidden');
  assert.equal(secret.subscribed, false);
});

test('a forbidden answer on WebSocket is not retried', async () => {
  const { ws, sub, clock } = subscribed();
  const who = sub.presence();
  const [p] = ws.last().sentOf('presence');
  ws.last().receive({ type: 'error', id: p.id, code: 'forbidden', message: 'no permission' });
  await assert.rejects(who, (e) => e.code === 'forbidden');
  clock.advance(20_000); // longer than every retry delay, shorter than the heartbeat
  assert.equal(ws.sockets.length, 1);
  assert.equal(ws.last().sentOf('presence').length, 1);
});
