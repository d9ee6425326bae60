// The JS Backoff against the shared vectors (crates/protocol/vectors/backoff.json),
// which the Rust protocol crate checks its Backoff against too: the two
// clients give the same ceiling and the same delay, to the ms.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Backoff, vectors } from './helpers.mjs';

const { cases } = vectors('backoff.json');

test('the vector file has cases', () => {
  assert.ok(cases.length >= 30, `${cases.length} cases`);
});

for (const c of cases) {
  test(`backoff vector: ${c.name}`, () => {
    const b = new Backoff(c.min_delay_ms, c.max_delay_ms);
    assert.equal(b.ceiling(c.attempt), c.ceiling_ms, 'ceiling');
    assert.equal(b.delay(c.attempt, c.unit, c.floor_ms ?? undefined), c.delay_ms, 'delay');
  });
}
