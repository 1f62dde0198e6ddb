import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config';
import { startEmbeddedDatabase, type EmbeddedDatabase } from '../../src/storage/embedded';

declare global {
  // eslint-disable-next-line no-var
  var __VIGIL_TEST_DB__: EmbeddedDatabase | undefined;
}

/**
 * One real database for the whole run: FerretDB in a temporary directory, unless MONGODB_URI
 * points the tests at a real MongoDB. Each test file then uses a database name of its own.
 */
export default async function globalSetup(): Promise<void> {
  if (process.env.MONGODB_URI) {
    process.env.VIGIL_TEST_MONGODB_URI = process.env.MONGODB_URI;
    return;
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-test-db-'));
  // The durability setting as the server reads it (EMBEDDED_DB_SYNC_MS; its default otherwise).
  const db = await startEmbeddedDatabase(dir, { syncMs: loadConfig({ EMBEDDED_DB_SYNC_MS: process.env.EMBEDDED_DB_SYNC_MS }).embeddedSyncMs });
  globalThis.__VIGIL_TEST_DB__ = db;
  process.env.VIGIL_TEST_MONGODB_URI = db.uri;
  process.env.VIGIL_TEST_DB_DIR = dir;
}
