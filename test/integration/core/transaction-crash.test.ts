import { MongoClient } from 'mongodb';
import { randomBytes } from 'node:crypto';
import { startServerProcess } from '../../support/server-process';

/**
 * Kills the real server process in the middle of a transaction commit and checks, after a
 * restart, that the transaction was rolled back (crash before the commit point) or completed
 * (crash after it), never left half-applied.
 */
const dbName = `vigil_test_crash_${randomBytes(4).toString('hex')}`;
let client: MongoClient;

beforeAll(async () => {
  client = await MongoClient.connect(process.env.VIGIL_TEST_MONGODB_URI!);
});
afterAll(async () => {
  await client.db(dbName).dropDatabase().catch(() => undefined);
  await client.close();
});

function txBundle(tag: string) {
  return {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      ...[0, 1, 2].map((i) => ({
        resource: { resourceType: 'Device', status: 'active', serialNumber: `${tag}-${i}` },
        request: { method: 'POST', url: 'Device' },
      })),
      // An Observation too: after a restart, search must find it exactly when it committed.
      {
        resource: {
          resourceType: 'Observation',
          status: 'final',
          code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
          subject: { reference: `Patient/${tag}` },
          effectiveDateTime: '2024-06-01T08:00:00Z',
          valueQuantity: { value: 80, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
        },
        request: { method: 'POST', url: 'Observation' },
      },
    ],
  };
}

async function post(baseUrl: string, body: unknown): Promise<number | 'dropped'> {
  try {
    const r = await fetch(baseUrl, { method: 'POST', headers: { 'Content-Type': 'application/fhir+json' }, body: JSON.stringify(body) });
    return r.status;
  } catch {
    return 'dropped';
  }
}

async function devicesWithSerialPrefix(prefix: string): Promise<number> {
  const docs = await client.db(dbName).collection('Device').find({ deleted: false }).toArray();
  return docs.filter((d) => String((d.res as { serialNumber?: string }).serialNumber ?? '').startsWith(prefix)).length;
}

it.each([
  ['after-history', 'rolled back', 0],
  ['after-commit', 'completed', 3],
])('a crash %s leaves the transaction %s after restart', async (point, _what, expected) => {
  const tag = `crash-${point}`;
  const crashing = await startServerProcess({ MONGODB_DB: dbName, VIGIL_TEST_CRASH_AT: point });
  expect(await post(crashing.baseUrl, txBundle(tag))).toBe('dropped');
  expect(await crashing.exited).toBe('SIGKILL');

  const restarted = await startServerProcess({ MONGODB_DB: dbName });
  try {
    expect(await devicesWithSerialPrefix(tag)).toBe(expected);
    const hist = await (await fetch(`${restarted.baseUrl}/Device/_history?_count=100`)).json() as { entry?: { resource?: { serialNumber?: string } }[] };
    const inHistory = (hist.entry ?? []).filter((e) => e.resource?.serialNumber?.startsWith(tag)).length;
    expect(inHistory).toBe(expected);
    const found = await (await fetch(`${restarted.baseUrl}/Observation?subject=Patient/${tag}&date=2024-06-01&_sort=-date`)).json() as { entry?: unknown[] };
    expect(found.entry?.length ?? 0).toBe(expected === 0 ? 0 : 1);
    expect(await client.db(dbName).collection('tx_journal').countDocuments()).toBe(0);
    // The server works normally afterwards.
    expect(await post(restarted.baseUrl, txBundle(`${tag}-after`))).toBe(200);
    expect(await devicesWithSerialPrefix(`${tag}-after`)).toBe(3);
  } finally {
    await restarted.stop();
  }
});
