// Shared benchmark helpers: a fresh embedded database, the server in-process, figures as JSON lines.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

export function emit(obj) {
  process.stdout.write(JSON.stringify({ ...obj, at: new Date().toISOString() }) + '\n');
}

/** Starts FerretDB in a temp dir (or uses MONGODB_URI) and the built server on a loopback port. */
export async function startStack({ auth = false, env = {}, clientOptions = {} } = {}) {
  const { startEmbeddedDatabase, freePort } = require(path.join(root, 'dist/storage/embedded.js'));
  const { loadConfig } = require(path.join(root, 'dist/config.js'));
  const { createVigil } = require(path.join(root, 'dist/app.js'));
  const { MongoClient } = require('mongodb');
  const pino = require('pino');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-'));
  const port = await freePort();
  const config = loadConfig({
    PORT: String(port),
    BASE_URL: `http://127.0.0.1:${port}/fhir`,
    AUTH_ENABLED: auth ? 'true' : 'false',
    DATA_DIR: dir,
    LOG_LEVEL: 'silent',
    MONGODB_DB: `vigil_bench_${Date.now()}`,
    // The embedded database's durability setting, as the server reads it (README "Configuration").
    ...(process.env.EMBEDDED_DB_SYNC_MS ? { EMBEDDED_DB_SYNC_MS: process.env.EMBEDDED_DB_SYNC_MS } : {}),
    ...env,
  });
  const embedded = process.env.MONGODB_URI ? undefined : await startEmbeddedDatabase(dir, { syncMs: config.embeddedSyncMs });
  const uri = process.env.MONGODB_URI ?? embedded.uri;
  // The server's own pool size (the embedded URI carries it), as in production.
  const client = await MongoClient.connect(uri, { ...clientOptions });
  const db = client.db(config.dbName);
  const vigil = await createVigil({ config, db, logger: pino({ level: 'silent' }) });
  await vigil.start();
  const server = http.createServer(vigil.app);
  server.keepAliveTimeout = 60_000;
  require(path.join(root, 'dist/http/server-guard.js')).guardServer(server, pino({ level: 'silent' }));
  vigil.attach(server);
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return {
    baseUrl: config.baseUrl,
    db,
    vigil,
    database: embedded ? 'ferretdb-sqlite' : 'mongodb',
    /** The embedded FerretDB's pid (undefined with MONGODB_URI). */
    databasePid: embedded?.pid,
    async stop() {
      server.closeAllConnections?.();
      await new Promise((r) => server.close(r));
      await vigil.stop();
      await db.dropDatabase().catch(() => undefined);
      await client.close();
      await embedded?.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

/** One HTTP request with keep-alive; resolves with { status, body }. */
export function request(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    if (body) req.end(body);
    else req.end();
  });
}

export function percentiles(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (p) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
  const round = (x) => Math.round(x * 100) / 100;
  return { p50: round(at(50)), p95: round(at(95)), p99: round(at(99)), max: round(s[s.length - 1]) };
}

/** Resident memory (VmRSS) of a process in MB, from /proc (Linux); undefined when unreadable. */
export function rssMb(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : undefined;
  } catch {
    return undefined;
  }
}
