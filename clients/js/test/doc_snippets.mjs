// The ```js blocks of docs/browser.md, by the name their first line gives
// (`// app.js, ...`), for the tests that run them as written.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const browserDoc = readFileSync(join(here, '../../../docs/browser.md'), 'utf8');
const blocks = [...browserDoc.matchAll(/^```js\n([\s\S]*?)^```$/gm)].map((m) => m[1]);

/** The one ```js block of docs/browser.md whose first line is `// NAME...`. */
export function docBlock(name) {
  const found = blocks.filter((b) => b.startsWith(`// ${name}`));
  assert.equal(found.length, 1, `docs/browser.md has one js block starting "// ${name}"`);
  return found[0];
}
