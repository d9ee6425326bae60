// Takes docs/demo.png: the demo page connected and receiving a few messages
// (a real `tether serve`, headless Chromium). `npm run screenshot`.

import path from 'node:path';
import { launch, openDemo, waitFeedCount, waitState } from './support/browser.mjs';
import { publish } from './support/publisher.mjs';
import { FAST, repoRoot, startServer } from './support/server.mjs';

const out = path.join(repoRoot, 'docs/demo.png');
const server = await startServer({ args: FAST });
const browser = await launch();
try {
  const channel = 'news';
  const page = await openDemo(browser.context, server.url, { channel });
  await page.setViewportSize({ width: 900, height: 460 });
  await waitState(page, 'connected', 'websocket');
  const backend = [
    { headline: 'Tether 0.1 is out', by: 'backend' },
    { price: 101.25, symbol: 'TTR' },
    { text: 'deploy finished in 42 s', env: 'staging' },
  ];
  for (const data of backend) await publish(server, channel, data);
  await page.locator('#message').fill('hello from the browser');
  await page.locator('#publish button[type=submit]').click();
  await waitFeedCount(page, backend.length + 1);
  await page.locator('#publish-result', { hasText: 'published at offset' }).waitFor();
  await publish(server, channel, { text: 'and one more from the backend' });
  await waitFeedCount(page, backend.length + 2);
  // The RTT figure appears once the client's first ping was answered.
  await page.locator('#rtt', { hasText: 'ms' }).waitFor();
  await page.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await server.stop();
}
