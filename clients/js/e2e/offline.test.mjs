// 5. Offline, then online. Chromium's offline emulation does not close an
// open WebSocket, so the proxy cuts it as the network would: the badge shows
// "offline", no handshake is attempted while offline, and the `online` event
// brings a reconnection at once (within 1 s).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { badge, channelName, openDemo, waitFeedText, waitState, waitUntil } from './support/browser.mjs';
import { publish } from './support/publisher.mjs';
import { useStack } from './support/stack.mjs';

const stack = useStack();

/** How long "nothing while offline" is watched for (a measurement window, not a synchronisation). */
const OFFLINE_WATCH = 2_500;

test('offline: no attempts; online: a reconnection within 1 s', async () => {
  const channel = channelName('offline');
  const page = await openDemo(stack.browser.context, stack.proxy.url, { channel });
  await waitState(page, 'connected', 'websocket');
  await publish(stack.server, channel, { text: 'before' });
  await waitFeedText(page, 'before');

  await stack.browser.context.setOffline(true);
  assert.equal(await page.evaluate(() => navigator.onLine), false);
  assert.ok(stack.proxy.cutAll() > 0, 'the open WebSocket was cut');
  const offlineFrom = Date.now();
  await waitState(page, 'offline');
  assert.equal((await badge(page)).text, 'offline');
  const createdBefore = await page.evaluate(() => window.__wsCreated.length);

  // Several backoff delays (and server heartbeats) long: nothing is attempted.
  await page.waitForTimeout(OFFLINE_WATCH);
  assert.equal((await badge(page)).state, 'offline');
  assert.deepEqual(stack.proxy.upgradesSince(offlineFrom), [], 'no handshake reached the proxy while offline');
  assert.equal(await page.evaluate(() => window.__wsCreated.length), createdBefore, 'no WebSocket was even created');
  assert.ok(!page.states.some((s) => s.at > offlineFrom && s.state === 'connecting'));

  const onlineAt = Date.now();
  await stack.browser.context.setOffline(false);
  await waitUntil(() => stack.proxy.upgradesSince(onlineAt).length > 0, 1_000, 'an upgrade within 1 s of online');
  const took = stack.proxy.upgradesSince(onlineAt)[0].at - onlineAt;
  assert.ok(took <= 1_000, `reconnected ${took} ms after online`);
  await waitState(page, 'connected', 'websocket');
  await publish(stack.server, channel, { text: 'after' });
  await waitFeedText(page, 'after');
  assert.deepEqual(page.errors, []);
});
