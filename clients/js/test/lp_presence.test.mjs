// Presence over long polling: requests in /lp/send, join/leave in poll
// answers, and a channel held by position after a reconnect (joined by the
// poll, which may reach the server after the send asking its presence).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LP_WELCOME, PRESENCE_RETRIES, flush, setup } from './helpers.mjs';
import { lpOnly, openLp, retry, subscribeLp } from './lp_helpers.mjs';

const ENTRY = { client: 'lp-1', user: null, joined_at_ms: 1765152000000 };

async function lpSubscribed(handlers = {}) {
  const ctx = setup(lpOnly);
  ctx.client.connect();
  await openLp(ctx.http);
  const { sub } = await subscribeLp(ctx, 'room:1', { epoch: 'e', offset: 4, recovered: false }, handlers);
  return { ...ctx, sub };
}

/** The open /lp/send carrying a message of `type`, and that message. */
function sendOf(http, type) {
  const send = http.open('send').find((r) => r.json.some((m) => m.type === type));
  assert.ok(send, `a /lp/send with a ${type}`);
  return { send, msg: send.json.find((m) => m.type === type) };
}

test('presence() and presenceStats() go in /lp/send and resolve with its answers; an error rejects', async () => {
  const { http, sub } = await lpSubscribed();
  const who = sub.presence();
  await flush();
  const { send, msg } = sendOf(http, 'presence');
  assert.deepEqual(msg, { type: 'presence', id: msg.id, channel: 'room:1' });
  send.respond(200, [{ type: 'presence', id: msg.id, channel: 'room:1', clients: [ENTRY] }]);
  await flush();
  assert.deepEqual(await who, [ENTRY]);

  const stats = sub.presenceStats();
  await flush();
  const s = sendOf(http, 'presence_stats');
  s.send.respond(200, [{ type: 'presence_stats', id: s.msg.id, channel: 'room:1', clients: 1, users: 0 }]);
  await flush();
  assert.deepEqual(await stats, { clients: 1, users: 0 });

  const refused = sub.presence();
  await flush();
  const r = sendOf(http, 'presence');
  r.send.respond(200, [{ type: 'error', id: r.msg.id, code: 'bad_request', message: '1001 clients are present in "room:1"; ask presence_stats' }]);
  await assert.rejects(refused, (e) => e.code === 'bad_request' && /ask presence_stats/.test(e.message));
});

test('join and leave in a poll answer reach the subscription, in their place among the messages', async () => {
  const seen = [];
  const { http } = await lpSubscribed({
    onMessage: (m) => seen.push(m.offset),
    onJoin: (ev) => seen.push(['join', ev]),
    onLeave: (ev) => seen.push(['leave', ev]),
  });
  http.last('poll').respond(200, [
    { type: 'join', channel: 'room:1', client: 'n1-2', user: 'bob', info: { name: 'Bob' } },
    { type: 'message', channel: 'room:1', offset: 5, data: 'hi' },
    { type: 'leave', channel: 'room:1', client: 'n1-2', user: 'bob', info: { name: 'Bob' } },
  ]);
  await flush();
  const bob = { channel: 'room:1', client: 'n1-2', user: 'bob', info: { name: 'Bob' } };
  assert.deepEqual(seen, [['join', bob], 5, ['leave', bob]]);
});

/** Ends the session (a 503 to the poll) and opens the next one; the restore send stays unanswered. */
async function reconnect(ctx, client = 'lp-2') {
  ctx.http.last('poll').respond(503, 'draining\n');
  await flush();
  retry(ctx);
  ctx.http.last('open').respond(200, { ...LP_WELCOME, client });
  await flush();
}

test('after a reconnect, a forbidden answer for a channel held by position is asked again until the poll joined it', async () => {
  const ctx = await lpSubscribed();
  const { http, sub, clock } = ctx;
  const who = sub.presence();
  await reconnect(ctx);
  await flush();
  // The restore send: the ping and the presence request (the channel is named in the poll).
  const { send, msg } = sendOf(http, 'presence');
  assert.deepEqual(send.json.map((m) => m.type), ['ping', 'presence']);
  assert.deepEqual(http.last('poll').json, { channels: { 'room:1': { epoch: 'e', offset: 4 } } });
  send.respond(200, [{ type: 'pong' }, { type: 'error', id: msg.id, code: 'forbidden', message: 'no permission to ask the presence of "room:1"' }]);
  await flush();
  assert.equal(http.open('send').length, 0, 'not at once');
  clock.advance(500); // the subscribe-retry backoff: random(0, minDelay) for the first
  await flush();
  const again = sendOf(http, 'presence');
  assert.notEqual(again.msg.id, msg.id);
  again.send.respond(200, [{ type: 'presence', id: again.msg.id, channel: 'room:1', clients: [{ ...ENTRY, client: 'lp-2' }] }]);
  assert.deepEqual(await who, [{ ...ENTRY, client: 'lp-2' }]);
});

test(`a forbidden answer is final after ${PRESENCE_RETRIES} retries`, async () => {
  const { http, sub, clock } = await lpSubscribed();
  const who = sub.presence();
  let rejected = null;
  who.catch((e) => (rejected = e));
  for (let i = 0; i <= PRESENCE_RETRIES; i++) {
    await flush();
    const { send, msg } = sendOf(http, 'presence');
    send.respond(200, [{ type: 'error', id: msg.id, code: 'forbidden', message: 'no permission' }]);
    await flush();
    if (i < PRESENCE_RETRIES) assert.equal(rejected, null, `retry ${i + 1}`);
    clock.advance(30_000 >> 3);
    for (const r of http.open('send')) if (r.json.every((m) => m.type === 'ping')) r.respond(200, [{ type: 'pong' }]);
  }
  await flush();
  assert.equal(rejected?.code, 'forbidden');
  assert.equal(http.open('send').length, 0);
});

test('a request whose long-polling session ends before the answer is sent again on the next session', async () => {
  const ctx = await lpSubscribed();
  const { http, sub } = ctx;
  const who = sub.presenceStats();
  await flush();
  const lost = sendOf(http, 'presence_stats');
  lost.send.fail(); // retried once with the same body ...
  await flush();
  sendOf(http, 'presence_stats').send.fail(); // ... twice in a row ends the session
  await flush();
  assert.equal(ctx.client.state.state, 'reconnecting');
  retry(ctx);
  http.last('open').respond(200, { ...LP_WELCOME, client: 'lp-2' });
  await flush();
  const { send, msg } = sendOf(http, 'presence_stats');
  assert.equal(send.client, 'lp-2');
  send.respond(200, [{ type: 'pong' }, { type: 'presence_stats', id: msg.id, channel: 'room:1', clients: 3, users: 2 }]);
  assert.deepEqual(await who, { clients: 3, users: 2 });
});
