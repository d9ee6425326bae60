// One licence for the whole repository: the workspace's `license` in the root
// Cargo.toml is what every crate inherits, what every package.json (and its
// lockfile's root entry) declares, and both texts it names are at the root.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '../../..');
const read = (p) => readFileSync(join(repo, p), 'utf8');

/** `license = "..."` under `[workspace.package]` in the root Cargo.toml. */
function workspaceLicense() {
  const section = read('Cargo.toml').split(/^\[workspace\.package\]$/m)[1]?.split(/^\[/m)[0] ?? '';
  const m = section.match(/^license = "([^"]+)"$/m);
  assert.ok(m, 'the root Cargo.toml has no [workspace.package] license');
  return m[1];
}

test('the workspace licence is MIT OR Apache-2.0 and both texts are at the root', () => {
  assert.equal(workspaceLicense(), 'MIT OR Apache-2.0');
  assert.match(read('LICENSE-MIT'), /^MIT License\n\nCopyright \(c\) The Tether developers\n/);
  assert.match(read('LICENSE-MIT'), /THE SOFTWARE IS PROVIDED "AS IS"/);
  const apache = read('LICENSE-APACHE');
  assert.match(apache, /^\s*Apache License\n\s*Version 2\.0, January 2004\n/);
  assert.match(apache, /END OF TERMS AND CONDITIONS/);
  const readme = read('README.md');
  assert.match(readme, /^## License$/m);
  assert.ok(readme.includes('(LICENSE-APACHE)') && readme.includes('(LICENSE-MIT)'), 'README links both texts');
});

test("every crate inherits the workspace's licence", () => {
  const members = read('Cargo.toml').match(/^members = \[([^\]]*)\]/m);
  assert.ok(members);
  const crates = [...members[1].matchAll(/"([^"]+)"/g)].map((m) => m[1]);
  assert.ok(crates.length >= 5);
  for (const c of crates) {
    assert.match(read(`${c}/Cargo.toml`), /^license\.workspace = true$/m, `${c}/Cargo.toml`);
  }
  // The bench baseline is a workspace of its own: it names the licence itself.
  assert.match(read('benches/baseline/Cargo.toml'), new RegExp(`^license = "${workspaceLicense()}"$`, 'm'));
});

test('every package.json and its lockfile declare the same licence as Cargo.toml', () => {
  const license = workspaceLicense();
  for (const dir of ['clients/js', 'benches/node', 'benches/socketio']) {
    assert.equal(JSON.parse(read(`${dir}/package.json`)).license, license, `${dir}/package.json`);
    const lock = join(dir, 'package-lock.json');
    if (existsSync(join(repo, lock))) {
      assert.equal(JSON.parse(read(lock)).packages[''].license, license, lock);
    }
  }
});
