#!/usr/bin/env node
// Builds the embedded database (FerretDB 1.24, SQLite storage) from the Go module proxy into
// .tools/bin/ferretdb. Run by `npm install` (postinstall) and on first start; a rebuild happens
// only when tools/ferretdb (the pinned version) changes.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = path.join(root, 'tools', 'ferretdb');
const binDir = path.join(root, '.tools', 'bin');
const bin = path.join(binDir, 'ferretdb');
const stamp = path.join(binDir, 'ferretdb.stamp');

function sourceHash() {
  const h = createHash('sha256');
  // Every source file: a change to any of them (the id index, the WAL sync) must rebuild.
  const files = ['go.mod', 'go.sum', ...readdirSync(srcDir).filter((f) => f.endsWith('.go') || f.endsWith('.sh')).sort()];
  for (const f of files) h.update(f).update(readFileSync(path.join(srcDir, f)));
  return h.digest('hex');
}

export function ferretdbUpToDate() {
  return existsSync(bin) && existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === sourceHash();
}

export function buildFerretdb({ quietIfNoGo = false } = {}) {
  if (ferretdbUpToDate()) return bin;
  const go = spawnSync('go', ['version'], { encoding: 'utf8' });
  if (go.status !== 0) {
    const msg =
      'vigil: Go is not installed, so the embedded database (FerretDB) cannot be built.\n' +
      '       Install Go 1.24+ or set MONGODB_URI to use your own MongoDB.';
    if (quietIfNoGo) {
      console.warn(msg);
      return undefined;
    }
    throw new Error(msg);
  }
  console.log('vigil: building the embedded database (FerretDB 1.24) from the Go module proxy; the first build takes a few minutes...');
  mkdirSync(binDir, { recursive: true });
  // FerretDB with one fix of ours (see tools/ferretdb/patch-ferretdb.sh).
  const p = spawnSync('sh', [path.join(srcDir, 'patch-ferretdb.sh'), path.join(root, '.tools', 'ferretdb-build')], { cwd: srcDir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (p.status !== 0) throw new Error(`vigil: preparing the FerretDB build failed (patch-ferretdb.sh exited ${p.status})`);
  const modfile = p.stdout.trim().split('\n').pop();
  const r = spawnSync('go', ['build', '-trimpath', `-modfile=${modfile}`, '-o', bin, '.'], {
    cwd: srcDir,
    stdio: 'inherit',
    env: { ...process.env, CGO_ENABLED: '0' },
  });
  if (r.status !== 0) throw new Error(`vigil: building FerretDB failed (go build exited ${r.status})`);
  writeFileSync(stamp, sourceHash() + '\n');
  console.log(`vigil: embedded database built at ${path.relative(root, bin)}`);
  return bin;
}

/** Marks a binary built elsewhere (the Dockerfile's Go stage) as built from these sources. */
export function stampFerretdb() {
  if (!existsSync(bin)) throw new Error(`vigil: no FerretDB binary at ${path.relative(root, bin)} to stamp`);
  writeFileSync(stamp, sourceHash() + '\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const ifMissing = process.argv.includes('--build-if-missing');
  try {
    if (process.argv.includes('--stamp')) stampFerretdb();
    else buildFerretdb({ quietIfNoGo: ifMissing });
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
}
