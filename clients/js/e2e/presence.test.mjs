// Presence on the demo page (docs/presence.md): three pages in one channel
// with presence and join/leave (two on WebSocket, one on long polling) list
// each other in #presence, each marking its own client; one closes, and the
// other two see it leave (a `leave` event: they do not reconnect or ask
// again). A channel without presence shows a note and nobody, without a page
// error.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { channelName, launch, openDemo, waitState } from './support/browser.mjs';
import { FAST, startServer } from './support/server.mjs';

const PREFIX = 'presence-e2e';
const CONFIG = `[[channels]]
pattern = "${PREFIX}-*"
presence = true
join_leave = true
`;

const stack = { server: null, browser: null, dir: '' };
before(async () => {
  stack.dir = mkdtempSync(path.join(os.tmpdir(), 'tether-e2e-presence-'));
  const config = path.join(stack.dir, 'tether.toml');
  writeFileSync(config, CONFIG);
  stack.server = await startServer({ args: [...FAST, '--config', config] });
  stack.browser = await launch();
});
after(async () => {
  await stack.browser?.close();
  await stack.server?.stop();
  if (stack.dir) rmSync(stack.dir, { recursive: true, force: true });
});

/** What #presence lists: {client, self, text} per item. */
function listed(page) {
  return page.$$eval('#presence li', (lis) =>
    lis.map((li) => ({ client: li.dataset.client, self: li.classList.contains('self'), text: li.textContent })),
  );
}

/** Waits until #presence lists exactly the clients `ids` (in any order). */
async function waitListed(page, ids) {
  await page.waitForFunction(
    (want) => {
      const got = [...document.querySelectorAll('#presence li')].map((li) => li.dataset.client).sort();
      return JSON.stringify(got) === JSON.stringify(want);
    },
    [...ids].sort(),
    { polling: 20 },
  );
}

test('three pages in a presence channel list each other; one closes, the others see it leave', async () => {
  const channel = channelName(PREFIX);
  const { context } = stack.browser;
  const transports = ['websocket', 'websocket', 'longpoll'];
  const pages = [];
  for (const [i, transport] of transports.entries()) {
    const params = { channel, transport };
    const page = await openDemo(context, stack.server.url, params, i === 0 ? undefined : await context.newPage());
    await waitState(page, 'connected', transport);
    pages.push(page);
  }
  const ids = await Promise.all(pages.map((p) => p.evaluate(() => window.tether.clientId)));
  assert.equal(new Set(ids).size, 3, `three client ids: ${ids}`);

  for (const [i, page] of pages.entries()) {
    await waitListed(page, ids);
    const items = await listed(page);
    assert.deepEqual(items.filter((x) => x.self).map((x) => x.client), [ids[i]], 'the page marks its own client');
    for (const item of items) {
      // The page sends no token: every client is anonymous.
      assert.equal(item.text, `anonymous${item.client}${item.self ? ' (you)' : ''}`);
    }
    assert.equal(await page.locator('#presence-count').textContent(), '3');
    assert.equal(await page.locator('#presence-note').textContent(), '');
  }

  // A WebSocket page closes: the other WebSocket page and the long-polling one see it go.
  await pages[1].close();
  for (const page of [pages[0], pages[2]]) {
    await waitListed(page, [ids[0], ids[2]]);
    assert.equal(await page.locator('#presence-count').textContent(), '2');
    // Seen through the leave event: no reconnect, no page error.
    assert.deepEqual(page.states.map((s) => s.state), ['connecting', 'connected']);
    assert.deepEqual(page.errors, []);
  }
});

test('a channel without presence: the page shows a note and nobody, without an error', async () => {
  const channel = channelName('plain');
  const page = await openDemo(stack.browser.context, stack.server.url, { channel }, await stack.browser.context.newPage());
  await waitState(page, 'connected', 'websocket');
  await page.locator('#presence-note', { hasText: `presence is not enabled for channel "${channel}"` }).waitFor();
  assert.equal(await page.locator('#presence li').count(), 0);
  assert.equal(await page.locator('#presence-count').textContent(), '–');
  assert.deepEqual(page.errors, []);
});
