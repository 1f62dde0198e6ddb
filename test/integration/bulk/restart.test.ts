import { randomBytes } from 'node:crypto';
import { MongoClient } from 'mongodb';
import type { Resource } from 'fhir/r4';
import { heartRate } from '../../support/context';
import { startServerProcess, type ServerProcess } from '../../support/server-process';
import type { Manifest } from './helpers';

/**
 * A server killed in the middle of an export: the restarted server takes the job over once its
 * lease has lapsed and finishes it, with every resource exactly once.
 */
const dbName = `vigil_bulk_restart_${randomBytes(5).toString('hex')}`;
const env = { MONGODB_DB: dbName, BULK_CHUNK_RESOURCES: '5', BULK_LEASE_MS: '1000', NEWS2_ENABLED: 'false' };
let server: ServerProcess | undefined;

afterAll(async () => {
  await server?.stop('SIGKILL');
  const client = await MongoClient.connect(process.env.VIGIL_TEST_MONGODB_URI!);
  await client.db(dbName).dropDatabase().catch(() => undefined);
  await client.close();
});

async function json(url: string, init: RequestInit = {}): Promise<{ status: number; headers: Headers; body: unknown }> {
  const r = await fetch(url, init);
  const text = await r.text();
  return { status: r.status, headers: r.headers, body: text ? (JSON.parse(text) as unknown) : undefined };
}

it('resumes an export interrupted by a crash and exports every resource exactly once', async () => {
  server = await startServerProcess({ ...env, VIGIL_TEST_BULK_CRASH_AFTER_CHUNKS: '2' });
  const ids: string[] = [];
  const entry = Array.from({ length: 30 }, (_, i) => {
    const id = `rs-${i}`;
    ids.push(id);
    return { resource: { ...heartRate('rp1', 50 + i), id }, request: { method: 'PUT', url: `Observation/${id}` } };
  });
  const seeded = await json(server.baseUrl, {
    method: 'POST',
    headers: { 'Content-Type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Bundle', type: 'batch', entry }),
  });
  expect(seeded.status).toBe(200);

  const kick = await fetch(`${server.baseUrl}/$export?_type=Observation`, { headers: { Prefer: 'respond-async', Accept: 'application/fhir+json' } });
  expect(kick.status).toBe(202);
  const statusPath = new URL(kick.headers.get('content-location')!).pathname;
  // The fault injection kills the process after its second chunk (10 of 30 resources).
  expect(await server.exited).toBe('SIGKILL');

  server = await startServerProcess(env);
  const statusUrl = `http://127.0.0.1:${server.port}${statusPath}`;
  const deadline = Date.now() + 60_000;
  let manifest: Manifest | undefined;
  while (!manifest) {
    const r = await json(statusUrl);
    if (r.status === 200) manifest = r.body as Manifest;
    else if (r.status !== 202) throw new Error(`status: ${r.status} ${JSON.stringify(r.body)}`);
    else if (Date.now() > deadline) throw new Error('the resumed export did not finish');
    else await new Promise((res) => setTimeout(res, 200));
  }
  expect(manifest.output).toHaveLength(1);
  expect(manifest.output[0].count).toBe(30);
  const file = await fetch(`http://127.0.0.1:${server.port}${new URL(manifest.output[0].url).pathname}`);
  expect(file.status).toBe(200);
  const lines = (await file.text()).trimEnd().split('\n').map((l) => JSON.parse(l) as Resource);
  expect(lines.map((r) => r.id).sort()).toEqual([...ids].sort());
  expect((await server.stop('SIGTERM'))).toBe('0');
  server = undefined;
}, 180_000);
