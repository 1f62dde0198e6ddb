import { BUCKET_COLLECTION } from '../../../src/storage/query';
import { FHIR_JSON, type TestContext, createTestContext, heartRate, postBundle } from '../../support/context';

/**
 * The candidate buckets through the real write path: a committed Observation is searchable as
 * soon as its write is acknowledged (its entries are staged in memory at the commit point), and
 * stays so once the outbox has stored them; updates, deletes and transactions are followed.
 */
let ctx: TestContext;

beforeAll(async () => {
  // The searches below list the fixtures only: no derived NEWS2 Observations.
  ctx = await createTestContext({ env: { NEWS2_ENABLED: 'false' } });
});
afterAll(() => ctx.close());

const ids = (body: { entry?: { resource?: { id?: string } }[] }) => (body.entry ?? []).map((e) => e.resource?.id ?? '');

async function search(q: string): Promise<string[]> {
  const r = await ctx.request.get(`/fhir/Observation?${q}`).set('Accept', FHIR_JSON);
  expect(r.status).toBe(200);
  return ids(r.body);
}

async function create(patient: string, value: number, when: string): Promise<string> {
  const r = await ctx.request.post('/fhir/Observation').type(FHIR_JSON).send(heartRate(patient, value, when));
  expect(r.status).toBe(201);
  return r.body.id as string;
}

it('finds a write as soon as it is acknowledged, before and after the outbox stores its entries', async () => {
  // With the outbox stopped, the entries live only in memory (staged at the commit point).
  await ctx.vigil.outbox.stop();
  const a = await create('bh1', 61, '2024-07-01T08:00:00Z');
  const b = await create('bh1', 62, '2024-07-02T08:00:00Z');
  const c = await create('bh1', 63, '2024-07-03T08:00:00Z');
  expect(await search('patient=bh1&_sort=-date')).toEqual([c, b, a]);
  expect(await search('code=8867-4&date=2024-07-02')).toEqual([b]);
  expect(await ctx.db.collection(BUCKET_COLLECTION).countDocuments({ _id: { $regex: 'bh1' } } as never)).toBe(0);

  await ctx.vigil.outbox.drainNow();
  expect(await ctx.db.collection(BUCKET_COLLECTION).countDocuments({ _id: { $regex: 'bh1' } } as never)).toBeGreaterThan(0);
  expect(await search('patient=bh1&_sort=-date')).toEqual([c, b, a]);
  expect(await search('patient=bh1&date=ge2024-07-02&_sort=date')).toEqual([b, c]);
  ctx.vigil.outbox.start();
});

it('follows updates (a reading moved to another day or patient) and deletes', async () => {
  const a = await create('bh2', 70, '2024-07-01T08:00:00Z');
  const b = await create('bh2', 71, '2024-07-02T08:00:00Z');
  const moved = await ctx.request.put(`/fhir/Observation/${a}`).type(FHIR_JSON).send({ ...heartRate('bh2', 70, '2024-07-05T08:00:00Z'), id: a });
  expect(moved.status).toBe(200);
  expect(await search('patient=bh2&date=2024-07-01')).toEqual([]);
  expect(await search('patient=bh2&date=2024-07-05')).toEqual([a]);
  const other = await ctx.request.put(`/fhir/Observation/${b}`).type(FHIR_JSON).send({ ...heartRate('bh3', 71, '2024-07-02T08:00:00Z'), id: b });
  expect(other.status).toBe(200);
  expect(await search('patient=bh2&_sort=-date')).toEqual([a]);
  expect(await search('patient=bh3&_sort=-date')).toEqual([b]);
  expect([200, 204]).toContain((await ctx.request.delete(`/fhir/Observation/${a}`)).status);
  expect(await search('patient=bh2')).toEqual([]);
  expect(await search('code=8867-4&date=2024-07-05')).toEqual([]);
});

it('finds the Observations of a transaction, and $lastn sees them', async () => {
  const tx = await postBundle(ctx, [
    { fullUrl: 'urn:uuid:5d0e1a10-0000-4000-8000-000000000001', resource: heartRate('bh4', 90, '2024-07-09T09:00:00Z'), request: { method: 'POST', url: 'Observation' } },
    { fullUrl: 'urn:uuid:5d0e1a10-0000-4000-8000-000000000002', resource: heartRate('bh4', 91, '2024-07-09T10:00:00Z'), request: { method: 'POST', url: 'Observation' } },
  ]);
  expect(tx.status).toBe(200);
  const [first, second] = tx.body.entry.map((e: { response: { location: string } }) => /Observation\/([^/]+)/.exec(e.response.location)?.[1]);
  expect(await search('patient=bh4&date=2024-07-09&_sort=-date')).toEqual([second, first]);
  const last = await ctx.request.get('/fhir/Observation/$lastn?patient=bh4&max=1').set('Accept', FHIR_JSON);
  expect(last.status).toBe(200);
  expect(ids(last.body)).toEqual([second]);
});
