// Subscriptions: recovery from {epoch, offset}, duplicates, gaps, recovered:false,
// refusals (final ones remove the subscription, retryable ones are retried).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { flush, isRetryable, LP_WELCOME, recorder, retry, RETRYABLE_ERRORS, setup } from './helpers.mjs';

const wsOnly = { transports: ['websocket'] };

function subscribedReply(sock, channel, fields) {
  const req = sock.sentOf('subscribe').filter((m) => m.channel === channel).at(-1);
  sock.receive({ type: 'subscribed', id: req.id, channel, publications: [], ...fields });
  return req;
}


/**
 * `news` held at epoch `e`, offset 5, on a first connection that then
 * dropped; the second connection is welcomed and its resubscribe (with
 * `recover`) awaits an answer.
 */
function reconnectedWithNews() {
  const ctx = setup(wsOnly);
  const log = recorder();
  ctx.client.subscribe('news', log.handlers);
  ctx.client.connect();
  ctx.ws.last().welcome();
  subscribedReply(ctx.ws.last(), 'news', { epoch: 'e', offset: 5, recovered: false });
  ctx.ws.last().drop();
  retry(ctx);
  ctx.ws.last().welcome();
  return { ...ctx, log };
}

test('subscribe, deliver in order once, recover after a reconnect', () => {
  const ctx = setup(wsOnly);
  const { client, ws } = ctx;
  const log = recorder();
  const sub = client.subscribe('news', log.handlers);
  assert.equal(sub.channel, 'news');
  client.connect();
  ws.last().welcome();
  const first = subscribedReply(ws.last(), 'news', { epoch: 'e', offset: 5, recovered: false });
  assert.equal(first.recover, undefined);
  assert.deepEqual(log.subscribed, [{ channel: 'news', epoch: 'e', offset: 5, recovered: false, resync: false }]);
  for (const o of [6, 6, 5, 7]) ws.last().receive({ type: 'message', channel: 'news', offset: o, data: { o } });
  assert.deepEqual(log.messages, [6, 7], 'duplicates (offset <= last seen) dropped');
  ws.last().drop();
  retry(ctx);
  ws.last().welcome();
  const again = subscribedReply(ws.last(), 'news', {
    epoch: 'e',
    offset: 9,
    recovered: true,
    publications: [7, 8, 9].map((offset) => ({ offset, data: offset })),
  });
  assert.deepEqual(again.recover, { epoch: 'e', offset: 7 });
  assert.deepEqual(log.messages, [6, 7, 8, 9]);
  assert.equal(log.subscribed.at(-1).recovered, true);
  assert.deepEqual(sub.position, { epoch: 'e', offset: 9 });
});

test('recovered:false after a reconnect: onSubscribed tells the app to resync; delivery continues', () => {
  const ctx = reconnectedWithNews();
  const { client, ws, log } = ctx;
  subscribedReply(ws.last(), 'news', { epoch: 'f', offset: 2, recovered: false });
  assert.deepEqual(log.subscribed.at(-1), { channel: 'news', epoch: 'f', offset: 2, recovered: false, resync: true });
  ws.last().receive({ type: 'message', channel: 'news', offset: 3, data: null });
  assert.deepEqual(log.messages, [3]);
});

test('a replay cut short continues with message frames', () => {
  const ctx = reconnectedWithNews();
  const { client, ws, log } = ctx;
  subscribedReply(ws.last(), 'news', { epoch: 'e', offset: 7, recovered: true, publications: [{ offset: 6, data: 6 }, { offset: 7, data: 7 }] });
  for (const o of [8, 9]) ws.last().receive({ type: 'message', channel: 'news', offset: o, data: o });
  assert.deepEqual(log.messages, [6, 7, 8, 9]);
});

test('a gap on a live WebSocket reconnects and recovers from the last delivered offset', () => {
  const ctx = setup(wsOnly);
  const { client, ws } = ctx;
  const log = recorder();
  client.subscribe('news', log.handlers);
  client.connect();
  ws.last().welcome();
  subscribedReply(ws.last(), 'news', { epoch: 'e', offset: 5, recovered: false });
  ws.last().receive({ type: 'message', channel: 'news', offset: 7, data: null });
  assert.deepEqual(log.messages, []);
  assert.ok(ws.sockets[0].closed);
  assert.equal(client.state.state, 'reconnecting');
  retry(ctx);
  ws.last().welcome();
  assert.deepEqual(ws.last().sentOf('subscribe')[0].recover, { epoch: 'e', offset: 5 });
});

