// 1. The demo page connects over WebSocket and receives: a backend publish
// and a publish from the page's own box both appear in the feed.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { badge, channelName, feedEntries, openDemo, waitFeedText, waitState } from './support/browser.mjs';
import { publish } from './support/publisher.mjs';
import { useStack } from './support/stack.mjs';

const stack = useStack();

test('the page connects over WebSocket and shows backend and page publications', async () => {
  const channel = channelName('connect');
  // The channel has history before the page subscribes: a first subscribe
  // starts after it, and is no resync (nothing was lost for this page).
  assert.equal((await publish(stack.server, channel, { text: 'before the page' })).offset, 1);
  const page = await openDemo(stack.browser.context, stack.proxy.url, { channel });
  await waitState(page, 'connected', 'websocket');
  assert.equal((await badge(page)).text, 'connected');
  assert.equal(await page.locator('#channel').textContent(), channel);
  assert.ok(stack.proxy.upgradesSince(0).some((u) => u.path.startsWith('/ws') && !u.refused), 'the WebSocket went through the proxy');
  // The RTT is shown at connect (the ping after the welcome), then refreshed every 5 s with ping().
  await page.locator('#rtt', { hasText: /^\d+ ms$/ }).waitFor({ timeout: 2_000 });
  await page.evaluate(() => {
    const c = window.tether;
    const real = c.ping.bind(c);
    window.__pings = [];
    c.ping = () => real().then((ms) => (window.__pings.push(ms), ms));
  });
  await page.waitForFunction(() => window.__pings.length >= 1, null, { timeout: 6_000, polling: 50 });
  const [rtt] = await page.evaluate(() => window.__pings);
  await page.locator('#rtt', { hasText: new RegExp(`^${Math.round(rtt)} ms$`) }).waitFor({ timeout: 1_000 });

  const { offset } = await publish(stack.server, channel, { text: 'from the backend' });
  assert.equal(offset, 2);
  await waitFeedText(page, 'from the backend');

  await page.locator('#message').fill('from the page');
  await page.locator('#publish button[type=submit]').click();
  await waitFeedText(page, 'from the page');
  await page.locator('#publish-result', { hasText: 'published at offset 3' }).waitFor();

  const entries = await feedEntries(page);
  assert.deepEqual(entries.map((e) => e.offset), [2, 3]);
  assert.match(entries[0].text, /#2.*from the backend/);
  assert.match(entries[1].text, /#3.*from the page/);
  // No resync notice on a first subscribe, and no page errors.
  assert.equal(await page.locator('#feed li[data-resync]').count(), 0);
  assert.deepEqual(page.errors, []);
  assert.deepEqual(page.states.map((s) => s.state), ['connecting', 'connected']);
});
