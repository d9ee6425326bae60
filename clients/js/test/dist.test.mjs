// The committed bundle (what the server embeds) loads and exports the API.
import assert from 'node:assert/strict';
import { test } from 'node:test';

test('dist/tether.js exports the same API as a fresh build', async () => {
  const dist = await import('../dist/tether.js');
  const fresh = await import('../.test-build/tether.js');
  assert.deepEqual(Object.keys(dist).sort(), Object.keys(fresh).sort());
  assert.equal(typeof dist.Tether, 'function');
});
