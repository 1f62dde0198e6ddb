import { randomBytes } from 'node:crypto';
import { createTestContext, FHIR_JSON, heartRate, type TestContext } from '../../support/context';

/**
 * Search entries staged at a commit point (src/storage/query/bucket-store.ts) are stored by the
 * instance holding the outbox lease. The instance that committed them, when it is another one,
 * must not keep them in memory for good: once the outbox is done with those versions it lets
 * them go (the gauge `vigil_search_entries_staged` returns to nothing), and its readers find the
 * same resources in the stored entries.
 */
describe('staged search entries on an instance that does not hold the outbox lease', () => {
  const TOKEN = 'metrics-token-staged-0123456789ab';
  const env = { ALERTING_ENABLED: 'false', NEWS2_ENABLED: 'false', METRICS_TOKEN: TOKEN };
  let a: TestContext;
  let b: TestContext;
  const patient = `st-${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    a = await createTestContext({ env });
    b = await createTestContext({ env, dbName: a.config.dbName });
    // B never holds the outbox lease: A stores every entry.
    await b.vigil.outbox.stop();
  });
  afterAll(async () => {
    await b.close();
    await a.close();
  });

  async function staged(ctx: TestContext): Promise<number> {
    const r = await ctx.request.get('/metrics').set('Authorization', `Bearer ${TOKEN}`);
    expect(r.status).toBe(200);
    const line = /^vigil_search_entries_staged (\S+)$/m.exec(r.text);
    expect(line).not.toBeNull();
    return Number(line![1]);
  }

  async function until(what: string, f: () => Promise<boolean>): Promise<void> {
    const end = Date.now() + 30_000;
    while (!(await f())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const post = (ctx: TestContext, value: number, at: string) =>
    ctx.request.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(JSON.stringify(heartRate(patient, value, at)));

  it('lets them go once the lease holder stored them, and still finds every resource', async () => {
    const ferret = b.vigil.search.executor.engine === 'ferretdb';
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await post(b, 60 + i, `2024-05-01T10:${String(i).padStart(2, '0')}:00Z`);
      expect(r.status).toBe(201);
      ids.push(r.body.id);
    }
    // Staged on B at once (its own readers see them), on the embedded engine.
    const before = await staged(b);
    if (ferret) expect(before).toBeGreaterThan(0);
    else expect(before).toBe(0);
    await until('A to drain the outbox', async () => (await a.vigil.outbox.oldestPendingAt()) === undefined);
    // Later commits on B start the sweep, which lets go of what is older than a second and
    // stored: the 20 go, the few commits of the last second stay (bounded wait on the condition).
    let minute = 0;
    await until('B to let go of what A stored', async () => {
      await new Promise((r) => setTimeout(r, 300));
      const r = await post(b, 90, `2024-05-01T11:${String(minute++ % 60).padStart(2, '0')}:00Z`);
      expect(r.status).toBe(201);
      ids.push(r.body.id);
      return (await staged(b)) <= before / 2;
    });
    // What B's readers find comes from the stored entries now, and it is all there.
    const found = await b.request.get(`/fhir/Observation?patient=Patient/${patient}&code=http://loinc.org|8867-4&_count=100&_elements=id`);
    expect(found.status).toBe(200);
    expect(new Set(found.body.entry.map((e: { resource: { id: string } }) => e.resource.id))).toEqual(new Set(ids));
  });
});
