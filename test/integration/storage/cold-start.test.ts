import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MongoClient, type Db } from 'mongodb';
import { startServerProcess, type ServerProcess } from '../../support/server-process';

/**
 * Two server processes cold-starting at the same moment on one fresh database: every start-up
 * write (indexes and their fingerprints, meta secrets, the first signing key, registration
 * files, the shipped topics and ObservationDefinitions) may be raced, and FerretDB makes only
 * unique `_id` inserts atomic. Losing a race is fine; dying on it or doubling what is seeded is
 * not. Both must come up healthy, share one signing key (a token from one works on the other),
 * and every seeded thing must exist exactly once.
 */
const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-cold-'));
const clientsFile = path.join(dir, 'clients.json');
const usersFile = path.join(dir, 'users.json');
const SECRET = 'a-cold-start-client-secret-of-length';
writeFileSync(clientsFile, JSON.stringify([{ client_id: 'cold-gw', name: 'Cold start gateway', scope: 'system/Observation.rs', client_secret: SECRET }]));
writeFileSync(usersFile, JSON.stringify([{ username: 'cold.nurse', fhirUser: 'Practitioner/cold-1', password: 'a long enough password' }]));

let client: MongoClient;
beforeAll(async () => {
  client = await MongoClient.connect(process.env.VIGIL_TEST_MONGODB_URI!);
});
afterAll(async () => {
  await client.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Instances behind one address share BASE_URL (token issuer and audience); each is reached on its own port. */
const SHARED_BASE = 'http://vigil-cold.test/fhir';

async function tokenFrom(base: string): Promise<string> {
  const conf = (await (await fetch(`${base}/.well-known/smart-configuration`)).json()) as { token_endpoint: string };
  const r = await fetch(`${new URL(base).origin}${new URL(conf.token_endpoint).pathname}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: `Basic ${Buffer.from(`cold-gw:${SECRET}`).toString('base64')}` },
    body: 'grant_type=client_credentials&scope=system%2FObservation.rs',
  });
  expect(r.status).toBe(200);
  return ((await r.json()) as { access_token: string }).access_token;
}

/** Every (type, id) of `types` in history, with its number of versions. */
async function versionsById(db: Db, types: string[]): Promise<Map<string, number>> {
  const docs = await db.collection<{ type: string; id: string }>('history').find({ type: { $in: types } }, { projection: { type: 1, id: 1 } }).toArray();
  const out = new Map<string, number>();
  for (const d of docs) out.set(`${d.type}/${d.id}`, (out.get(`${d.type}/${d.id}`) ?? 0) + 1);
  return out;
}

// Two rounds on two fresh databases: each is a separate chance for the starts to collide.
it.each([1, 2])('two servers starting together on a fresh database both come up, seeding once (round %i)', async () => {
  const dbName = `vigil_test_cold_${randomBytes(4).toString('hex')}`;
  const env = { MONGODB_DB: dbName, BASE_URL: SHARED_BASE, AUTH_ENABLED: 'true', SMART_CLIENTS_FILE: clientsFile, SMART_USERS_FILE: usersFile };
  const started = await Promise.allSettled([0, 1].map(() => startServerProcess(env, { startTimeoutMs: 240_000 })));
  const procs = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  try {
    // A start that died says why (its output is in the rejection).
    for (const s of started) if (s.status === 'rejected') throw s.reason;
    const [a, b] = procs as [ServerProcess, ServerProcess];
    for (const p of [a, b]) {
      expect((await fetch(`${p.baseUrl.replace(/\/fhir$/, '')}/readyz`)).status).toBe(200);
      expect((await fetch(`${p.baseUrl}/metadata`)).status).toBe(200);
    }
    // One signing key: a token issued by either instance is accepted by the other.
    for (const [issuer, other] of [[a, b], [b, a]]) {
      const token = await tokenFrom(issuer.baseUrl);
      expect((await fetch(`${other.baseUrl}/Observation?_count=1`, { headers: { Authorization: `Bearer ${token}` } })).status).toBe(200);
    }

    const db = client.db(dbName);
    expect(await db.collection('auth_keys').countDocuments({})).toBe(1);
    expect(await db.collection('auth_clients').countDocuments({ _id: 'cold-gw' } as never)).toBe(1);
    expect(await db.collection('auth_users').countDocuments({ _id: 'cold.nurse' } as never)).toBe(1);
    // The shipped topics (stored as Basic) and ObservationDefinitions: each once, in one version.
    const seeded = await versionsById(db, ['Basic', 'ObservationDefinition']);
    expect([...seeded.keys()].filter((k) => k.startsWith('Basic/')).length).toBeGreaterThanOrEqual(3);
    expect([...seeded.keys()].filter((k) => k.startsWith('ObservationDefinition/')).length).toBeGreaterThanOrEqual(6);
    expect([...seeded].filter(([, n]) => n !== 1)).toEqual([]);
    for (const type of ['Basic', 'ObservationDefinition']) {
      const current = await db.collection<{ _id: string; vid: number }>(type).find({}, { projection: { vid: 1 } }).toArray();
      expect(current.map((d) => `${type}/${d._id}`).sort()).toEqual([...seeded.keys()].filter((k) => k.startsWith(`${type}/`)).sort());
      expect(current.every((d) => d.vid === 1)).toBe(true);
    }
    // Both still serve after the dust settles (neither died late on a lost race).
    for (const p of [a, b]) expect((await fetch(`${p.baseUrl}/metadata`)).status).toBe(200);
  } finally {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    await client.db(dbName).dropDatabase().catch(() => undefined);
  }
}, 400_000);
