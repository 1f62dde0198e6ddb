import type { Bundle, OperationOutcome, Patient } from 'fhir/r4';
import { createTestContext, FHIR_JSON, type TestContext } from '../../support/context';

/**
 * What the body parser refuses, over HTTP: 400 with an OperationOutcome naming the element,
 * nothing created or changed, and no object prototype ever touched.
 */

let ctx: TestContext;
let seq = 0;
const unique = (p: string) => `${p}${Date.now().toString(36)}x${++seq}`;

beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => {
  await ctx.close();
});

function expectRefused(res: { status: number; text: string }, code: string, path: string): void {
  expect(res.status).toBe(400);
  const oo = JSON.parse(res.text) as OperationOutcome;
  expect(oo.resourceType).toBe('OperationOutcome');
  expect(oo.issue).toHaveLength(1);
  expect(oo.issue[0].code).toBe('invalid');
  expect(oo.issue[0].details?.coding?.[0].code).toBe(code);
  expect(oo.issue[0].diagnostics).toContain(path);
  expect(oo.issue[0].expression).toEqual([path]);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();
}

async function patientsNamed(family: string): Promise<number> {
  const b = JSON.parse((await ctx.request.get(`/fhir/Patient?family:exact=${family}`)).text) as Bundle;
  return b.entry?.length ?? 0;
}

const post = (path: string, body: string, type = FHIR_JSON) => ctx.request.post(path).set('Content-Type', type).send(body);

describe('request bodies the parser refuses', () => {
  const cases: Array<[string, (family: string) => string, string, string]> = [
    ['a __proto__ key', (f) => `{"resourceType":"Patient","name":[{"family":"${f}","__proto__":{"polluted":true}}]}`, 'MSG_JSON_FORBIDDEN_KEY', 'Patient.name[0].__proto__'],
    ['a constructor key', (f) => `{"resourceType":"Patient","name":[{"family":"${f}"}],"constructor":{"prototype":{"polluted":true}}}`, 'MSG_JSON_FORBIDDEN_KEY', 'Patient.constructor'],
    ['a prototype key', (f) => `{"resourceType":"Patient","name":[{"family":"${f}","prototype":{"polluted":true}}]}`, 'MSG_JSON_FORBIDDEN_KEY', 'Patient.name[0].prototype'],
    ['a duplicate key', (f) => `{"resourceType":"Patient","name":[{"family":"${f}","given":["A"],"given":["B"]}]}`, 'MSG_JSON_DUPLICATE_KEY', 'Patient.name[0].given'],
    ['a lone surrogate', (f) => `{"resourceType":"Patient","name":[{"family":"${f}","given":["Fuzz\\ud800base"]}]}`, 'MSG_JSON_INVALID_TEXT', 'Patient.name[0].given[0]'],
    ['1e999', (f) => `{"resourceType":"Patient","name":[{"family":"${f}"}],"extension":[{"url":"http://example.org/x","valueDecimal":1e999}]}`, 'MSG_JSON_NUMBER_RANGE', 'Patient.extension[0].valueDecimal'],
    ['-1e999', (f) => `{"resourceType":"Patient","name":[{"family":"${f}"}],"extension":[{"url":"http://example.org/x","valueDecimal":-1e999}]}`, 'MSG_JSON_NUMBER_RANGE', 'Patient.extension[0].valueDecimal'],
  ];

  it.each(cases)('create with %s: 400 naming the element, nothing created', async (_name, body, code, path) => {
    const family = unique('Refused');
    expectRefused(await post('/fhir/Patient', body(family)), code, path);
    expectRefused(await ctx.request.put(`/fhir/Patient/${unique('p')}`).set('Content-Type', FHIR_JSON).send(body(family)), code, path);
    expect(await patientsNamed(family)).toBe(0);
  });

  it.each(cases)('a transaction whose entry has %s: 400, nothing created', async (_name, body, code, path) => {
    const family = unique('Refused');
    const ok = `{"resourceType":"Patient","name":[{"family":"${family}"}]}`;
    const tx = `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":${ok},"request":{"method":"POST","url":"Patient"}},{"resource":${body(family)},"request":{"method":"POST","url":"Patient"}}]}`;
    expectRefused(await post('/fhir', tx), code, `Bundle.entry[1].resource${path.slice('Patient'.length)}`);
    expect(await patientsNamed(family)).toBe(0);
  });

  it('the text of valid surrogate pairs and repeated identical keys is accepted unchanged', async () => {
    const family = unique('Pair');
    const res = await post('/fhir/Patient', `{"resourceType":"Patient","name":[{"family":"${family}","given":["\\ud83d\\ude00"]}],"active":true,"active":true}`);
    expect(res.status).toBe(201);
    expect((JSON.parse(res.text) as Patient).name?.[0].given).toEqual(['😀']);
  });
});

describe('patch documents the parser refuses', () => {
  let id: string;
  beforeAll(async () => {
    const res = await post('/fhir/Patient', `{"resourceType":"Patient","name":[{"family":"${unique('Patched')}"}]}`);
    expect(res.status).toBe(201);
    id = (JSON.parse(res.text) as Patient).id!;
  });

  async function unchanged(): Promise<void> {
    const r = await ctx.request.get(`/fhir/Patient/${id}`);
    expect(r.headers.etag).toBe('W/"1"');
  }

  it.each([
    ['[{"op":"add","path":"/__proto__/polluted","value":true}]', '[0].path'],
    ['[{"op":"replace","path":"/name/0/family","value":"x"},{"op":"add","path":"/constructor/prototype/polluted","value":true}]', '[1].path'],
    ['[{"op":"copy","from":"/__proto__","path":"/name/0/family"}]', '[0].from'],
  ])('JSON Patch %s: 400 naming %s', async (body, path) => {
    expectRefused(await ctx.request.patch(`/fhir/Patient/${id}`).set('Content-Type', 'application/json-patch+json').send(body), 'MSG_JSON_FORBIDDEN_KEY', path);
    await unchanged();
  });

  it.each([
    ['[{"op":"add","path":"/extension","value":[{"url":"http://example.org/x","__proto__":{"polluted":true}}]}]', 'MSG_JSON_FORBIDDEN_KEY', '[0].value[0].__proto__'],
    ['[{"op":"add","path":"/extension","value":[{"url":"http://example.org/x","valueDecimal":1e999}]}]', 'MSG_JSON_NUMBER_RANGE', '[0].value[0].valueDecimal'],
    ['[{"op":"replace","path":"/name/0/family","value":"a","value":"b"}]', 'MSG_JSON_DUPLICATE_KEY', '[0].value'],
  ])('JSON Patch value %s: 400 %s', async (body, code, path) => {
    expectRefused(await ctx.request.patch(`/fhir/Patient/${id}`).set('Content-Type', 'application/json-patch+json').send(body), code, path);
    await unchanged();
  });

  it('FHIRPath Patch naming __proto__ as the element to add: 400, unchanged', async () => {
    const body = '{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"add"},{"name":"path","valueString":"Patient"},{"name":"name","valueString":"__proto__"},{"name":"value","valueString":"x"}]}]}';
    expectRefused(await ctx.request.patch(`/fhir/Patient/${id}`).set('Content-Type', FHIR_JSON).send(body), 'MSG_JSON_FORBIDDEN_KEY', 'Parameters.parameter[0]');
    await unchanged();
  });
});
