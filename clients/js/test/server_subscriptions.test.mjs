// Server-side subscriptions (made by the backend's connect hook): a
// `subscribed` without id for a channel not asked for starts one, whose
// events are the client's (`publication`, `subscribed`, `join`, `leave`,
// `unsubscribed`). After a reconnect it is resubscribed with recover like
// the application's own; a server that made it again first (and answers
// already_subscribed) is taken as the answer: continued when nothing was
// missed, `resync` when something was. On long polling the polls name it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LP_WELCOME, flush, retry, setup } from './helpers.mjs';
import { lpOnly } from './lp_helpers.mjs';

const wsOnly = { transports: ['websocket'] };
const CH = 'user:7';
const made = (offset, epoch = 'e') => ({ type: 'subscribed', channel: CH, epoch, offset, recovered: false, publications: [] });
const message = (offset) => ({ type: 'message', channel: CH, offset, data: { n: offset } });

/** A client recording its server-side events. */
function recorded(options = {}, url) {
  const ctx = setup({ ...wsOnly, ...options }, url);
  const log = [];
  for (const type of ['publication', 'subscribed', 'join', 'leave', 'unsubscribed']) {
    ctx.client.on(type, (ev) => log.push([type, ev]));
  }
  return { ...ctx, log };
}

test('an id-less subscribed starts a server-side subscription; its events are the client\'s', () => {
  const { client, ws, log } = recorded();
  client.connect();
  ws.last().welcome();
  ws.last().receive(made(3));
  ws.last().receive(message(4));
  ws.last().receive({ type: 'join', channel: CH, client: 'c2', user: 'u2' });
  ws.last().receive(message(4)); // a duplicate: dropped
  assert.deepEqual(log, [
    ['subscribed', { channel: CH, epoch: 'e', offset: 3, recovered: false, resync: false }],
    ['publication', { channel: CH, offset: 4, data: { n: 4 } }],
    ['join', { channel: CH, client: 'c2', user: 'u2' }],
  ]);
  assert.deepEqual(client.serverChannels, [CH]);
  assert.equal(client.getSubscription(CH).serverSide, true);
  assert.throws(() => client.subscribe(CH), (e) => e.code === 'already_subscribed' && /server-side/.test(e.message));
  // Nothing was sent for it.
  assert.deepEqual(ws.last().sentOf('subscribe'), []);
});

test('after a reconnect: resubscribed with recover; made again first, the already_subscribed answer continues or says resync', async () => {
  const { client, clock, ws, log, errors } = recorded();
  client.connect();
  ws.last().welcome();
  ws.last().receive(made(3));
  ws.last().receive(message(4));
  log.length = 0;

  // Made again at 4: nothing missed.
  ws.last().drop();
  retry({ client, clock });
  ws.last().welcome();
  const [sub1] = ws.last().sentOf('subscribe');
  assert.deepEqual(sub1, { type: 'subscribe', id: sub1.id, channel: CH, recover: { epoch: 'e', offset: 4 } });
  ws.last().receive(made(4));
  ws.last().receive({ type: 'error', id: sub1.id, code: 'already_subscribed', message: `already subscribed to "${CH}"` });
  ws.last().receive(message(5));
  assert.deepEqual(log, [
    ['subscribed', { channel: CH, epoch: 'e', offset: 4, recovered: true, resync: false }],
    ['publication', { channel: CH, offset: 5, data: { n: 5 } }],
  ]);
  log.length = 0;

  // Made again at 6, and 7 arrives before the answer: 6 and 7 were missed.
  ws.last().drop();
  retry({ client, clock });
  ws.last().welcome();
  const [sub2] = ws.last().sentOf('subscribe');
  assert.deepEqual(sub2.recover, { epoch: 'e', offset: 5 });
  ws.last().receive(made(6));
  ws.last().receive(message(7)); // held back: no gap, no reconnect
  assert.equal(client.state.state, 'connected');
  ws.last().receive({ type: 'error', id: sub2.id, code: 'already_subscribed', message: 'x' });
  ws.last().receive(message(8));
  assert.deepEqual(log, [
    ['subscribed', { channel: CH, epoch: 'e', offset: 7, recovered: false, resync: true }],
    ['publication', { channel: CH, offset: 8, data: { n: 8 } }],
  ]);
  log.length = 0;

  // Not made again: an ordinary recovering resubscribe replays the gap.
  ws.last().drop();
  retry({ client, clock });
  ws.last().welcome();
  const [sub3] = ws.last().sentOf('subscribe');
  ws.last().receive({
    type: 'subscribed', id: sub3.id, channel: CH, epoch: 'e', offset: 10, recovered: true,
    publications: [{ offset: 9, data: { n: 9 } }, { offset: 10, data: { n: 10 } }],
  });
  assert.deepEqual(log.map(([type, ev]) => [type, ev.offset]), [['subscribed', 10], ['publication', 9], ['publication', 10]]);
  log.length = 0;

  // Refused for good (the backend dropped it, the token does not allow it): it ends.
  ws.last().drop();
  retry({ client, clock });
  ws.last().welcome();
  const [sub4] = ws.last().sentOf('subscribe');
  ws.last().receive({ type: 'error', id: sub4.id, code: 'forbidden', message: 'no permission' });
  assert.deepEqual(log.map(([type, ev]) => [type, ev.channel, ev.error?.code]), [['unsubscribed', CH, 'forbidden']]);
  assert.equal(errors.at(-1).code, 'forbidden');
  assert.deepEqual(client.serverChannels, []);
  await flush();
});

