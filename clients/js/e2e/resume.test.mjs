// 6. A page that was frozen, hidden or asleep (its clock jumped) checks its
// connection at once on resume: the fault proxy black-holes the connection
// (nothing forwarded, nothing closed: a dead NAT entry, a suspended laptop),
// and the page must notice within a few seconds — far below the server's
// ping_interval + pong_timeout (30 s here), after which the heartbeat alone
// would notice — then reconnect and receive again.
//
// Chromium's CDP Page.setWebLifecycleState frozen/active has no effect on a
// visible headless page (timers keep running, no freeze/resume events), so
// resume is simulated with the events a browser fires (visibilitychange,
// pageshow, Page Lifecycle `resume`) and with playwright's clock
// (fastForward: timers fire late, as after a laptop's sleep).

import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';
import { badge, channelName, launch, openDemo, waitFeedText, waitState, waitUntil } from './support/browser.mjs';
import { FaultProxy } from './support/proxy.mjs';
import { publish } from './support/publisher.mjs';
import { startServer } from './support/server.mjs';

const PING = 20_000;
const PONG = 10_000;
/** The client's WAKE_CHECK_TIMEOUT (3 s) plus a margin: far below PING + PONG. */
const NOTICE_WITHIN = 4_500;
/** The client's wall-clock watch (WATCH_EVERY in src/liveness.ts). */
const WATCH_EVERY = 2_000;

let server, proxy, browser;

before(async () => {
  server = await startServer({ args: ['--ping-interval', `${PING / 1000}s`, '--pong-timeout', `${PONG / 1000}s`] });
  proxy = await new FaultProxy(server).listen();
});

afterEach(async () => {
  await browser?.close();
  browser = null;
  proxy.allowWebSocket();
  proxy.cutAll();
});

after(async () => {
  await proxy?.close();
  await server?.stop();
});

/** A connected page on a fresh browser; `clock`: install playwright's fake clock first. */
async function connectedPage(name, clock = false) {
  browser = await launch();
  if (clock) await browser.context.clock.install();
  const channel = channelName(name);
  const page = await openDemo(browser.context, proxy.url, { channel });
  await waitState(page, 'connected', 'websocket');
  await publish(server, channel, { text: 'first' });
  await waitFeedText(page, 'first');
  return { page, channel };
}

/** Black-holes the connection, runs `resume`, and checks the page notices at once and recovers. */
async function deadOnResume(page, channel, resume, within = NOTICE_WITHIN) {
  assert.ok(proxy.blackholeAll() > 0, 'a connection to black-hole');
  const upgradesBefore = proxy.upgradesSince(0).length;
  const from = Date.now();
  await resume();
  // From the client's state events, not the badge: the reconnection through
  // the proxy takes a few ms, too short to be seen by polling the page.
  await waitUntil(() => page.states.some((s) => s.at >= from && s.state !== 'connected'), within, 'the drop');
  const dropped = page.states.find((s) => s.at >= from && s.state !== 'connected');
  const noticed = dropped.at - from;
  assert.ok(noticed < within && noticed < PING + PONG, `noticed after ${noticed} ms`);
  assert.equal(dropped?.state, 'reconnecting');
  assert.match(dropped.reason, /no answer to a ping within 3000 ms/);

  await waitState(page, 'connected', 'websocket');
  if (process.env.E2E_TRACE) console.log('noticed', noticed, 'reconnected', Date.now() - from, page.states.slice(-3));
  assert.ok(proxy.upgradesSince(0).length > upgradesBefore, 'a new WebSocket handshake');
  await publish(server, channel, { text: 'after resume' });
  await waitFeedText(page, 'after resume');
  assert.deepEqual(page.errors, []);
  return noticed;
}

const dispatch = (page, target, type) =>
  page.evaluate(([t, ty]) => (t === 'document' ? document : window).dispatchEvent(new Event(ty)), [target, type]);

test('visible again (visibilitychange): a live connection is kept, a dead one dropped at once', async () => {
  const { page, channel } = await connectedPage('visible');
  // Alive: the ping sent on resume is answered; the connection stays (watched
  // for longer than the 3 s deadline: a measurement window).
  const from = Date.now();
  await dispatch(page, 'document', 'visibilitychange');
  await page.waitForTimeout(NOTICE_WITHIN);
  assert.equal(page.states.filter((s) => s.at >= from).length, 0, 'no state change while alive');

  await deadOnResume(page, channel, () => dispatch(page, 'document', 'visibilitychange'));
});

test('back from the back/forward cache (pageshow): a dead connection is dropped at once', async () => {
  const { page, channel } = await connectedPage('pageshow');
  await deadOnResume(page, channel, () => dispatch(page, 'window', 'pageshow'));
});

test('a frozen page resumed (Page Lifecycle resume): a dead connection is dropped at once', async () => {
  const { page, channel } = await connectedPage('frozen');
  await deadOnResume(page, channel, () => dispatch(page, 'document', 'resume'));
});

test('the clock jumps a minute ahead (sleep): a dead connection is dropped at once', async () => {
  const { page, channel } = await connectedPage('clock', true);
  await deadOnResume(page, channel, () => browser.context.clock.fastForward('01:00'));
});

// On long polling the resume ping goes through a new /lp/send and may be
// answered, while the poll in flight before the sleep hangs on a dead
// connection until poll_timeout + requestTimeout (35 s): the client polls
// again at once on resume.
const LP_DELIVERED_WITHIN = 6_000;

test('the wall clock jumps an hour and no timer fires (timers stopped in the sleep): the watch drops a dead connection within seconds', async () => {
  const { page, channel } = await connectedPage('wallclock', true);
  // setSystemTime moves Date.now() without firing any timer: the heartbeat
  // timer would only fire ping_interval later; the 2 s watch sees the jump.
  await deadOnResume(
    page,
    channel,
    () => browser.context.clock.setSystemTime(Date.now() + 3_600_000),
    WATCH_EVERY + NOTICE_WITHIN,
  );
});

test('long polling, visible again: a zombie poll is replaced at once, publications arrive within seconds', async () => {
  browser = await launch();
  proxy.refuseWebSocket();
  const channel = channelName('lp-resume');
  const page = await openDemo(browser.context, proxy.url, { channel, fallback: 2, handshake: 2000 });
  await waitState(page, 'connected', 'longpoll');
  // Subscribed (a position to poll from) before the first publication.
  await page.waitForFunction((c) => window.tether.getSubscription(c)?.position != null, channel, { polling: 20 });
  const published = Date.now();
  await publish(server, channel, { text: 'first' });
  await waitFeedText(page, 'first');
  // The poll that follows the one that delivered it is in flight, waiting on the server.
  await waitUntil(() => proxy.requests.some((r) => r.at >= published && r.path.startsWith('/lp/poll')), 2_000, 'a poll in flight');

  assert.ok(proxy.blackholeAll() > 0, 'connections to black-hole');
  const from = Date.now();
  await dispatch(page, 'document', 'visibilitychange');
  await publish(server, channel, { text: 'after resume' });
  await waitFeedText(page, 'after resume', LP_DELIVERED_WITHIN);
  const took = Date.now() - from;
  if (process.env.E2E_TRACE) console.log('delivered after', took, page.states.filter((s) => s.at >= from));
  assert.ok(took < LP_DELIVERED_WITHIN, `delivered ${took} ms after the resume`);
  assert.ok(proxy.requests.some((r) => r.at >= from && r.path.startsWith('/lp/poll')), 'a new poll after the resume');
  assert.equal((await badge(page)).transport, 'longpoll');
  assert.deepEqual(page.errors, []);
});
