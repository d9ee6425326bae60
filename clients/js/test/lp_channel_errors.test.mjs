// Long polling: an id-less `error` with a `channel` in a poll answer (the poll
// named the channel, the session could not hold it) refuses that channel's
// subscription like a refused subscribe, so the next poll does not name it
// again at once (which looped until the session was closed with 4005).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RETRYABLE_ERRORS, decode, flush, recorder, setup } from './helpers.mjs';
import { lpOnly, openLp, subscribeLp } from './lp_helpers.mjs';

/** A session holding `news` (offset 5) and `chat` (offset 1). */
async function holding() {
  const ctx = setup(lpOnly);
  ctx.client.connect();
  await openLp(ctx.http);
  const log = recorder();
  const { sub } = await subscribeLp(ctx, 'news', { epoch: 'e', offset: 5, recovered: false }, log.handlers);
  await subscribeLp(ctx, 'chat', { epoch: 'e', offset: 1, recovered: false });
  assert.deepEqual(Object.keys(ctx.http.last('poll').json.channels).sort(), ['chat', 'news']);
  return { ...ctx, log, sub };
}

test('an error decodes its optional channel', () => {
  assert.deepEqual(decode('{"type":"error","code":"forbidden","message":"m","channel":"news"}'), {
    type: 'error',
    code: 'forbidden',
    message: 'm',
    channel: 'news',
  });
  assert.equal('channel' in decode('{"type":"error","code":"forbidden","message":"m","channel":7}'), false);
});

for (const code of ['invalid_channel', 'forbidden', 'too_many_subscriptions']) {
  test(`a poll answer's id-less ${code} for a held channel removes it; the next poll no longer names it`, async () => {
    const { client, http, log, sub, errors } = await holding();
    const polls = http.requests.filter((r) => r.route === 'poll').length;
    http.last('poll').respond(200, [{ type: 'error', code, message: 'no', channel: 'news' }]);
    await flush();
    assert.deepEqual(log.errors.map((e) => [e.code, e.message]), [[code, 'no']]);
    assert.equal(sub.subscribed, false);
    assert.equal(client.getSubscription('news'), undefined);
    assert.deepEqual(errors, [], 'reported to the subscription, not as a client error');
    assert.equal(http.requests.filter((r) => r.route === 'poll').length, polls + 1, 'one poll follows');
    assert.deepEqual(http.last('poll').json, { channels: { chat: { epoch: 'e', offset: 1 } } });
    assert.equal(http.open('send').length, 0, 'no unsubscribe: the server holds nothing');
    assert.equal(client.state.state, 'connected');
  });
}

for (const code of RETRYABLE_ERRORS) {
  test(`a poll answer's id-less ${code} for a held channel: left out of polls until its retry, then subscribed again`, async () => {
    const { client, clock, http, log, sub, errors } = await holding();
    http.last('poll').respond(200, [{ type: 'error', code, message: 'Redis is unreachable', channel: 'news' }]);
    await flush();
    assert.deepEqual(log.errors.map((e) => e.code), [code]);
    assert.equal(sub.subscribed, true, 'kept while its retry waits');
    assert.equal(client.getSubscription('news'), sub);
    assert.deepEqual(errors, []);
    assert.deepEqual(http.last('poll').json, { channels: { chat: { epoch: 'e', offset: 1 } } });
    // Polls answered before the retry is due (random() = 0.5, minDelay 500: 250 ms) leave it out.
    clock.advance(249);
    http.last('poll').respond(200, []);
    await flush();
    assert.deepEqual(Object.keys(http.last('poll').json.channels), ['chat']);
    assert.equal(http.open('send').length, 0);
    clock.advance(1);
    await flush();
    // Due: subscribed again from its position over /lp/send, and named again.
    const send = http.last('send');
    const req = send.json.find((m) => m.type === 'subscribe');
    assert.deepEqual(req, { type: 'subscribe', id: req.id, channel: 'news', recover: { epoch: 'e', offset: 5 } });
    send.respond(200, [
      { type: 'subscribed', id: req.id, channel: 'news', epoch: 'e', offset: 6, recovered: true, publications: [{ offset: 6, data: 6 }] },
    ]);
    await flush();
    assert.deepEqual(log.messages, [6]);
    assert.deepEqual(http.last('poll').json.channels, { news: { epoch: 'e', offset: 6 }, chat: { epoch: 'e', offset: 1 } });
    assert.equal(log.errors.length, 1);
  });
}

test('a retry refused again by the next poll waits longer, and the channel stays out of polls', async () => {
  const { clock, http, log } = await holding();
  http.last('poll').respond(200, [{ type: 'error', code: 'unavailable', message: 'x', channel: 'news' }]);
  await flush();
  clock.advance(250);
  await flush();
  const send = http.last('send');
  const req = send.json.find((m) => m.type === 'subscribe');
  send.respond(200, [{ type: 'error', id: req.id, code: 'unavailable', message: 'still' }]);
  await flush();
  assert.equal(log.errors.length, 2);
  assert.deepEqual(Object.keys(http.last('poll').json.channels), ['chat']);
  clock.advance(499); // the second refusal in a row: 0.5 * 1000 ms
  await flush();
  assert.equal(http.open('send').length, 0);
  clock.advance(1);
  await flush();
  assert.equal(http.last('send').json.find((m) => m.type === 'subscribe').channel, 'news');
});

test('an id-less error naming a channel not held is an error event', async () => {
  const { http, errors, log } = await holding();
  http.last('poll').respond(200, [{ type: 'error', code: 'forbidden', message: 'no', channel: 'other' }]);
  await flush();
  assert.deepEqual(errors.map((e) => e.code), ['forbidden']);
  assert.equal(log.errors.length, 0);
  assert.deepEqual(Object.keys(http.last('poll').json.channels).sort(), ['chat', 'news']);
});
