// Search benchmark entry for bench/run.mjs: runs bench/search/run.ts (TypeScript, via ts-node).
// Flags pass through: node bench/search/index.mjs --sizes=10000 --iterations=50 [--large]
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const here = path.dirname(new URL(import.meta.url).pathname);
const r = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(here, 'run.ts'), ...process.argv.slice(2)], {
  stdio: 'inherit',
  cwd: path.resolve(here, '..', '..'),
});
process.exit(r.status ?? 1);
