// 1. The demo page connects over WebSocket and receives: a backend publish
// and a publish from the page's own box both appear in the feed.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { badge, channelName, feedEntries, launch, openDemo, waitFeedText, waitState } from './support/browser.mjs';
import { FaultProxy } from './support/proxy.mjs';
import { publish } from './support/publisher.mjs';
import { startServer } from './support/server.mjs';

let server, proxy, browser;

before(async () => {
  server = await startServer();
  proxy = await new FaultProxy(server).listen();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await proxy?.close();
  await server?.stop();
});

test('the page connects over WebSocket and shows backend and page publications', async () => {
  const channel = channelName('connect');
  // The channel has history before the page subscribes: a first subscribe
  // starts after it, and is no resync (nothing was lost for this page).
  assert.equal((await publish(server, channel, { text: 'before the page' })).offset, 1);
  const page = await openDemo(browser.context, proxy.url, { channel });
  await waitState(page, 'connected', 'websocket');
  assert.equal((await badge(page)).text, 'connected');
  assert.equal(await page.locator('#channel').textContent(), channel);
  assert.ok(proxy.upgradesSince(0).some((u) => u.path.startsWith('/ws') && !u.refused), 'the WebSocket went through the proxy');

  const { offset } = await publish(server, channel, { text: 'from the backend' });
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
