// Runs the benchmarks (all, or those named: `npm run bench -- ingest search`). Each prints JSON lines.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';

const here = path.dirname(new URL(import.meta.url).pathname);
const asked = process.argv.slice(2);
const all = readdirSync(here, { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(path.join(here, d.name, 'index.mjs')))
  .map((d) => d.name);
let failed = false;
for (const name of asked.length ? asked : all) {
  const r = spawnSync(process.execPath, [path.join(here, name, 'index.mjs')], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`bench ${name} failed (exit ${r.status})`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
