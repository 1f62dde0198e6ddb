import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MongoClient } from 'mongodb';
import { loadConfig, ConfigError } from '../../../src/config';
import { startEmbeddedDatabase } from '../../../src/storage/embedded';

/**
 * The embedded database's commits reach the disk on a timer (EMBEDDED_DB_SYNC_MS, default
 * 100 ms; SQLite synchronous=NORMAL) or in every commit (0). Either way a write the database
 * acknowledged survives the database process being killed at once: the kernel holds its pages.
 * (What a power loss would take cannot be tested here; see src/storage/embedded.ts.)
 */
const describeEmbedded = process.env.MONGODB_URI ? describe.skip : describe;

describeEmbedded('embedded database durability', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  async function killedAndRestarted(syncMs: number): Promise<{ acknowledged: number; found: number; replaced: number }> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-sync-'));
    dirs.push(dir);
    const first = await startEmbeddedDatabase(dir, { syncMs });
    const client = await MongoClient.connect(first.uri);
    const col = client.db('sync').collection<{ _id: string; n: number }>('docs');
    let acknowledged = 0;
    // Sequential and concurrent inserts, and a replace, all acknowledged before the kill.
    for (let i = 0; i < 50; i++) {
      await col.insertOne({ _id: `s${i}`, n: i });
      acknowledged++;
    }
    await Promise.all(Array.from({ length: 50 }, (_, i) => col.insertOne({ _id: `c${i}`, n: i }).then(() => acknowledged++)));
    await col.replaceOne({ _id: 's0' }, { n: 1000 });
    process.kill(first.pid!, 'SIGKILL');
    await client.close(true).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 200));

    const second = await startEmbeddedDatabase(dir, { syncMs });
    const again = await MongoClient.connect(second.uri);
    try {
      const docs = again.db('sync').collection<{ _id: string; n: number }>('docs');
      const found = await docs.countDocuments({});
      const replaced = (await docs.findOne({ _id: 's0' }))?.n ?? -1;
      return { acknowledged, found, replaced };
    } finally {
      await again.close();
      await second.stop();
    }
  }

  it('with commits fsynced on a timer (the default), every acknowledged write survives kill -9 of the database', async () => {
    expect(await killedAndRestarted(100)).toEqual({ acknowledged: 100, found: 100, replaced: 1000 });
  });

  it('with a fsync per commit (EMBEDDED_DB_SYNC_MS=0), the same', async () => {
    expect(await killedAndRestarted(0)).toEqual({ acknowledged: 100, found: 100, replaced: 1000 });
  });

  it('EMBEDDED_DB_SYNC_MS is validated: 0 to 1000 ms', () => {
    expect(loadConfig({}).embeddedSyncMs).toBe(100);
    expect(loadConfig({ EMBEDDED_DB_SYNC_MS: '0' }).embeddedSyncMs).toBe(0);
    expect(() => loadConfig({ EMBEDDED_DB_SYNC_MS: '5000' })).toThrow(ConfigError);
    expect(() => loadConfig({ EMBEDDED_DB_SYNC_MS: 'soon' })).toThrow(/EMBEDDED_DB_SYNC_MS/);
  });
});
