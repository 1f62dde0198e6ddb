import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServerProcess } from '../../support/server-process';

/**
 * The server as `npm start` runs it: without MONGODB_URI it starts its own FerretDB under
 * DATA_DIR, prints the FHIR base when ready, keeps data across restarts, and stops cleanly
 * (embedded database included) on SIGTERM.
 */
const dataDir = mkdtempSync(path.join(os.tmpdir(), 'vigil-embedded-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

it('runs on its embedded database, keeps data across a restart and shuts down gracefully', async () => {
  const first = await startServerProcess({ MONGODB_URI: '', DATA_DIR: dataDir });
  let id: string;
  try {
    const created = await fetch(`${first.baseUrl}/Patient`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Durable' }] }),
    });
    expect(created.status).toBe(201);
    id = ((await created.json()) as { id: string }).id;
    expect((await fetch(`${first.baseUrl.replace(/\/fhir$/, '')}/readyz`)).status).toBe(200);
  } finally {
    expect(await first.stop('SIGTERM')).toBe('0');
  }

  const second = await startServerProcess({ MONGODB_URI: '', DATA_DIR: dataDir });
  try {
    const read = await fetch(`${second.baseUrl}/Patient/${id}`);
    expect(read.status).toBe(200);
    expect(((await read.json()) as { name: { family: string }[] }).name[0].family).toBe('Durable');
  } finally {
    expect(await second.stop('SIGTERM')).toBe('0');
  }
}, 180_000); // two process starts (and an embedded database) on a loaded machine