test("an application's own subscription the server also makes: the same rule", () => {
  const seen = [];
  const { client, ws, log } = recorded();
  client.subscribe(CH, { onSubscribed: (ev) => seen.push(ev), onMessage: (m) => seen.push(m.offset) });
  client.connect();
  ws.last().welcome();
  const [sub] = ws.last().sentOf('subscribe');
  ws.last().receive(made(2));
  ws.last().receive(message(3));
  ws.last().receive({ type: 'error', id: sub.id, code: 'already_subscribed', message: 'x' });
  ws.last().receive(message(4));
  assert.deepEqual(seen, [{ channel: CH, epoch: 'e', offset: 3, recovered: false, resync: false }, 4]);
  assert.deepEqual(log, [], 'the application\'s subscription keeps its own handlers');
  assert.equal(client.getSubscription(CH).serverSide, false);
});

test('long polling: announced after the welcome of /lp/open, named in polls, not re-announced over its position', async () => {
  const ctx = recorded({ ...lpOnly, transports: ['longpoll'] });
  ctx.client.connect();
  await flush();
  ctx.http.last('open').respond(200, [LP_WELCOME, made(3)]);
  await flush();
  assert.deepEqual(ctx.log, [['subscribed', { channel: CH, epoch: 'e', offset: 3, recovered: false, resync: false }]]);
  ctx.http.last('send').respond(200, [{ type: 'pong' }]);
  await flush();
  assert.deepEqual(ctx.http.last('poll').json, { channels: { [CH]: { epoch: 'e', offset: 3 } } });
  ctx.http.last('poll').respond(200, [message(4)]);
  await flush();
  assert.deepEqual(ctx.log.at(-1), ['publication', { channel: CH, offset: 4, data: { n: 4 } }]);
  ctx.log.length = 0;

  // A new session: the server makes it again at 6 in the /lp/open answer;
  // the poll names position 4 and reads 5 and 6 from there.
  ctx.http.last('poll').respond(200, [{ type: 'close', code: 1012, reason: 'restart' }]);
  await flush();
  retry(ctx);
  await flush();
  ctx.http.last('open').respond(200, [{ ...LP_WELCOME, client: 'lp-2' }, made(6)]);
  await flush();
  assert.deepEqual(ctx.log, []);
  ctx.http.last('send').respond(200, [{ type: 'pong' }]);
  await flush();
  assert.deepEqual(ctx.http.last('poll').json, { channels: { [CH]: { epoch: 'e', offset: 4 } } });
  ctx.http.last('poll').respond(200, [message(5), message(6)]);
  await flush();
  assert.deepEqual(ctx.log.map(([type, ev]) => [type, ev.offset]), [['publication', 5], ['publication', 6]]);
});

test('long polling: an id-less subscribed in a poll answer for a channel not held is no announcement', async () => {
  const ctx = recorded({ ...lpOnly, transports: ['longpoll'] });
  ctx.client.connect();
  await flush();
  ctx.http.last('open').respond(200, LP_WELCOME);
  await flush();
  ctx.http.last('send').respond(200, [{ type: 'pong' }]);
  await flush();
  ctx.http.last('poll').respond(200, [made(3), message(4)]);
  await flush();
  assert.deepEqual(ctx.log, []);
  assert.deepEqual(ctx.client.serverChannels, []);
});