test('a refused subscribe: onError, removed, not resubscribed', () => {
  const ctx = setup(wsOnly);
  const { client, ws } = ctx;
  const log = recorder();
  const sub = client.subscribe('secret', log.handlers);
  client.connect();
  ws.last().welcome();
  const req = ws.last().sentOf('subscribe')[0];
  ws.last().receive({ type: 'error', id: req.id, code: 'forbidden', message: 'no' });
  assert.equal(log.errors[0].code, 'forbidden');
  assert.equal(sub.subscribed, false);
  assert.equal(client.getSubscription('secret'), undefined);
  ws.last().drop();
  retry(ctx);
  ws.last().welcome();
  assert.equal(ws.last().sentOf('subscribe').length, 0);
});

test('unsubscribe sends unsubscribe and is not restored; a second subscribe to a held channel throws', () => {
  const ctx = setup(wsOnly);
  const { client, ws } = ctx;
  const sub = client.subscribe('news');
  assert.throws(() => client.subscribe('news'), (e) => e.code === 'already_subscribed');
  client.connect();
  ws.last().welcome();
  subscribedReply(ws.last(), 'news', { epoch: 'e', offset: 1, recovered: false });
  sub.unsubscribe();
  assert.equal(ws.last().sentOf('unsubscribe')[0].channel, 'news');
  ws.last().drop();
  retry(ctx);
  ws.last().welcome();
  assert.equal(ws.last().sentOf('subscribe').length, 0);
  client.subscribe('news'); // allowed again
  assert.equal(ws.last().sentOf('subscribe').length, 1);
});

test('an answer to an older subscribe request is ignored', () => {
  const ctx = setup(wsOnly);
  const { client, ws } = ctx;
  const log = recorder();
  client.subscribe('news', log.handlers);
  client.connect();
  ws.last().welcome();
  const req = ws.last().sentOf('subscribe')[0];
  ws.last().receive({ type: 'subscribed', id: req.id + 100, channel: 'news', epoch: 'x', offset: 50, recovered: false, publications: [] });
  assert.deepEqual(log.subscribed, []);
});

test('a subscription handler that throws is reported, delivery goes on', () => {
  const { client, ws, errors } = setup(wsOnly);
  const seen = [];
  client.subscribe('news', {
    onMessage: (m) => {
      seen.push(m.offset);
      throw new Error('handler bug');
    },
  });
  client.connect();
  ws.last().welcome();
  subscribedReply(ws.last(), 'news', { epoch: 'e', offset: 0, recovered: false });
  ws.last().receive({ type: 'message', channel: 'news', offset: 1, data: 1 });
  ws.last().receive({ type: 'message', channel: 'news', offset: 2, data: 2 });
  assert.deepEqual(seen, [1, 2]);
  assert.equal(errors.length, 2);
});

// ---- retryable refusals (`unavailable`: the broker is down; nothing was done) ----

/** Answers the last subscribe to `channel` on `sock` with an error. */
function refuse(sock, channel, code, message = `${code}: retry`) {
  const req = sock.sentOf('subscribe').filter((m) => m.channel === channel).at(-1);
  sock.receive({ type: 'error', id: req.id, code, message });
  return req;
}

/** Advances the fake clock 1 ms at a time until `sock` sends another subscribe; returns the ms waited. */
function waitForResubscribe(clock, sock, limit = 60_000) {
  const before = sock.sentOf('subscribe').length;
  for (let waited = 1; waited <= limit; waited++) {
    clock.advance(1);
    if (sock.sentOf('subscribe').length > before) return waited;
  }
  assert.fail(`no resubscribe within ${limit} ms`);
}

test('the retryable codes: unavailable, internal, over_capacity', () => {
  assert.deepEqual([...RETRYABLE_ERRORS], ['unavailable', 'internal', 'over_capacity']);
  assert.ok(Object.isFrozen(RETRYABLE_ERRORS));
  for (const code of ['forbidden', 'invalid_channel', 'too_many_subscriptions', 'bad_request', 'rate_limited']) {
    assert.equal(isRetryable(code), false, code);
  }
});

