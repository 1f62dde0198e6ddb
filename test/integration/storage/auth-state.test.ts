import { randomBytes } from 'node:crypto';
import { MongoClient, type Db } from 'mongodb';
import { KeyRing } from '../../../src/auth/keys';
import { authState, type AuthState } from '../../../src/storage/state/auth';

/**
 * Auth's state on the real database, raced the way several instances race it: single use rests
 * on unique inserts (FerretDB's findOneAndUpdate and upsert are not atomic), so of many takers at
 * once exactly one wins, and start-up seeding by many at once neither fails nor doubles.
 */
let client: MongoClient;
let db: Db;
let state: AuthState;
const tag = randomBytes(4).toString('hex');
const later = () => new Date(Date.now() + 60_000);

beforeAll(async () => {
  client = await MongoClient.connect(process.env.VIGIL_TEST_MONGODB_URI as string);
  db = client.db(`vigil_test_auth_state_${tag}`);
  state = authState(db);
});
afterAll(async () => {
  await db?.dropDatabase();
  await client?.close();
});

const code = (id: string) => ({ _id: id, grantId: `g-${id}`, clientId: 'c', redirectUri: 'https://a.example/cb', codeChallenge: 'x', used: false, expiresAt: later() });

it('a code is taken by exactly one of ten concurrent takers; the rest learn it was used', async () => {
  await state.flow.addCode(code(`code-${tag}`));
  const takes = await Promise.all(Array.from({ length: 10 }, () => state.flow.takeCode(`code-${tag}`)));
  expect(takes.filter((t) => t.doc && !t.reused)).toHaveLength(1);
  expect(takes.filter((t) => t.doc && t.reused)).toHaveLength(9);
  expect(await state.flow.takeCode(`code-${tag}`)).toMatchObject({ reused: true });
  expect(await state.flow.takeCode(`absent-${tag}`)).toEqual({ reused: false });
});

it('a refresh token is spent once under concurrency, and reads as used afterwards', async () => {
  const id = `rt-${tag}`;
  await state.flow.addRefresh({ _id: id, grantId: 'g', used: false, expiresAt: later() });
  const takes = await Promise.all(Array.from({ length: 10 }, () => state.flow.takeRefresh(id)));
  expect(takes.filter((t) => !t.reused)).toHaveLength(1);
  expect((await state.flow.refreshToken(id))?.used).toBe(true);
});

it('a token spent before the markers existed (used: true, no marker) counts as used', async () => {
  const id = `legacy-${tag}`;
  await state.flow.addRefresh({ _id: id, grantId: 'g', used: true, expiresAt: later() });
  expect(await state.flow.takeRefresh(id)).toMatchObject({ reused: true });
});

it('revoking one jti at once from many places neither fails nor doubles', async () => {
  const jti = `jti-${tag}`;
  await Promise.all(Array.from({ length: 8 }, () => state.flow.revokeJti(jti, later())));
  expect(await state.flow.isJtiRevoked(jti)).toBe(true);
  expect([...(await state.flow.revokedJtis(new Date()))].filter((j) => j === jti)).toHaveLength(1);
});

it('file registrations saved by many instances at once land once, with their fields', async () => {
  const now = new Date();
  const id = `file-client-${tag}`;
  await Promise.all(
    Array.from({ length: 8 }, (_v, i) =>
      state.clients.saveFromFile(id, { set: { name: `n${i % 2}`, scope: 'system/Observation.rs', source: 'file', updatedAt: now }, onInsert: { createdAt: now, disabled: false } }),
    ),
  );
  const all = (await state.clients.list()).filter((c) => c._id === id);
  expect(all).toHaveLength(1);
  expect(all[0]).toMatchObject({ scope: 'system/Observation.rs', source: 'file', disabled: false });
  expect(['n0', 'n1']).toContain(all[0].name);
});

it('key rings starting together on an empty key collection make one first key', async () => {
  const keysDb = client.db(`vigil_test_auth_keys_${tag}`);
  try {
    const rings = Array.from({ length: 4 }, () => new KeyRing(keysDb, () => new Date()));
    await Promise.all(rings.map((r) => r.init()));
    const kids = new Set(await Promise.all(rings.map(async (r) => (await r.signingKey()).kid)));
    expect(kids.size).toBe(1);
    expect(await authState(keysDb).keys.count()).toBe(1);
  } finally {
    await keysDb.dropDatabase();
  }
});
