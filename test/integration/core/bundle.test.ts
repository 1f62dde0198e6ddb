import { createTestContext, FHIR_JSON, heartRate, patient, type TestContext } from '../../support/context';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => {
  await ctx.close();
});

const postBundle = (b: unknown) => ctx.request.post('/fhir').set('Content-Type', FHIR_JSON).send(JSON.stringify(b));

describe('transaction', () => {
  it('creates a patient and its observations with urn:uuid references rewritten', async () => {
    const res = await postBundle({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          fullUrl: 'urn:uuid:11111111-1111-4111-8111-111111111111',
          resource: patient('Txn', ['Tess'], 'MRN-TX-1'),
          request: { method: 'POST', url: 'Patient' },
        },
        {
          fullUrl: 'urn:uuid:22222222-2222-4222-8222-222222222222',
          resource: { ...heartRate('ignored', 88), subject: { reference: 'urn:uuid:11111111-1111-4111-8111-111111111111' } },
          request: { method: 'POST', url: 'Observation' },
        },
      ],
    });
    expect(res.status).toBe(200);
    expect(res.body.type).toBe('transaction-response');
    expect(res.body.entry).toHaveLength(2);
    const [p, o] = res.body.entry;
    expect(p.response.status).toMatch(/^201/);
    expect(p.response.location).toMatch(/^http:\/\/localhost\/fhir\/Patient\/[^/]+\/_history\/1$/);
    expect(o.resource.subject.reference).toBe(`Patient/${p.resource.id}`);
    const read = await ctx.request.get(`/fhir/Observation/${o.resource.id}`);
    expect(read.body.subject.reference).toBe(`Patient/${p.resource.id}`);
  });

  it('is all or nothing: one invalid entry leaves nothing behind', async () => {
    const before = await ctx.request.get('/fhir/Device/_history');
    const res = await postBundle({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: { resourceType: 'Device', status: 'active', serialNumber: 'TX-OK' }, request: { method: 'POST', url: 'Device' } },
        { resource: { resourceType: 'Device', status: 'not-a-status' }, request: { method: 'POST', url: 'Device' } },
      ],
    });
    expect(res.status).toBe(422);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue[0].diagnostics).toMatch(/entry 1/);
    const after = await ctx.request.get('/fhir/Device/_history');
    expect(after.body.entry.length).toBe(before.body.entry.length);
  });

  it('fails as a whole on a stale If-Match in any entry', async () => {
    const { body } = await ctx.request.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(JSON.stringify(patient('Ifm')));
    const res = await postBundle({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: { resourceType: 'Device', status: 'active' }, request: { method: 'POST', url: 'Device' } },
        { resource: { ...patient('Changed'), id: body.id }, request: { method: 'PUT', url: `Patient/${body.id}`, ifMatch: 'W/"7"' } },
      ],
    });
    expect(res.status).toBe(412);
    expect((await ctx.request.get(`/fhir/Patient/${body.id}`)).body.name[0].family).toBe('Ifm');
  });

  it('processes DELETE before POST before PUT before GET, and rejects two entries on one resource', async () => {
    const { body } = await ctx.request.post('/fhir/Device').set('Content-Type', FHIR_JSON).send(JSON.stringify({ resourceType: 'Device', status: 'active' }));
    const res = await postBundle({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { request: { method: 'GET', url: `Device/${body.id}` } },
        { request: { method: 'DELETE', url: `Device/${body.id}` } },
        { resource: { resourceType: 'Device', id: 'tx-put-1', status: 'inactive' }, request: { method: 'PUT', url: 'Device/tx-put-1' } },
      ],
    });
    expect(res.status).toBe(200);
    // The GET runs last, so it sees the deletion.
    expect(res.body.entry[0].response.status).toMatch(/^410/);
    expect(res.body.entry[1].response.status).toMatch(/^204/);
    expect(res.body.entry[2].response.status).toMatch(/^201/);

    const dup = await postBundle({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: { resourceType: 'Device', id: 'same', status: 'active' }, request: { method: 'PUT', url: 'Device/same' } },
        { resource: { resourceType: 'Device', id: 'same', status: 'inactive' }, request: { method: 'PUT', url: 'Device/same' } },
      ],
    });
    expect(dup.status).toBe(400);
  });

  it('rejects malformed Bundles clearly', async () => {
    expect((await postBundle({ resourceType: 'Patient' })).status).toBe(400);
    expect((await postBundle({ resourceType: 'Bundle', type: 'collection' })).status).toBe(400);
    const noReq = await postBundle({ resourceType: 'Bundle', type: 'transaction', entry: [{ resource: patient() }] });
    expect(noReq.status).toBe(400);
    expect(noReq.body.issue[0].expression).toEqual(['Bundle.entry[0].request']);
  });
});

describe('batch', () => {
  it('processes entries independently and reports each outcome', async () => {
    const res = await postBundle({
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { resource: heartRate('b1', 61), request: { method: 'POST', url: 'Observation' } },
        { resource: { resourceType: 'Observation', status: 'bogus' }, request: { method: 'POST', url: 'Observation' } },
        { request: { method: 'GET', url: 'Patient/does-not-exist' } },
        { request: { method: 'GET', url: 'metadata' } },
      ],
    });
    expect(res.status).toBe(200);
    expect(res.body.type).toBe('batch-response');
    const statuses = res.body.entry.map((e: { response: { status: string } }) => e.response.status.slice(0, 3));
    expect(statuses).toEqual(['201', '422', '404', '200']);
    expect(res.body.entry[1].response.outcome.resourceType).toBe('OperationOutcome');
  });
});
