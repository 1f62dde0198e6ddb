import pino from 'pino';
import supertest from 'supertest';
import { createVigil, type Vigil } from '../../../src/app';
import { createTestContext, FHIR_JSON, heartRate, type TestContext } from '../../support/context';
import { downloadAll, kickoff, pathOf, waitForManifest } from './helpers';

/** Export files expire; two server instances on one database share the jobs without doubling any. */
let ctx: TestContext;
let second: Vigil;
let offsetMs = 0;
const clock = () => new Date(Date.now() + offsetMs);

beforeAll(async () => {
  ctx = await createTestContext({ clock, env: { BULK_EXPORT_TTL_SECONDS: '10', BULK_CHUNK_RESOURCES: '3', NEWS2_ENABLED: 'false' } });
  second = await createVigil({ config: ctx.config, db: ctx.db, logger: pino({ level: 'silent' }), clock });
  await second.start();
  for (let i = 0; i < 10; i++) {
    const r = await ctx.request.put(`/fhir/Observation/lc-${i}`).set('Content-Type', FHIR_JSON).send(JSON.stringify({ ...heartRate('lc1', 60 + i), id: `lc-${i}` }));
    expect(r.status).toBe(201);
  }
});
afterAll(async () => {
  await second?.stop();
  await ctx?.close();
});

test('two instances: every job is claimed once, every status and file is served by either', async () => {
  const other = supertest(second.app);
  const statuses = await Promise.all([0, 1, 2, 3].map(() => kickoff(ctx.request, '/fhir/$export?_type=Observation')));
  for (const s of statuses) {
    const m = await waitForManifest(other, s);
    const files = await downloadAll(ctx.request, m);
    expect(files.get('Observation')!.map((o) => o.id).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `lc-${i}`).sort());
    const job = pathOf(s).split('/').pop()!;
    // One lease chain per job, claimed first at link 1. The other instance may still take a link
    // after the holder finished and released (its list of open jobs was read before), but then
    // finds the job finished and lets go: the job ran once and stays completed.
    const links = await ctx.db.collection('bulk_lease_links').find({ name: `bulk-job:${job}` }).toArray();
    expect(links.map((l) => l.n).sort((a, b) => a - b)[0]).toBe(1);
    const again = await other.get(pathOf(s)).set('Accept', 'application/json');
    expect(again.status).toBe(200);
  }
});

test('finished files expire after BULK_EXPORT_TTL_SECONDS and are then swept', async () => {
  const s = await kickoff(ctx.request, '/fhir/$export?_type=Observation');
  const m = await waitForManifest(ctx.request, s);
  expect((await ctx.request.get(pathOf(m.output[0].url))).status).toBe(200);
  offsetMs += 11_000;
  expect((await ctx.request.get(pathOf(m.output[0].url))).status).toBe(404);
  expect((await ctx.request.get(pathOf(s))).status).toBe(404);
  const job = pathOf(s).split('/').pop()!;
  const deadline = Date.now() + 20_000;
  while ((await ctx.db.collection('bulk_jobs').countDocuments({ _id: job as never })) > 0 || (await ctx.db.collection('bulk_chunks').countDocuments({ job })) > 0) {
    if (Date.now() > deadline) throw new Error('the expired job was not swept');
    await new Promise((r) => setTimeout(r, 100));
  }
});
