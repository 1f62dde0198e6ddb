import type { Bundle, OperationOutcome, Resource } from 'fhir/r4';
import { FHIR_JSON, type TestContext, createTestContext } from '../../support/context';
import { all } from './fixtures';

/** Search over HTTP through the real app: GET, POST _search, Prefer: handling, paging links, $lastn. */
let ctx: TestContext;
beforeAll(async () => {
  // Counts of Observations below are of the fixtures only: no derived NEWS2 Observations.
  ctx = await createTestContext({ env: { NEWS2_ENABLED: 'false' } });
  for (const r of all as Resource[]) {
    const res = await ctx.request.put(`/fhir/${r.resourceType}/${r.id}`).set('Content-Type', FHIR_JSON).send(JSON.stringify(r));
    expect([200, 201]).toContain(res.status);
  }
});
afterAll(() => ctx.close());

const ids = (b: Bundle) => (b.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource?.id).sort();
const get = (path: string, headers: Record<string, string> = {}) => ctx.request.get(path).set({ Accept: FHIR_JSON, ...headers });

test('GET /fhir/Patient?given=eve finds Eve and Evelyn', async () => {
  const res = await get('/fhir/Patient?given=eve');
  expect(res.status).toBe(200);
  expect(res.body.resourceType).toBe('Bundle');
  expect(res.body.type).toBe('searchset');
  expect(ids(res.body)).toEqual(['eve', 'evelyn']);
  expect(res.body.entry[0].fullUrl).toMatch(/^http:\/\/localhost\/fhir\/Patient\/eve/);
});

test('the RPM query: a patient vital sign in a time window, newest first', async () => {
  const res = await get(`/fhir/Observation?patient=eve&code=${encodeURIComponent('http://loinc.org|8867-4')}&date=ge2013-01-14&date=lt2013-01-15&_sort=-date`);
  expect(res.status).toBe(200);
  expect(res.body.entry.map((e: { resource: Resource }) => e.resource.id)).toEqual(['hr2', 'hr1']);
});

test('writes are searchable at once, with a value in another unit', async () => {
  const created = await ctx.request
    .post('/fhir/Observation')
    .set('Content-Type', FHIR_JSON)
    .send(JSON.stringify({ resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '29463-7' }] }, subject: { reference: 'Patient/eve' }, valueQuantity: { value: 61.5, system: 'http://unitsofmeasure.org', code: 'kg' } }));
  expect(created.status).toBe(201);
  const res = await get(`/fhir/Observation?value-quantity=${encodeURIComponent('61500|http://unitsofmeasure.org|g')}`);
  expect(ids(res.body)).toEqual([created.body.id]);
});

test('POST /fhir/Observation/_search with a form body equals the GET', async () => {
  const res = await ctx.request
    .post('/fhir/Observation/_search')
    .set({ 'Content-Type': 'application/x-www-form-urlencoded', Accept: FHIR_JSON })
    .send('code=8867-4&value-quantity=gt100');
  expect(res.status).toBe(200);
  expect(ids(res.body)).toEqual(['hr2']);
});

test('unknown parameter: lenient by default (outcome entry, clean self link), 400 with Prefer: handling=strict', async () => {
  const lenient = await get('/fhir/Patient?gender=female&bogus=1');
  expect(lenient.status).toBe(200);
  expect(ids(lenient.body)).toEqual(['eve', 'evelyn']);
  const outcome = lenient.body.entry.find((e: { search: { mode: string } }) => e.search.mode === 'outcome').resource as OperationOutcome;
  expect(outcome.issue[0].code).toBe('not-supported');
  expect(outcome.issue[0].diagnostics).toContain('bogus');
  expect(lenient.body.link.find((l: { relation: string }) => l.relation === 'self').url).toBe('http://localhost/fhir/Patient?gender=female');

  const strict = await get('/fhir/Patient?gender=female&bogus=1', { Prefer: 'handling=strict' });
  expect(strict.status).toBe(400);
  expect(strict.body.resourceType).toBe('OperationOutcome');
  expect(strict.body.issue[0].code).toBe('invalid');
  expect(strict.body.issue[0].diagnostics).toContain('bogus');
});

test.each([
  ['/fhir/Observation?date=2013-02-30', 'date'],
  ['/fhir/Observation?value-quantity=abc', 'value-quantity'],
  ['/fhir/Observation?date=xx2013', 'date'],
  ['/fhir/Patient?_count=-5', '_count'],
  ['/fhir/Observation?_cursor=forged', '_cursor'],
])('malformed %s is a 400 OperationOutcome naming the parameter', async (path, name) => {
  const res = await get(path);
  expect(res.status).toBe(400);
  expect(res.body.resourceType).toBe('OperationOutcome');
  expect(res.body.issue[0].severity).toBe('error');
  expect(res.body.issue[0].code).toBe('invalid');
  expect(res.body.issue[0].diagnostics).toContain(name);
});

test('next links page through every result once', async () => {
  let res = await get('/fhir/Observation?_count=3&_sort=date');
  const seen: string[] = [];
  for (;;) {
    expect(res.status).toBe(200);
    seen.push(...ids(res.body).map(String));
    const next = res.body.link.find((l: { relation: string }) => l.relation === 'next')?.url as string | undefined;
    if (!next) break;
    res = await get(next.replace('http://localhost', ''));
  }
  expect(seen.length).toBe(new Set(seen).size);
  expect(seen.length).toBe(9);
});

test('_include, _revinclude and chaining over HTTP', async () => {
  const inc = await get('/fhir/Observation?_id=hr3&_include=Observation:subject&_include=Observation:device');
  expect(inc.body.entry.filter((e: { search: { mode: string } }) => e.search.mode === 'include').map((e: { resource: Resource }) => e.resource.id).sort()).toEqual(['dev1', 'evelyn']);
  const chained = await get('/fhir/Observation?subject:Patient.name=evelyn');
  expect(ids(chained.body)).toEqual(['hr3']);
  const has = await get('/fhir/Patient?_has:Observation:patient:interpretation=H');
  expect(ids(has.body)).toEqual(['eve']);
});

test('GET /fhir/Observation/$lastn', async () => {
  const res = await get('/fhir/Observation/$lastn?patient=eve&code=8867-4');
  expect(res.status).toBe(200);
  expect(ids(res.body)).toEqual(['hr2']);
});

test('system-level search with _type', async () => {
  const res = await get('/fhir?_type=Device&_count=10');
  expect(res.status).toBe(200);
  expect(ids(res.body)).toEqual(['dev1']);
});

test('_summary=count and _total=accurate', async () => {
  const count = await get('/fhir/Observation?code=8867-4&_summary=count');
  expect(count.body.total).toBe(3);
  expect(count.body.entry).toBeUndefined();
  const total = await get('/fhir/Observation?code=8867-4&_total=accurate&_count=1');
  expect(total.body.total).toBe(3);
  expect(total.body.entry).toHaveLength(1);
});
