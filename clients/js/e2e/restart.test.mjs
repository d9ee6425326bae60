// 3. The server is killed (its memory history is gone) and a new one starts
// on the same port: the page resyncs (onSubscribed resync, an entry with
// data-resync) and receives new publications again.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { channelName, feedEntries, openDemo, waitFeedText, waitState, waitStateEvent } from './support/browser.mjs';
import { publish } from './support/publisher.mjs';
import { startServer } from './support/server.mjs';
import { useStack } from './support/stack.mjs';

const stack = useStack();

test('a restarted server (history lost): the page resyncs and receives again', async () => {
  const channel = channelName('restart');
  const page = await openDemo(stack.browser.context, stack.proxy.url, { channel });
  await waitState(page, 'connected', 'websocket');
  const before = [];
  for (let i = 1; i <= 3; i++) before.push(await publish(stack.server, channel, { text: `old ${i}` }));
  await waitFeedText(page, 'old 3');
  const oldEpoch = before[0].epoch;

  // A crash: SIGKILL, no 1012, history gone. A new server on the same port.
  const port = stack.server.port;
  const killedAt = Date.now();
  await stack.server.stop('SIGKILL');
  await waitStateEvent(page, 'reconnecting', killedAt);
  stack.server = await startServer({ port });
  assert.equal(stack.server.port, port);

  const resync = page.locator('#feed li[data-resync]');
  await resync.waitFor({ state: 'attached' });
  await waitState(page, 'connected', 'websocket');
  assert.equal(await resync.count(), 1);
  assert.match(await resync.textContent(), /resynced at offset 0 \(epoch [0-9a-f]+\)/);
  assert.ok(!(await resync.textContent()).includes(oldEpoch), 'the new server has a new epoch');

  const fresh = await publish(stack.server, channel, { text: 'new 1' });
  assert.notEqual(fresh.epoch, oldEpoch);
  assert.equal(fresh.offset, 1);
  await waitFeedText(page, 'new 1');
  await publish(stack.server, channel, { text: 'new 2' });
  await waitFeedText(page, 'new 2');
  const texts = (await feedEntries(page)).map((e) => e.text);
  assert.deepEqual(texts, ['#1{"text":"old 1"}', '#2{"text":"old 2"}', '#3{"text":"old 3"}', '#1{"text":"new 1"}', '#2{"text":"new 2"}']);
  // The resync notice sits between the old epoch's entries and the new one's.
  const order = await page.$$eval('#feed li', (lis) => lis.map((li) => (li.dataset.resync !== undefined ? 'resync' : li.dataset.offset)).reverse());
  assert.deepEqual(order, ['1', '2', '3', 'resync', '1', '2']);
  assert.deepEqual(page.errors, []);
});
