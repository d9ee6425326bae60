// Subscriptions: recovery from {epoch, offset}, duplicates, gaps, recovered:false.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setup } from './helpers.mjs';

const wsOnly = { transports: ['websocket'] };

function recorder() {
  const log = { messages: [], subscribed: [], errors: [] };
  log.handlers = {
    onMessage: (m) => log.messages.push(m.offset),
    onSubscribed: (s) => log.subscribed.push(s),
    onError: (e) => log.errors.push(e),
  };
  return log;
}

function subscribedReply(sock, channel, fields) {
  const req = sock.sentOf('subscribe').filter((m) => m.channel === channel).at(-1);
  sock.receive({ type: 'subscribed', id: req.id, channel, publications: [], ...fields });
  return req;
}

const retry = ({ client, clock }) => clock.advance(client.state.nextRetryAt - clock.now());

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
  const ctx = setup(wsOnly);
  const { client, ws } = ctx;
  const log = recorder();
  client.subscribe('news', log.handlers);
  client.connect();
  ws.last().welcome();
  subscribedReply(ws.last(), 'news', { epoch: 'e', offset: 5, recovered: false });
  ws.last().drop();
  retry(ctx);
  ws.last().welcome();
  subscribedReply(ws.last(), 'news', { epoch: 'f', offset: 2, recovered: false });
  assert.deepEqual(log.subscribed.at(-1), { channel: 'news', epoch: 'f', offset: 2, recovered: false, resync: true });
  ws.last().receive({ type: 'message', channel: 'news', offset: 3, data: null });
  assert.deepEqual(log.messages, [3]);
});

test('a replay cut short continues with message frames', () => {
  const ctx = setup(wsOnly);
  const { client, ws } = ctx;
  const log = recorder();
  client.subscribe('news', log.handlers);
  client.connect();
  ws.last().welcome();
  subscribedReply(ws.last(), 'news', { epoch: 'e', offset: 5, recovered: false });
  ws.last().drop();
  retry(ctx);
  ws.last().welcome();
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