for (const code of RETRYABLE_ERRORS) {
  test(`a subscribe refused with ${code} is kept and retried on the same connection after a delay`, () => {
    const { client, clock, ws, errors } = setup(wsOnly);
    const log = recorder();
    const sub = client.subscribe('news', log.handlers);
    client.connect();
    ws.last().welcome();
    const first = refuse(ws.last(), 'news', code, 'Redis is unreachable (reconnecting); retry');
    assert.equal(log.errors.length, 1);
    assert.equal(log.errors[0].code, code);
    assert.equal(log.errors[0].message, 'Redis is unreachable (reconnecting); retry');
    assert.equal(sub.subscribed, true, 'still active while the retry waits');
    assert.equal(client.getSubscription('news'), sub);
    assert.deepEqual(errors, [], 'reported to the subscription, not as a client error');
    // random() = 0.5, minDelay 500: the first retry waits 0.5 * 500 ms.
    clock.advance(249);
    assert.equal(ws.last().sentOf('subscribe').length, 1, 'not before the delay');
    clock.advance(1);
    const again = ws.sockets[0].sentOf('subscribe');
    assert.equal(ws.sockets.length, 1, 'on the same connection');
    assert.equal(again.length, 2);
    assert.notEqual(again[1].id, first.id);
    assert.equal(again[1].recover, undefined);
    subscribedReply(ws.last(), 'news', { epoch: 'e', offset: 3, recovered: false });
    assert.equal(log.errors.length, 1, 'onError once');
    assert.deepEqual(log.subscribed, [{ channel: 'news', epoch: 'e', offset: 3, recovered: false, resync: false }]);
    ws.last().receive({ type: 'message', channel: 'news', offset: 4, data: 4 });
    assert.deepEqual(log.messages, [4]);
  });
}

test('a refused recovery is retried with the recovery position', () => {
  const ctx = reconnectedWithNews();
  const { client, clock, ws, log } = ctx;
  refuse(ws.last(), 'news', 'unavailable');
  // Nothing is delivered for the channel while the server holds no subscription.
  waitForResubscribe(clock, ws.last());
  const again = ws.last().sentOf('subscribe').at(-1);
  assert.deepEqual(again.recover, { epoch: 'e', offset: 5 });
  subscribedReply(ws.last(), 'news', { epoch: 'e', offset: 6, recovered: true, publications: [{ offset: 6, data: 6 }] });
  assert.deepEqual(log.messages, [6]);
  assert.equal(log.subscribed.at(-1).recovered, true);
  assert.equal(log.errors.length, 1);
});

test('retry delays grow with each refusal in a row (full jitter) and start over after a success', () => {
  const ctx = setup({ ...wsOnly, minDelay: 100, maxDelay: 1000 });
  const { client, clock, ws } = ctx;
  const log = recorder();
  client.subscribe('news', log.handlers);
  client.connect();
  ws.last().welcome();
  const delays = [];
  for (let i = 0; i < 6; i++) {
    refuse(ws.last(), 'news', i % 2 ? 'over_capacity' : 'unavailable');
    delays.push(waitForResubscribe(clock, ws.last()));
  }
  // random() = 0.5 of min(maxDelay, minDelay * 2^n).
  assert.deepEqual(delays, [50, 100, 200, 400, 500, 500]);
  assert.equal(log.errors.length, 6, 'onError for every refusal');
  subscribedReply(ws.last(), 'news', { epoch: 'e', offset: 1, recovered: false });
  // A later refusal (here on the next connection) starts from the first delay again.
  ws.last().drop();
  retry(ctx);
  ws.last().welcome();
  refuse(ws.last(), 'news', 'unavailable');
  assert.equal(waitForResubscribe(clock, ws.last()), 50);
});

test('retry delays are jittered: random() scales each one', () => {
  let unit = 0.5;
  const { client, clock, ws } = setup({ ...wsOnly, random: () => unit });
  client.subscribe('news');
  client.connect();
  ws.last().welcome();
  const delays = [];
  for (const u of [0.1, 0.9, 0.3]) {
    unit = u;
    refuse(ws.last(), 'news', 'unavailable');
    delays.push(waitForResubscribe(clock, ws.last()));
  }
  // floor(random() * min(maxDelay, minDelay * 2^n)), minDelay 500.
  assert.deepEqual(delays, [50, 900, 600]);
});

for (const code of ['forbidden', 'invalid_channel', 'too_many_subscriptions', 'bad_request']) {
  test(`a subscribe refused with ${code} is not retried`, () => {
    const { client, clock, ws } = setup(wsOnly);
    const log = recorder();
    const sub = client.subscribe('news', log.handlers);
    client.connect();
    ws.last().welcome();
    refuse(ws.last(), 'news', code);
    assert.deepEqual(log.errors.map((e) => e.code), [code]);
    assert.equal(sub.subscribed, false);
    assert.equal(client.getSubscription('news'), undefined);
    clock.advance(20_000);
    assert.equal(ws.last().sentOf('subscribe').length, 1);
    assert.equal(ws.last().closed, null, 'the connection stays');
  });
}

