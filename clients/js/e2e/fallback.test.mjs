// 4. WebSocket refused by a proxy (HTTP 403 on every upgrade): the page falls
// back to long polling, receives and publishes there, and returns to
// WebSocket within the probe interval once upgrades are allowed again; no
// offset is lost or duplicated across the switches.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { channelName, feedOffsets, openDemo, range, waitFeedCount, waitFeedText, waitState, waitUntil } from './support/browser.mjs';
import { publish } from './support/publisher.mjs';
import { useStack } from './support/stack.mjs';

const stack = useStack();

const PROBE = 2_000;

test('WebSocket refused: long polling, then back to WebSocket, nothing lost or duplicated', async () => {
  const channel = channelName('fallback');
  stack.proxy.refuseWebSocket();
  const page = await openDemo(stack.browser.context, stack.proxy.url, { channel, probe: PROBE, fallback: 2, handshake: 2000 });
  await waitState(page, 'connected', 'longpoll');
  const refused = stack.proxy.upgradesSince(0);
  assert.ok(refused.length >= 2 && refused.every((u) => u.refused), 'two refused upgrades before the fallback');
  assert.ok(stack.proxy.requests.some((r) => r.method === 'POST' && r.path.startsWith('/lp/open')), 'the page opened a long-poll session');
  assert.equal(await page.locator('#transport').textContent(), 'longpoll');

  // Backend publications and the page's own publish, over long polling.
  let n = 0;
  const next = async () => publish(stack.server, channel, { n: ++n });
  for (let i = 0; i < 5; i++) await next();
  await waitFeedCount(page, 5);
  await page.locator('#message').fill('over long polling');
  await page.locator('#publish button[type=submit]').click();
  await waitFeedText(page, 'over long polling');
  n++; // the page's publish took offset 6
  await page.locator('#publish-result', { hasText: `published at offset ${n}` }).waitFor();
  assert.ok(stack.proxy.requests.some((r) => r.path.startsWith('/lp/send')), 'the publish went through /lp/send');
  assert.ok(stack.proxy.requests.some((r) => r.path.startsWith('/lp/poll')), 'messages came through /lp/poll');

  // Probes keep being refused while on long polling: the page stays there.
  const probesFrom = Date.now();
  await waitUntil(() => stack.proxy.upgradesSince(probesFrom).length >= 1, PROBE + 2_000, 'a WebSocket probe');
  assert.ok(stack.proxy.upgradesSince(probesFrom).every((u) => u.refused));
  for (let i = 0; i < 3; i++) await next();
  await waitState(page, 'connected', 'longpoll');

  // Upgrades allowed again: back to WebSocket within the probe interval,
  // while the backend keeps publishing.
  stack.proxy.allowWebSocket();
  const allowedAt = Date.now();
  const publishing = (async () => {
    for (let i = 0; i < 20; i++) {
      await next();
      await new Promise((r) => setTimeout(r, 100)); // a publication pace, not a synchronisation
    }
  })();
  await waitState(page, 'connected', 'websocket', PROBE + 1_500);
  const switchedAfter = Date.now() - allowedAt;
  assert.ok(switchedAfter <= PROBE + 1_500, `back on WebSocket ${switchedAfter} ms after upgrades were allowed`);
  assert.ok(stack.proxy.upgradesSince(allowedAt).some((u) => !u.refused));
  await publishing;
  for (let i = 0; i < 3; i++) await next();

  await waitFeedCount(page, n);
  assert.deepEqual(await feedOffsets(page), range(n), 'every offset exactly once, in order, across both switches');
  await waitState(page, 'connected', 'websocket');
  assert.equal(await page.locator('#transport').textContent(), 'websocket');
  // The switch back was a takeover, not a reconnection.
  const seq = page.states.map((s) => `${s.state}/${s.transport}`).filter((s, i, a) => s !== a[i - 1]);
  assert.equal(seq.at(-1), 'connected/websocket');
  assert.equal(seq.at(-2), 'connected/longpoll');
  assert.deepEqual(page.errors, []);
});

