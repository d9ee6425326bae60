// What every page test file runs against: a real `tether serve`, the fault
// proxy in front of it, and a browser — started before the file's tests and
// stopped after them. A test may replace `stack.server` (a restart on the
// same port); the one there at the end is the one stopped.

import { after, before } from 'node:test';
import { launch } from './browser.mjs';
import { FaultProxy } from './proxy.mjs';
import { startServer } from './server.mjs';

export function useStack() {
  const stack = { server: null, proxy: null, browser: null };
  before(async () => {
    stack.server = await startServer();
    stack.proxy = await new FaultProxy(stack.server).listen();
    stack.browser = await launch();
  });
  after(async () => {
    await stack.browser?.close();
    await stack.proxy?.close();
    await stack.server?.stop();
  });
  return stack;
}
