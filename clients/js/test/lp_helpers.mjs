// Helpers for the long-polling tests: a session opened, idled and
// subscribed against the fake fetch of helpers.mjs.
import assert from 'node:assert/strict';
import { LP_WELCOME, flush } from './helpers.mjs';

export const lpOnly = { WebSocket: null };
export { retry } from './helpers.mjs';

/**
 * Opens a long-poll session: answers /lp/open with the welcome, and the ping
 * that follows it with a pong when it is sent alone (nothing to restore).
 */
export async function openLp(http, welcome = LP_WELCOME) {
  const open = http.last('open');
  assert.ok(open, 'an /lp/open request');
  open.respond(200, welcome);
  await flush();
  const send = http.last('send');
  assert.equal(send?.json[0]?.type, 'ping', 'a ping follows the welcome');
  if (send.json.length === 1) {
    send.respond(200, [{ type: 'pong' }]);
    await flush();
  }
}

/** Lets `ms` pass with a live long-poll server: polls answered `[]` every 20 s, pings answered. */
export async function idleLp({ clock, http }, ms) {
  for (let t = 0; t < ms; t += 5000) {
    clock.advance(Math.min(5000, ms - t));
    await flush();
    for (const r of http.open('send')) if (r.json.every((m) => m.type === 'ping')) r.respond(200, [{ type: 'pong' }]);
    if ((t / 5000) % 4 === 3) for (const r of http.open('poll')) r.respond(200, []);
    await flush();
  }
}

export async function subscribeLp(ctx, channel, fields, handlers) {
  const sub = ctx.client.subscribe(channel, handlers);
  await flush();
  const send = ctx.http.last('send');
  const req = send.json.find((m) => m.type === 'subscribe' && m.channel === channel);
  send.respond(200, [{ type: 'subscribed', id: req.id, channel, publications: [], ...fields }]);
  await flush();
  return { sub, req };
}
