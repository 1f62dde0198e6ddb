import { createTestContext, FHIR_JSON, patient, postBundle, type TestContext } from '../../support/context';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => {
  await ctx.close();
});

type Part = Record<string, unknown> & { name: string };
const op = (...part: Part[]) => ({ name: 'operation', part });
const params = (...parameter: unknown[]) => JSON.stringify({ resourceType: 'Parameters', parameter });
const type = (t: string): Part => ({ name: 'type', valueCode: t });
const path = (p: string): Part => ({ name: 'path', valueString: p });

async function newPatient(): Promise<string> {
  const body = { ...patient('Patchy', ['Ann', 'Beth']), telecom: [{ system: 'phone', value: '1' }, { system: 'email', value: 'a@b.c' }] };
  const r = await ctx.request.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(JSON.stringify(body));
  return r.body.id as string;
}

const patch = (id: string, body: string) => ctx.request.patch(`/fhir/Patient/${id}`).set('Content-Type', FHIR_JSON).send(body);

describe('FHIRPath Patch', () => {
  it('replaces, adds, inserts, moves and deletes at the elements the paths name', async () => {
    const id = await newPatient();
    const res = await patch(
      id,
      params(
        op(type('replace'), path('Patient.birthDate'), { name: 'value', valueDate: '1980-02-03' }),
        op(type('add'), path('Patient'), { name: 'name', valueString: 'deceasedBoolean' }, { name: 'value', valueBoolean: false }),
        op(type('insert'), path('Patient.name[0].given'), { name: 'index', valueInteger: 1 }, { name: 'value', valueString: 'Cleo' }),
        op(type('move'), path('Patient.telecom'), { name: 'source', valueInteger: 1 }, { name: 'destination', valueInteger: 0 }),
        op(type('delete'), path("Patient.identifier.where(value='MRN-1')")),
        op(type('add'), path('Patient'), { name: 'name', valueString: 'address' }, { name: 'value', valueAddress: { city: 'Leeds' } }),
      ),
    );
    expect(res.status).toBe(200);
    expect(res.body.birthDate).toBe('1980-02-03');
    expect(res.body.deceasedBoolean).toBe(false);
    expect(res.body.name[0].given).toEqual(['Ann', 'Cleo', 'Beth']);
    expect(res.body.telecom.map((t: { system: string }) => t.system)).toEqual(['email', 'phone']);
    expect(res.body.identifier).toBeUndefined();
    expect(res.body.address).toEqual([{ city: 'Leeds' }]);
    expect(res.body.meta.versionId).toBe('2');
  });

  it('refuses ambiguous paths, bad operations and results that are not valid FHIR', async () => {
    const id = await newPatient();
    const ambiguous = await patch(id, params(op(type('replace'), path('Patient.name.given'), { name: 'value', valueString: 'X' })));
    expect(ambiguous.status).toBe(422);
    expect(ambiguous.body.issue[0].diagnostics).toMatch(/matched 2 elements/);
    const unknown = await patch(id, params(op(type('explode'), path('Patient'))));
    expect(unknown.status).toBe(400);
    const badPath = await patch(id, params(op(type('delete'), path('Patient.name[[['))));
    expect(badPath.status).toBe(400);
    const invalid = await patch(id, params(op(type('replace'), path('Patient.gender'), { name: 'value', valueCode: 'robot' })));
    expect(invalid.status).toBe(422);
    expect((await ctx.request.get(`/fhir/Patient/${id}`)).body.meta.versionId).toBe('1');
  });

  it('works inside a transaction', async () => {
    const id = await newPatient();
    const res = await postBundle(ctx, [
      {
        resource: { resourceType: 'Parameters', parameter: [op(type('replace'), path('Patient.active'), { name: 'value', valueBoolean: false })] },
        request: { method: 'PATCH', url: `Patient/${id}` },
      },
    ]);
    expect(res.status).toBe(200);
    expect((await ctx.request.get(`/fhir/Patient/${id}`)).body.active).toBe(false);
  });
});
