import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CodeableConcept, OperationOutcome, Resource } from 'fhir/r4';
import { createTestContext, FHIR_JSON, heartRate, type TestContext } from '../support/context';

/**
 * Every official HL7 R4 example of Patient, Device and Observation is accepted over HTTP and reads
 * back equal apart from meta (which the server owns).
 */
const DIR = join(require.resolve('hl7.fhir.r4.examples/package.json'), '..');
const EXAMPLES: [string, Resource][] = readdirSync(DIR)
  .filter((f) => /^(Patient|Device|Observation)-.*\.json$/.test(f))
  .sort()
  .map((f) => [f, JSON.parse(readFileSync(join(DIR, f), 'utf8')) as Resource]);

const withoutMeta = (r: Resource): Omit<Resource, 'meta'> => {
  const { meta: _meta, ...rest } = r;
  return rest;
};

/**
 * The server adds an interpretation to vital signs that arrive without one, marked with the
 * derived-interpretation extension (ig/StructureDefinition-derived-interpretation.json). That
 * documented enrichment is the only other difference allowed; everything the client sent is kept.
 */
const DERIVED = 'http://vigil-fhir.org/fhir/StructureDefinition/derived-interpretation';
type Interpreted = { interpretation?: CodeableConcept[]; component?: Interpreted[] };
const isDerived = (c: CodeableConcept): boolean => (c.extension ?? []).some((e) => e.url === DERIVED);

function withoutDerived<T extends Interpreted>(r: T): T {
  const out: T = { ...r };
  if (out.interpretation) {
    const kept = out.interpretation.filter((c) => !isDerived(c));
    if (kept.length > 0) out.interpretation = kept;
    else delete out.interpretation;
  }
  if (out.component) out.component = out.component.map((c) => withoutDerived(c));
  return out;
}

let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext();
});

afterAll(async () => {
  await ctx?.close();
});

test('all 88 examples are here', () => {
  expect(EXAMPLES).toHaveLength(88);
});

describe.each(EXAMPLES)('%s', (_file, example) => {
  const url = `/fhir/${example.resourceType}/${example.id}`;

  test('PUT creates it and a read returns it unchanged apart from meta', async () => {
    const put = await ctx.request.put(url).set('Content-Type', FHIR_JSON).send(JSON.stringify(example));
    expect(put.status).toBe(201);
    const read = await ctx.request.get(url).set('Accept', FHIR_JSON);
    expect(read.status).toBe(200);
    const body = read.body as Resource;
    expect(withoutMeta(withoutDerived(body as Interpreted & Resource))).toEqual(withoutMeta(example));
    expect(body.meta?.versionId).toBe('1');
    // Client meta other than versionId/lastUpdated (profiles, tags, security) is kept.
    const { versionId: _v, lastUpdated: _l, ...clientMeta } = example.meta ?? {};
    expect(body.meta).toMatchObject(clientMeta);
  });

  test('$validate says All OK', async () => {
    const res = await ctx.request
      .post(`/fhir/${example.resourceType}/$validate`)
      .set('Content-Type', FHIR_JSON)
      .send(JSON.stringify(example));
    expect(res.status).toBe(200);
    const oo = res.body as OperationOutcome;
    expect(oo.issue).toEqual([expect.objectContaining({ severity: 'information', diagnostics: 'All OK' })]);
  });
});

describe('invalid content over HTTP', () => {
  const post = (type: string, body: unknown) =>
    ctx.request.post(`/fhir/${type}`).set('Content-Type', FHIR_JSON).send(JSON.stringify(body));

  const issueOf = (body: unknown) => (body as OperationOutcome).issue[0];

  test('a wrong element type is a 422 pointing at the element, and nothing is stored', async () => {
    const obs = heartRate('p1', 72);
    (obs.valueQuantity as Record<string, unknown>).value = '72';
    const res = await post('Observation', obs);
    expect(res.status).toBe(422);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(issueOf(res.body).expression).toEqual(['Observation.valueQuantity.value']);
    expect(issueOf(res.body).details?.coding?.[0].code).toBe('MSG_WRONG_TYPE');
    expect(await ctx.db.collection('Observation').countDocuments({ 'res.valueQuantity.value': '72' })).toBe(0);
  });

  test('an unknown element is a 422 naming it', async () => {
    const res = await post('Patient', { resourceType: 'Patient', name: [{ family: 'Doe', nickname: 'JD' }] });
    expect(res.status).toBe(422);
    expect(issueOf(res.body).expression).toEqual(['Patient.name[0].nickname']);
    expect(issueOf(res.body).diagnostics).toContain("'nickname'");
  });

  test('an empty array is a 422', async () => {
    const res = await post('Patient', { resourceType: 'Patient', name: [{ family: 'Doe', given: [] }] });
    expect(res.status).toBe(422);
    expect(issueOf(res.body).expression).toEqual(['Patient.name[0].given']);
  });

  test('a resourceType other than the URL type is a 400', async () => {
    const res = await post('Observation', { resourceType: 'Patient' });
    expect(res.status).toBe(400);
    expect(issueOf(res.body).details?.coding?.[0].code).toBe('MSG_RESOURCE_TYPE_MISMATCH');
  });

  test('a body without resourceType is a 400', async () => {
    const res = await post('Patient', { name: [{ family: 'Doe' }] });
    expect(res.status).toBe(400);
    expect(issueOf(res.body).details?.coding?.[0].code).toBe('MSG_RESOURCE_TYPE_MISSING');
  });

  test('PUT with a body id other than the URL id is a 400', async () => {
    const res = await ctx.request
      .put('/fhir/Patient/a1')
      .set('Content-Type', FHIR_JSON)
      .send(JSON.stringify({ resourceType: 'Patient', id: 'b2', active: true }));
    expect(res.status).toBe(400);
    expect(issueOf(res.body).details?.coding?.[0].code).toBe('MSG_RESOURCE_ID_MISMATCH');
  });

  test('PUT without a body id is a 400', async () => {
    const res = await ctx.request
      .put('/fhir/Patient/a1')
      .set('Content-Type', FHIR_JSON)
      .send(JSON.stringify({ resourceType: 'Patient', active: true }));
    expect(res.status).toBe(400);
    expect(issueOf(res.body).details?.coding?.[0].code).toBe('MSG_RESOURCE_ID_MISSING');
  });

  test('$validate reports every problem with 200', async () => {
    const res = await ctx.request
      .post('/fhir/Patient/$validate')
      .set('Content-Type', FHIR_JSON)
      .send(JSON.stringify({ resourceType: 'Patient', gender: 'M', birthDate: '1974-02-30', colour: 'red' }));
    expect(res.status).toBe(200);
    const paths = (res.body as OperationOutcome).issue.map((i) => i.expression?.[0]).sort();
    expect(paths).toEqual(['Patient.birthDate', 'Patient.colour', 'Patient.gender']);
  });
});
