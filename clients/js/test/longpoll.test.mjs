// Long polling (docs/longpoll.md): requests, positions, closes, timeouts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LP_WELCOME, MAX_SEND_BATCH, MAX_SEND_BYTES, flush, setup } from './helpers.mjs';
import { lpOnly, openLp, retry, subscribeLp } from './lp_helpers.mjs';


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

test(`a send body stops before MAX_SEND_BYTES (${MAX_SEND_BYTES}) in UTF-8 bytes: 64 publishes of 5 KB are not one 413`, async () => {
  const ctx = setup(lpOnly);
  const { client, http } = ctx;
  const data = 'é'.repeat(2500); // 2,500 characters, 5,000 bytes
  const all = Array.from({ length: 64 }, () => client.publish('chat', data));
  client.connect();
  await openLp(http);
  const bodies = [];
  let offset = 0;
  for (let send = http.last('send'); send; send = http.last('send')) {
    bodies.push(send.body);
    send.respond(200, send.json.map((m) => (m.type === 'ping' ? { type: 'pong' } : { type: 'ack', id: m.id, offset: ++offset })));
    await flush();
  }
  const bytes = bodies.map((b) => Buffer.byteLength(b));
  assert.ok(bodies.length > 1, 'more than one send');
  for (const b of bytes) assert.ok(b <= MAX_SEND_BYTES, `${b} bytes`);
  // Each body but the last is full: the next message would have passed the bound.
  const one = Buffer.byteLength(JSON.stringify(JSON.parse(bodies[0])[1])) + 1;
  for (const b of bytes.slice(0, -1)) assert.ok(b + one > MAX_SEND_BYTES, `${b} bytes is not full`);
  assert.deepEqual((await Promise.all(all)).map((r) => r.offset), Array.from({ length: 64 }, (_, i) => i + 1));
});

test('a message larger than MAX_SEND_BYTES is sent alone', async () => {
  const ctx = setup(lpOnly);
  const { client, http } = ctx;
  const big = 'x'.repeat(MAX_SEND_BYTES);
  const all = [client.publish('chat', 1), client.publish('chat', big), client.publish('chat', 3)];
  client.connect();
  await openLp(http);
  const shapes = [];
  let offset = 0;
  for (let send = http.last('send'); send; send = http.last('send')) {
    shapes.push(send.json.map((m) => (m.type === 'publish' ? (m.data === big ? 'big' : m.data) : m.type)));
    send.respond(200, send.json.map((m) => (m.type === 'ping' ? { type: 'pong' } : { type: 'ack', id: m.id, offset: ++offset })));
    await flush();
  }
  assert.deepEqual(shapes, [['ping', 1], ['big'], [3]]);
  await Promise.all(all);
});

const rateLimited = (message) => [{ type: 'error', code: 'rate_limited', message }];

test('a poll answered with an id-less rate_limited waits the delay it names before polling again', async () => {
  const ctx = setup(lpOnly);
  const { client, http, clock, errors } = ctx;
  client.connect();
  await openLp(http);
  http.last('poll').respond(200, rateLimited('too many messages; retry in 700 ms'));
  await flush();
  assert.deepEqual(errors.map((e) => e.code), ['rate_limited'], 'still reported');
  assert.equal(http.open('poll').length, 0, 'no poll at once');
  clock.advance(699);
  await flush();
  assert.equal(http.open('poll').length, 0);
  clock.advance(1);
  await flush();
  assert.equal(http.open('poll').length, 1);
  // An answer without the error: the next poll follows at once again.
  http.last('poll').respond(200, []);
  await flush();
  assert.equal(http.open('poll').length, 1);
  assert.equal(client.state.state, 'connected');
});

test('rate_limited without a delay waits 1 s; a longer one is cut to 10 s', async () => {
  for (const [message, wait] of [['too many messages', 1000], ['too many messages; retry in 60000 ms', 10_000]]) {
    const ctx = setup(lpOnly);
    const { client, http, clock } = ctx;
    client.connect();
    await openLp(http);
    http.last('poll').respond(200, rateLimited(message));
    await flush();
    clock.advance(wait - 1);
    await flush();
    assert.equal(http.open('poll').length, 0, message);
    clock.advance(1);
    await flush();
    assert.equal(http.open('poll').length, 1, message);
  }
});

test('during a rate-limit wait a subscription change does not poll early; the poll then names it', async () => {
  const ctx = setup(lpOnly);
  const { client, http, clock } = ctx;
  client.connect();
  await openLp(http);
  http.last('poll').respond(200, rateLimited('too many messages; retry in 500 ms'));
  await flush();
  await subscribeLp(ctx, 'news', { epoch: 'e', offset: 5, recovered: false });
  assert.equal(http.open('poll').length, 0);
  clock.advance(500);
  await flush();
  assert.deepEqual(http.last('poll').json, { channels: { news: { epoch: 'e', offset: 5 } } });
});

test('disconnect() cancels a rate-limit wait', async () => {
  const ctx = setup(lpOnly);
  const { client, http, clock } = ctx;
  client.connect();
  await openLp(http);
  http.last('poll').respond(200, rateLimited('too many messages; retry in 500 ms'));
  await flush();
  client.disconnect();
  assert.deepEqual(clock.pending(), []);
  const count = http.requests.length;
  clock.advance(60_000);
  await flush();
  assert.equal(http.requests.length, count);
});

test("the URL's query string goes on every long-polling request, beside client=", async () => {
  for (const url of ['ws://h:8080/ws?token=X&room=a%20b', 'http://h:8080/?token=X&room=a%20b', 'http://h:8080?client=old&token=X&room=a%20b']) {
    const ctx = setup(lpOnly, url);
    const { client, http } = ctx;
    client.connect();
    assert.equal(http.last('open').url, 'http://h:8080/lp/open?token=X&room=a%20b', url);
    await openLp(http);
    client.publish('chat', 1).catch(() => {});
    assert.equal(http.last('poll').url, 'http://h:8080/lp/poll?token=X&room=a%20b&client=lp-1', url);
    assert.equal(http.last('send').url, 'http://h:8080/lp/send?token=X&room=a%20b&client=lp-1', url);
    client.disconnect();
  }
});

test('a long-poll request refused with 400, 401, 403 or 404 stops the client (state disconnected, the status as code)', async () => {
  for (const status of [400, 401, 403, 404]) {
    for (const route of ['open', 'poll']) {
      const { client, http } = setup(lpOnly);
      client.connect();
      if (route === 'poll') await openLp(http);
      http.last(route).respond(status, 'no\n');
      await flush();
      assert.equal(client.state.state, 'disconnected', `${route} ${status}`);
      assert.equal(client.state.code, status);
      assert.equal(client.state.reason, `refused with HTTP ${status}: no`);
    }
  }
});
