import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/** The project root: src/db (ts-node, jest) or dist/db (built) both sit two levels below it. */
const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, '.tools', 'bin', 'ferretdb');

export interface EmbeddedDatabase {
  uri: string;
  /** The FerretDB process (benchmarks read its resident memory). */
  pid: number | undefined;
  stop(): Promise<void>;
}

/** Builds FerretDB when missing or out of date (scripts/ferretdb.mjs does the work). */
export function ensureFerretdbBuilt(): string {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'ferretdb.mjs')], { stdio: 'inherit' });
  if (r.status !== 0 || !existsSync(BIN)) {
    throw new Error('the embedded database could not be built; see the messages above, or set MONGODB_URI');
  }
  return BIN;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * How commits reach the disk. SQLite's default (synchronous=FULL) fsyncs the write-ahead log
 * inside every commit, while it holds the database's one write lock: about 1.3 ms on this
 * machine's disk, most of a raw insert, and every other writer waits it out (200 concurrent
 * inserts took 0.8-1.2 s, against 0.11-0.14 s without). With `syncMs` > 0 the databases run
 * with synchronous=NORMAL: a commit is durable against the crash of any process at once (the
 * kernel holds its pages) and our wrapper fsyncs the logs every `syncMs` (tools/ferretdb/
 * walsync.go), bounding what a power loss can take, as MongoDB's journal commits every 100 ms.
 * 0 keeps a fsync per commit.
 */
function syncArgs(dbDir: string, syncMs: number): string[] {
  if (syncMs <= 0) return [`--sqlite-url=file:${dbDir}/`];
  return [`--sqlite-url=file:${dbDir}/?_pragma=synchronous(normal)`, `--wal-sync-interval=${syncMs}ms`];
}

/**
 * Connections per client of the embedded database (in its URI, so the server, the admin command,
 * tests and benchmarks all get it). FerretDB's SQLite pool has 100 connections, and an update
 * holds two of them at once (its query and its transaction): with the driver's default of 100,
 * a few busy clients could check out every connection with each waiting for one more, and the
 * database would stall for good. Twenty per client leaves room for several processes (two
 * instances and the admin command) and is more than two cores keep busy.
 */
export const EMBEDDED_POOL_SIZE = 20;

/**
 * Starts FerretDB on SQLite under `dataDir` on a loopback port and waits until it accepts
 * connections. The returned `stop` ends it gracefully (SIGTERM, then SIGKILL after 5 s).
 */
export async function startEmbeddedDatabase(
  dataDir: string,
  /** `syncMs`: how far apart commits are fsynced (config `embeddedSyncMs`, EMBEDDED_DB_SYNC_MS; see syncArgs). */
  opts: { port?: number; log?: (msg: string) => void; syncMs: number },
): Promise<EmbeddedDatabase> {
  const bin = ensureFerretdbBuilt();
  const dbDir = path.join(dataDir, 'ferretdb');
  mkdirSync(dbDir, { recursive: true });
  const port = opts.port ?? (await freePort());
  const child: ChildProcess = spawn(bin, [`--listen-addr=127.0.0.1:${port}`, ...syncArgs(dbDir, opts.syncMs), '--log-level=error'], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const deadline = Date.now() + 30_000;
  while (!(await canConnect(port))) {
    if (exited) throw new Error('the embedded database (FerretDB) exited during start-up');
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error('the embedded database (FerretDB) did not start within 30 s');
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const durability = opts.syncMs > 0 ? `commits fsynced at most ${opts.syncMs} ms apart (EMBEDDED_DB_SYNC_MS)` : 'every commit fsynced';
  opts.log?.(`embedded database (FerretDB, SQLite) listening on 127.0.0.1:${port}, data in ${dbDir}; ${durability}`);
  return {
    uri: `mongodb://127.0.0.1:${port}/?maxPoolSize=${EMBEDDED_POOL_SIZE}`,
    pid: child.pid,
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(timer);
    },
  };
}
