// Headless Chromium (Debian's /usr/bin/chromium, never a downloaded build)
// driven by playwright-core, with a fresh temporary profile, and helpers to
// read the demo page (crates/server/src/index.html): the #status badge and
// the feed's li[data-offset] entries.
//
// The server embeds the page and clients/js/dist/tether.js when it is built,
// and the tests load them from it, as a user's browser does. A binary built
// before the last client change would serve an older client: the first page
// opened checks that the server's copies equal this working tree's and fails
// with what to do otherwise. While working on the client, E2E_WORKTREE=1
// gives the browser the working tree's copies instead (everything else —
// /ws, /lp/, the API — stays the real server's).

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

/** Give the browser the working tree's page and client (see above). */
const LOCAL_FILES = Boolean(process.env.E2E_WORKTREE);
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../../../..');
/** Path on the server → [file in this working tree, content type]. */
const LOCAL = {
  '/': [path.join(repo, 'crates/server/src/index.html'), 'text/html; charset=utf-8'],
  '/tether.js': [path.join(repo, 'clients/js/dist/tether.js'), 'text/javascript; charset=utf-8'],
};

export const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // A page given by page.route() has no address space, so Chromium counts it
  // as public and blocks its WebSocket to 127.0.0.1 (Local Network Access).
  ...(LOCAL_FILES ? ['--disable-features=LocalNetworkAccessChecks'] : []),
];

/** Timeouts (ms) for waits on the page's state. */
export const WAIT = 10_000;

/** A persistent context on a fresh temporary profile; `close()` removes it. */
export async function launch() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tether-e2e-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 900, height: 640 },
  });
  context.setDefaultTimeout(WAIT);
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let checkedEmbedded = false;

/** Fails unless the server at `base` serves this working tree's page and client. */
async function sameAsWorkingTree(base) {
  if (checkedEmbedded) return;
  for (const [route, [file]] of Object.entries(LOCAL)) {
    const served = await (await fetch(new URL(route, base))).text();
    if (served !== readFileSync(file, 'utf8')) {
      throw new Error(
        `the tether binary serves a ${route} older than ${path.relative(repo, file)}: ` +
          'run `cargo build -p tether` (or set E2E_WORKTREE=1 to load the working tree\'s copies)',
      );
    }
  }
  checkedEmbedded = true;
}

/** A unique channel name per test, so that offsets start at 1. */
export function channelName(prefix) {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}`;
}

/**
 * Opens the demo page at `base` with query `params` and records, in order,
 * every state the client reports (`page.states`: {state, transport, at}).
 * With `params.channel`, returns once the feed's subscription is answered.
 * Page errors fail loudly. In the context's first tab, or in `page` (a tab
 * of its own from `context.newPage()`, for tests with several pages).
 */
export async function openDemo(context, base, params = {}, page = undefined) {
  page ??= context.pages()[0] ?? (await context.newPage());
  const states = [];
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.exposeFunction('__e2eState', (s) => states.push({ ...s, at: Date.now() }));
  // Counts the WebSockets the page creates, and hooks the client's state
  // events as soon as the page made it (window.tether).
  await page.addInitScript(() => {
    const Native = window.WebSocket;
    window.__wsCreated = [];
    window.WebSocket = class extends Native {
      constructor(...a) {
        super(...a);
        window.__wsCreated.push(Date.now());
      }
    };
    // Every text the #status badge shows, in order.
    window.__badgeTexts = [];
    document.addEventListener('DOMContentLoaded', () => {
      const b = document.getElementById('status');
      const seen = () => window.__badgeTexts.push(`${b.dataset.state}|${b.textContent}`);
      new MutationObserver(seen).observe(b, { attributes: true, childList: true, characterData: true, subtree: true });
      seen();
    });
    let client;
    Object.defineProperty(window, 'tether', {
      configurable: true,
      get: () => client,
      set: (c) => {
        client = c;
        c.on('state', (s) => window.__e2eState(s));
      },
    });
  });
  if (!LOCAL_FILES) await sameAsWorkingTree(base);
  if (LOCAL_FILES && !page.localFiles) {
    page.localFiles = true;
    await page.route(
      (url) => url.origin === new URL(base).origin && Object.hasOwn(LOCAL, url.pathname),
      (route) => {
        const [file, contentType] = LOCAL[new URL(route.request().url()).pathname];
        return route.fulfill({ status: 200, contentType, headers: { 'Cache-Control': 'no-cache' }, body: readFileSync(file) });
      },
    );
  }
  const q = new URLSearchParams(params).toString();
  await page.goto(`${base}/?${q}`);
  page.states = states;
  page.errors = errors;
  // The feed's first subscribe has no position to recover from: what is
  // published before the server answered it is not the page's. Tests
  // publish after this.
  if (params.channel) {
    await page.waitForFunction((c) => window.tether?.getSubscription(c)?.position != null, params.channel, {
      timeout: WAIT,
      polling: 20,
    });
  }
  return page;
}

/** Waits until #status has `data-state` (and `data-transport`, when given). */
export async function waitState(page, state, transport, timeout = WAIT) {
  await page.waitForFunction(
    ([s, t]) => {
      const b = document.getElementById('status');
      return b?.dataset.state === s && (!t || b.dataset.transport === t);
    },
    [state, transport],
    { timeout, polling: 20 },
  );
}

/**
 * Waits until the client reported `state` at or after `since` (Date.now()).
 * Unlike polling the badge, this sees states that last only a moment (a
 * reconnection that succeeds within a few ms).
 */
export async function waitStateEvent(page, state, since, timeout = WAIT) {
  await waitUntil(() => page.states.some((s) => s.at >= since && s.state === state), timeout, `state ${state}`);
}

/** The badge: {state, transport, text}. */
export function badge(page) {
  return page.evaluate(() => {
    const b = document.getElementById('status');
    return { state: b.dataset.state, transport: b.dataset.transport, text: b.textContent };
  });
}

/** Every badge text so far, as "state|text", in order. */
export function badgeTexts(page) {
  return page.evaluate(() => window.__badgeTexts);
}

/** The feed's offsets in delivery order (the page prepends: newest first in the DOM). */
export async function feedOffsets(page) {
  const offs = await page.$$eval('#feed li[data-offset]', (lis) => lis.map((li) => Number(li.dataset.offset)));
  return offs.reverse();
}

/** The feed's messages in delivery order: {offset, text}. */
export async function feedEntries(page) {
  const es = await page.$$eval('#feed li[data-offset]', (lis) =>
    lis.map((li) => ({ offset: Number(li.dataset.offset), text: li.textContent })),
  );
  return es.reverse();
}

/** Waits until the feed holds at least `n` messages. */
export async function waitFeedCount(page, n, timeout = WAIT) {
  await page.waitForFunction(
    (k) => document.querySelectorAll('#feed li[data-offset]').length >= k,
    n,
    { timeout, polling: 20 },
  );
}

/** Waits until an entry whose text contains `text` is in the feed. */
export async function waitFeedText(page, text, timeout = WAIT) {
  await page
    .locator('#feed li[data-offset]', { hasText: text })
    .first()
    .waitFor({ state: 'attached', timeout });
}

/** 1..n */
export function range(n) {
  return Array.from({ length: n }, (_, i) => i + 1);
}

/** Polls the Node-side `cond` every 20 ms, at most `ms`; fails with `what`. */
export async function waitUntil(cond, ms, what) {
  const end = Date.now() + ms;
  for (let i = 0; i <= ms / 20 + 1 && Date.now() < end; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  if (!cond()) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}
