import { randomBytes } from 'node:crypto';
import type { Bundle, BundleEntry, OperationOutcome } from 'fhir/r4';
import type { CommandStartedEvent } from 'mongodb';
import { createTestContext, FHIR_JSON, heartRate, patient, type TestContext } from '../../support/context';
import { ErasedMarks } from '../../../src/storage/erased-marks';

/**
 * Erased-compartment marks are read from each process's copy (src/storage/erased-marks.ts), not
 * once per commit. Two instances share one database: a write on one instance into a compartment
 * the OTHER instance has just marked or purged is refused, even though the writer's copy said
 * "not erased" a moment before (the mark waits out the copy's trust window).
 */
describe('erased-compartment marks across instances', () => {
  let a: TestContext;
  let b: TestContext;
  const tag = randomBytes(4).toString('hex');
  const env = { ALERTING_ENABLED: 'false', NEWS2_ENABLED: 'false' };

  beforeAll(async () => {
    a = await createTestContext({ env });
    b = await createTestContext({ env, dbName: a.config.dbName });
  });
  afterAll(async () => {
    await b.close();
    await a.close();
  });

  const post = (ctx: TestContext, body: unknown) => ctx.request.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(JSON.stringify(body));
  const refusedAsErased = (r: { status: number; body: OperationOutcome }) => ({ status: r.status, code: r.body.issue?.[0]?.code, erased: /was erased/.test(r.body.issue?.[0]?.diagnostics ?? '') });

  it('refuses a write on instance B right after instance A marked the compartment', async () => {
    const p = `mk-${tag}`;
    // B writes into the compartment: its copy of the marks now says "not erased".
    expect((await post(b, heartRate(p, 70))).status).toBe(201);
    await a.vigil.store.repository.erasure.mark(p);
    expect(refusedAsErased(await post(b, heartRate(p, 71)))).toEqual({ status: 422, code: 'invalid', erased: true });
    // A transaction into the compartment is refused whole, on either instance.
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: heartRate(`other-${tag}`, 60), request: { method: 'POST', url: 'Observation' } } as unknown as BundleEntry,
        { resource: heartRate(p, 72), request: { method: 'POST', url: 'Observation' } } as unknown as BundleEntry,
      ],
    };
    for (const ctx of [a, b]) {
      const r = await ctx.request.post('/fhir').set('Content-Type', FHIR_JSON).send(JSON.stringify(bundle));
      expect(refusedAsErased(r)).toEqual({ status: 422, code: 'invalid', erased: true });
    }
    const others = await b.request.get(`/fhir/Observation?subject=Patient/other-${tag}`);
    expect(others.status).toBe(200);
    expect(others.body.entry ?? []).toHaveLength(0);
  });

  it('after a $purge on A, B (which wrote a moment before) can no longer write into the compartment', async () => {
    const p = `pg-${tag}`;
    const pat = await b.request.put(`/fhir/Patient/${p}`).set('Content-Type', FHIR_JSON).send(JSON.stringify({ ...patient('Purged', ['Pia'], `MRN-${p}`), id: p }));
    expect(pat.status).toBe(201);
    const before = await post(b, heartRate(p, 80));
    expect(before.status).toBe(201);
    const purge = await a.request.post(`/fhir/Patient/${p}/$purge`);
    expect(purge.status).toBe(200);
    expect(refusedAsErased(await post(b, heartRate(p, 81)))).toEqual({ status: 422, code: 'invalid', erased: true });
    const revive = await b.request.put(`/fhir/Patient/${p}`).set('Content-Type', FHIR_JSON).send(JSON.stringify({ ...patient('Purged', ['Pia'], `MRN-${p}`), id: p }));
    expect(refusedAsErased(revive)).toEqual({ status: 422, code: 'invalid', erased: true });
    // What B wrote before the purge is gone on B too.
    expect((await b.request.get(`/fhir/Observation/${before.body.id ?? /Observation\/([^/]+)/.exec(before.headers.location)![1]}`)).status).toBe(404);
    expect((await b.request.get(`/fhir/Patient/${p}`)).status).toBe(404);
  });
});

describe('ErasedMarks copy', () => {
  let ctx: TestContext;
  let counting = false;
  const finds: CommandStartedEvent[] = [];
  beforeAll(async () => {
    ctx = await createTestContext({ onCommand: (e) => counting && e.commandName === 'find' && finds.push(e) });
  });
  afterAll(async () => ctx.close());

  it('reads the marks once while its copy is trusted, and knows new marks after the window', async () => {
    const name = `marks_${randomBytes(3).toString('hex')}`;
    const col = ctx.db.collection<{ _id: string }>(name);
    await col.insertOne({ _id: 'Patient/gone' });
    // A window no test run outlasts: the count below cannot depend on timing.
    const trusted = new ErasedMarks(col, 3_600_000);
    counting = true;
    expect(await trusted.firstErased(['Patient/a', 'Patient/gone'])).toBe('Patient/gone');
    expect(await trusted.firstErased(['Patient/b'])).toBeUndefined();
    expect(await trusted.firstErased(['Patient/c'])).toBeUndefined();
    expect(await trusted.firstErased([])).toBeUndefined();
    counting = false;
    // Background pollers of the app share the client: only reads of this collection count.
    expect(finds.filter((e) => (e.command as { find?: string }).find === name)).toHaveLength(1);
    // A copy trusted for no time reads every time, and sees a mark made after it was built.
    const untrusted = new ErasedMarks(col, 0);
    expect(await untrusted.firstErased(['Patient/late'])).toBeUndefined();
    await col.insertOne({ _id: 'Patient/late' });
    expect(await untrusted.firstErased(['Patient/late'])).toBe('Patient/late');
  });
});
