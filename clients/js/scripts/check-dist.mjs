// Fails (exit 1) when the committed dist/ differs from a fresh build of src/:
// the server embeds dist/tether.js, so it must never be stale.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const tmp = mkdtempSync(join(tmpdir(), 'tether-dist-'));

function files(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

try {
  const r = spawnSync(process.execPath, [join(root, 'scripts/build.mjs'), tmp], { stdio: 'inherit', cwd: root });
  if (r.status !== 0) {
    console.error('check-dist: the build failed');
    process.exit(1);
  }
  const want = new Set(files(tmp).map((p) => relative(tmp, p)));
  const have = new Set(files(dist).map((p) => relative(dist, p)));
  const problems = [];
  for (const f of want) {
    if (!have.has(f)) problems.push(`missing: dist/${f}`);
    else if (!readFileSync(join(tmp, f)).equals(readFileSync(join(dist, f)))) problems.push(`stale:   dist/${f}`);
  }
  for (const f of have) if (!want.has(f)) problems.push(`extra:   dist/${f}`);
  if (problems.length > 0) {
    console.error(`check-dist: dist/ does not match the sources:\n  ${problems.join('\n  ')}`);
    console.error('Run `npm run build` in clients/js and commit dist/.');
    process.exit(1);
  }
  console.log(`check-dist: dist/ matches the sources (${want.size} files)`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