test('unsubscribe cancels a pending retry (and sends no unsubscribe: the server holds nothing)', () => {
  const ctx = setup(wsOnly);
  const { client, clock, ws } = ctx;
  const log = recorder();
  const sub = client.subscribe('news', log.handlers);
  client.connect();
  ws.last().welcome();
  subscribedReply(ws.last(), 'news', { epoch: 'e', offset: 5, recovered: false });
  ws.last().drop();
  retry(ctx);
  ws.last().welcome();
  refuse(ws.last(), 'news', 'unavailable');
  const timers = clock.pending().length;
  sub.unsubscribe();
  assert.equal(clock.pending().length, timers - 1, 'the retry timer is cleared');
  assert.equal(sub.subscribed, false);
  assert.equal(client.getSubscription('news'), undefined);
  assert.equal(ws.last().sentOf('unsubscribe').length, 0);
  clock.advance(20_000);
  assert.equal(ws.last().sentOf('subscribe').length, 1);
  assert.equal(log.errors.length, 1);
});

test('an onError handler that unsubscribes cancels the retry', () => {
  const { client, clock, ws } = setup(wsOnly);
  let sub = null;
  sub = client.subscribe('news', { onError: () => sub.unsubscribe() });
  client.connect();
  ws.last().welcome();
  refuse(ws.last(), 'news', 'unavailable');
  assert.equal(sub.subscribed, false);
  clock.advance(20_000);
  assert.equal(ws.last().sentOf('subscribe').length, 1);
});

test('a connection loss cancels a pending retry: the reconnect resubscribes once', () => {
  const ctx = setup(wsOnly);
  const { client, clock, ws } = ctx;
  const log = recorder();
  client.subscribe('news', log.handlers);
  client.connect();
  ws.last().welcome();
  refuse(ws.last(), 'news', 'unavailable');
  clock.advance(100);
  ws.last().drop();
  // Only the reconnect's timer is left (the retry would have fired 150 ms from now).
  assert.deepEqual(clock.pending(), [client.state.nextRetryAt - clock.now()]);
  retry(ctx);
  ws.last().welcome();
  assert.equal(ws.last().sentOf('subscribe').length, 1, 'the normal resubscribe on reconnect');
  clock.advance(20_000);
  assert.equal(ws.last().sentOf('subscribe').length, 1, 'no second one from the old retry');
  assert.equal(ws.sockets[0].sentOf('subscribe').length, 1);
  subscribedReply(ws.last(), 'news', { epoch: 'e', offset: 0, recovered: false });
  assert.equal(log.subscribed.length, 1);
  assert.equal(log.errors.length, 1);
});

test('disconnect() cancels a pending retry', () => {
  const { client, clock, ws } = setup(wsOnly);
  client.subscribe('news');
  client.connect();
  ws.last().welcome();
  refuse(ws.last(), 'news', 'unavailable');
  client.disconnect();
  assert.deepEqual(clock.pending(), []);
});

test('a retryable refusal over long polling is retried through /lp/send', async () => {
  const { client, clock, http } = setup({ WebSocket: null });
  const log = recorder();
  client.connect();
  http.last('open').respond(200, LP_WELCOME);
  await flush();
  http.last('send').respond(200, [{ type: 'pong' }]); // the ping after the welcome
  await flush();
  client.subscribe('news', log.handlers);
  await flush();
  const send = http.last('send');
  const req = send.json.find((m) => m.type === 'subscribe');
  send.respond(200, [{ type: 'error', id: req.id, code: 'unavailable', message: 'retry' }]);
  await flush();
  assert.equal(log.errors.length, 1);
  assert.equal(http.open('send').length, 0);
  clock.advance(250);
  await flush();
  const again = http.last('send');
  const req2 = again.json.find((m) => m.type === 'subscribe');
  assert.equal(req2.channel, 'news');
  assert.notEqual(req2.id, req.id);
  again.respond(200, [{ type: 'subscribed', id: req2.id, channel: 'news', epoch: 'e', offset: 0, recovered: false, publications: [] }]);
  await flush();
  assert.equal(log.subscribed.length, 1);
  assert.deepEqual(http.last('poll').json, { channels: { news: { epoch: 'e', offset: 0 } } });
});
