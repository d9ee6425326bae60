import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Backoff, parseRetryAfter, parseRetryHint } from './helpers.mjs';

test('ceilings double up to maxDelay', () => {
  const b = new Backoff(500, 30000);
  assert.deepEqual([0, 1, 2, 3, 6, 200].map((a) => b.ceiling(a)), [500, 1000, 2000, 4000, 30000, 30000]);
});

test('full jitter: exact schedule with injected randomness', () => {
  const b = new Backoff(100, 1000);
  assert.deepEqual([0.0, 0.5, 0.25, 0.5, 0.1].map((u, a) => b.delay(a, u)), [0, 100, 100, 400, 100]);
  assert.equal(b.delay(0, 0), 0); // first retry at once ...
  assert.ok(b.delay(0, 0.999) < 100); // ... or within minDelay
  assert.equal(b.delay(3, NaN), 0);
});

test('full jitter: statistically uniform within [0, ceiling]', () => {
  // A seeded generator (mulberry32) so the test is reproducible.
  let s = 42;
  const rand = () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const b = new Backoff(500, 30000);
  for (let attempt = 0; attempt < 10; attempt++) {
    const ceiling = b.ceiling(attempt);
    const draws = Array.from({ length: 2000 }, () => b.delay(attempt, rand()));
    assert.ok(draws.every((d) => d >= 0 && d <= ceiling), `attempt ${attempt}`);
    const mean = draws.reduce((a, d) => a + d, 0) / draws.length;
    assert.ok(Math.abs(mean - ceiling / 2) < ceiling * 0.05, `attempt ${attempt}: mean ${mean} vs ${ceiling / 2}`);
    assert.ok(Math.min(...draws) < ceiling * 0.05 && Math.max(...draws) > ceiling * 0.95, 'the whole range is used');
  }
});

test('a floor is honoured, jittered above, and cut to maxDelay', () => {
  const b = new Backoff(100, 1000);
  assert.equal(b.delay(0, 0, 700), 700);
  assert.equal(b.delay(0, 0.5, 700), 750);
  assert.equal(b.delay(0, 0.999, 950), 1000);
  for (const hint of [86_400_000, Number.MAX_SAFE_INTEGER, Infinity]) assert.equal(b.delay(0, 0, hint), 1000);
});

test('retry hints and Retry-After', () => {
  assert.equal(parseRetryHint('overloaded retry_after_ms=700'), 700);
  assert.equal(parseRetryHint('server restarting; reconnect retry_after_ms=321'), 321);
  assert.equal(parseRetryHint('no hint'), undefined);
  assert.equal(parseRetryHint('retry_after_ms='), undefined);
  assert.ok(parseRetryHint('retry_after_ms=99999999999999999999999999') > 1e15);
  assert.equal(parseRetryAfter('3', 0), 3000);
  assert.equal(parseRetryAfter(null, 0), undefined);
  assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:10 GMT', Date.parse('Wed, 21 Oct 2015 07:28:00 GMT')), 10000);
  assert.equal(parseRetryAfter('soon', 0), undefined);
});
