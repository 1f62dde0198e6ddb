import { createTestContext, FHIR_JSON, heartRate, patient, postBundle, type TestContext } from '../../support/context';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => {
  await ctx.close();
});

const SYS = 'urn:oid:1.2.36.146.595.217.0.1';
const create = (body: unknown, ifNoneExist?: string) => {
  const r = ctx.request.post('/fhir/Patient').set('Content-Type', FHIR_JSON);
  if (ifNoneExist) r.set('If-None-Exist', ifNoneExist);
  return r.send(JSON.stringify(body));
};

describe('conditional create', () => {
  it('creates once and returns the existing resource afterwards', async () => {
    const first = await create(patient('Cond', ['A'], 'C-1'), `identifier=${SYS}|C-1`);
    expect(first.status).toBe(201);
    const again = await create(patient('Cond', ['A'], 'C-1'), `identifier=${SYS}|C-1`);
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(first.body.id);
  });

  it('yields exactly one resource for concurrent identical requests', async () => {
    const results = await Promise.all(
      Array.from({ length: 6 }, () => create(patient('Race', ['R'], 'RACE-1'), `identifier=${SYS}|RACE-1`)),
    );
    expect(results.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 200, 201]);
    expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
    const found = await ctx.request.get(`/fhir/Patient?identifier=${encodeURIComponent(`${SYS}|RACE-1`)}`);
    expect(found.body.entry).toHaveLength(1);
  });

  it('answers 412 when the condition matches several resources, and 400 for a bad condition', async () => {
    await create(patient('Twin', ['A'], 'TWIN'));
    await create(patient('Twin', ['B'], 'TWIN'));
    const res = await create(patient('Twin', ['C'], 'TWIN'), `identifier=${SYS}|TWIN`);
    expect(res.status).toBe(412);
    const bad = await create(patient(), 'birthdate=not-a-date');
    expect(bad.status).toBe(400);
  });
});

describe('conditional update and delete', () => {
  it('updates the single match, creates when none, 412 when several', async () => {
    const created = await ctx.request
      .put(`/fhir/Patient?identifier=${encodeURIComponent(`${SYS}|CU-1`)}`)
      .set('Content-Type', FHIR_JSON)
      .send(JSON.stringify(patient('Upd', ['One'], 'CU-1')));
    expect(created.status).toBe(201);
    const updated = await ctx.request
      .put(`/fhir/Patient?identifier=${encodeURIComponent(`${SYS}|CU-1`)}`)
      .set('Content-Type', FHIR_JSON)
      .send(JSON.stringify(patient('Upd', ['Two'], 'CU-1')));
    expect(updated.status).toBe(200);
    expect(updated.body.id).toBe(created.body.id);
    expect(updated.body.meta.versionId).toBe('2');
    const several = await ctx.request
      .put(`/fhir/Patient?identifier=${encodeURIComponent(`${SYS}|TWIN`)}`)
      .set('Content-Type', FHIR_JSON)
      .send(JSON.stringify(patient('Twin', ['X'], 'TWIN')));
    expect(several.status).toBe(412);
  });

  it('deletes the single match and refuses several', async () => {
    const { body } = await create(patient('Del', ['D'], 'CD-1'));
    const del = await ctx.request.delete(`/fhir/Patient?identifier=${encodeURIComponent(`${SYS}|CD-1`)}`);
    expect(del.status).toBe(204);
    expect((await ctx.request.get(`/fhir/Patient/${body.id}`)).status).toBe(410);
    expect((await ctx.request.delete(`/fhir/Patient?identifier=${encodeURIComponent(`${SYS}|NOTHING`)}`)).status).toBe(204);
    expect((await ctx.request.delete(`/fhir/Patient?identifier=${encodeURIComponent(`${SYS}|TWIN`)}`)).status).toBe(412);
  });
});

describe('conditional references in transactions', () => {
  it('resolves Patient?identifier=... to the one match', async () => {
    const { body: p } = await create(patient('Ref', ['R'], 'REF-1'));
    const res = await postBundle(ctx, [
      { resource: { ...heartRate('x', 70), subject: { reference: `Patient?identifier=${SYS}|REF-1` } }, request: { method: 'POST', url: 'Observation' } },
    ]);
    expect(res.status).toBe(200);
    expect(res.body.entry[0].resource.subject.reference).toBe(`Patient/${p.id}`);
    const none = await postBundle(ctx, [
      { resource: { ...heartRate('x', 70), subject: { reference: `Patient?identifier=${SYS}|NOBODY` } }, request: { method: 'POST', url: 'Observation' } },
    ]);
    expect(none.status).toBe(412);
  });

  it('applies If-None-Exist inside a transaction', async () => {
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ resource: patient('Tx', ['I'], 'TXC-1'), request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${SYS}|TXC-1` } }],
    };
    const a = await ctx.request.post('/fhir').set('Content-Type', FHIR_JSON).send(JSON.stringify(bundle));
    const b = await ctx.request.post('/fhir').set('Content-Type', FHIR_JSON).send(JSON.stringify(bundle));
    expect(a.body.entry[0].response.status).toMatch(/^201/);
    expect(b.body.entry[0].response.status).toMatch(/^200/);
    expect(b.body.entry[0].resource.id).toBe(a.body.entry[0].resource.id);
  });
});
