import { createTestContext, FHIR_JSON, type TestContext } from '../../support/context';

/** Practitioner is served like any type (users sign in as one): the usual interactions and search. */
let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => {
  await ctx.close();
});

const doctor = (family: string, npi: string) => ({
  resourceType: 'Practitioner',
  active: true,
  identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: npi }],
  name: [{ family, given: ['Ada'], prefix: ['Dr'] }],
  telecom: [{ system: 'email', value: `${family.toLowerCase()}@clinic.example.org` }],
});

it('creates, reads, updates, searches, shows history of and deletes a Practitioner', async () => {
  const c = await ctx.request.post('/fhir/Practitioner').type(FHIR_JSON).send(JSON.stringify(doctor('Lovelace', '1234567893')));
  expect(c.status).toBe(201);
  const id = c.body.id as string;
  expect((await ctx.request.get(`/fhir/Practitioner/${id}`)).body.name[0].family).toBe('Lovelace');
  const u = await ctx.request.put(`/fhir/Practitioner/${id}`).type(FHIR_JSON).send(JSON.stringify({ ...doctor('Lovelace', '1234567893'), id, active: false }));
  expect(u.status).toBe(200);
  expect(u.body.meta.versionId).toBe('2');
  const byName = await ctx.request.get('/fhir/Practitioner?family=lovel');
  expect(byName.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([id]);
  const byId = await ctx.request.get('/fhir/Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|1234567893&active=false');
  expect(byId.body.entry).toHaveLength(1);
  expect((await ctx.request.get(`/fhir/Practitioner/${id}/_history`)).body.total).toBe(2);
  expect((await ctx.request.delete(`/fhir/Practitioner/${id}`)).status).toBe(204);
  expect((await ctx.request.get(`/fhir/Practitioner/${id}`)).status).toBe(410);
});

it('refuses an invalid Practitioner with an OperationOutcome', async () => {
  const r = await ctx.request.post('/fhir/Practitioner').type(FHIR_JSON).send(JSON.stringify({ resourceType: 'Practitioner', gender: 'robot' }));
  expect(r.status).toBe(422);
  expect(r.body.resourceType).toBe('OperationOutcome');
  expect(r.body.issue[0].expression).toEqual(['Practitioner.gender']);
});

it('is announced in the CapabilityStatement with its search parameters', async () => {
  const cs = (await ctx.request.get('/fhir/metadata')).body;
  const p = cs.rest[0].resource.find((r: { type: string }) => r.type === 'Practitioner');
  expect(p.interaction.map((i: { code: string }) => i.code)).toEqual(expect.arrayContaining(['read', 'create', 'update', 'delete', 'search-type']));
  expect(p.searchParam.map((s: { name: string }) => s.name)).toEqual(expect.arrayContaining(['name', 'family', 'identifier']));
});
