// 2. The connection is cut again and again while a backend publishes: the
// badge goes reconnecting -> connected each time, and the feed holds every
// offset exactly once, in order (recovery from the last offset, duplicates
// dropped).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { badgeTexts, channelName, feedOffsets, openDemo, range, waitFeedCount, waitState, waitStateEvent } from './support/browser.mjs';
import { publishSeries } from './support/publisher.mjs';
import { useStack } from './support/stack.mjs';

const stack = useStack();

const N = 60;
const CUTS = 5;

test('five cuts while 60 messages are published: every offset once, in order', async () => {
  const channel = channelName('cuts');
  const page = await openDemo(stack.browser.context, stack.proxy.url, { channel });
  await waitState(page, 'connected', 'websocket');

  let cuts = 0;
  // Every 10th publication (10, 20, ... 50) the proxy cuts every connection;
  // the next ones are published at once, while the page is reconnecting.
  const offsets = await publishSeries(stack.server, channel, N, async (i) => {
    if (i % 10 !== 0 || cuts >= CUTS) return;
    // Cut a connection that is up (the previous cut's reconnection is done).
    await waitState(page, 'connected', 'websocket');
    const at = Date.now();
    assert.ok(stack.proxy.cutAll() > 0, 'there was a connection to cut');
    cuts++;
    // The page notices the cut before anything else is published.
    await waitStateEvent(page, 'reconnecting', at);
  });
  assert.deepEqual(offsets, range(N));
  assert.equal(cuts, CUTS);

  await waitFeedCount(page, N);
  await waitState(page, 'connected', 'websocket');
  assert.deepEqual(await feedOffsets(page), range(N), 'every offset exactly once, in order');

  // The badge went reconnecting -> connected once per cut.
  const seq = page.states.map((s) => s.state).filter((s, i, a) => s !== a[i - 1]);
  assert.deepEqual(seq, ['connecting', 'connected', ...Array(CUTS).fill(['reconnecting', 'connected']).flat()]);
  const reconnecting = page.states.filter((s) => s.state === 'reconnecting');
  assert.ok(reconnecting.every((s) => s.attempt >= 1 && s.nextRetryAt > 0), 'reconnecting carries attempt and nextRetryAt');
  const texts = (await badgeTexts(page)).filter((t) => t.startsWith('reconnecting|'));
  assert.ok(texts.length >= CUTS, `the badge showed the countdown: ${texts}`);
  for (const t of texts) assert.match(t, /^reconnecting\|reconnecting in \d+ s, attempt \d+$/);
  // One WebSocket handshake per (re)connection.
  assert.equal(stack.proxy.upgradesSince(0).length, CUTS + 1);
  assert.deepEqual(page.errors, []);
});
