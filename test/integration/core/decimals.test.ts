import { readFileSync } from 'node:fs';
import type { Bundle, Observation } from 'fhir/r4';
import { createTestContext, FHIR_JSON, type TestContext } from '../../support/context';
import { minify, resourceText } from '../../support/json-text';

/**
 * Decimals keep the sender's text on the wire (raw response text, never re-parsed JSON) through
 * every path that emits a resource, while search keeps comparing them as numbers.
 */

const EXAMPLE = readFileSync(require.resolve('hl7.fhir.r4.examples/Observation-decimal.json'), 'utf8');

/** What the server must answer for `sent` (minified) once it is stored as id/vid. */
function expected(sent: string, id: string, meta: unknown): string {
  const m = minify(sent);
  const rest = m.replace(/^\{"resourceType":"Observation",("id":"[^"]*",)?/, '');
  return `{"resourceType":"Observation","id":"${id}","meta":${JSON.stringify(meta)},${rest}`;
}

const OWN = (patient: string, id?: string) => `{
  "resourceType": "Observation",${id ? `\n  "id": "${id}",` : ''}
  "status": "final",
  "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
  "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
  "subject": {"reference": "Patient/${patient}"},
  "effectiveDateTime": "2024-05-01T10:00:00Z",
  "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "N"}]}],
  "valueQuantity": {"value": 6.0, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
  "referenceRange": [{"low": {"value": 1.00, "unit": "kg"}, "high": {"value": 100, "unit": "kg"}}],
  "component": [
    {"code": {"text": "a"}, "valueQuantity": {"value": 66.899999999999991}},
    {"code": {"text": "b"}, "valueQuantity": {"value": 1E-22}},
    {"code": {"text": "c"}, "valueQuantity": {"value": 0.0}},
    {"code": {"text": "d"}, "valueQuantity": {"value": -0.5}},
    {"code": {"text": "e"}, "valueQuantity": {"value": 12345678901234567890}}
  ]
}`;

let ctx: TestContext;
let seq = 0;
const unique = (p: string) => `${p}-${Date.now().toString(36)}-${++seq}`;

beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => {
  await ctx.close();
});

async function put(id: string, body: string) {
  return ctx.request.put(`/fhir/Observation/${id}`).set('Content-Type', FHIR_JSON).send(body);
}

describe('decimals round-trip exactly', () => {
  it('the official Observation-decimal example: update-as-create, read, vread, history, search, _elements', async () => {
    const id = unique('decimal');
    const sent = EXAMPLE.replace('"id": "decimal"', `"id": "${id}"`);
    const created = await put(id, sent);
    expect(created.status).toBe(201);
    const meta = (JSON.parse(created.text) as Observation).meta;
    const want = expected(sent, id, meta);
    expect(want).toContain('"value":1.00,');
    expect(want).toContain('"value":-1.000000000000000000E+245,');
    expect(created.text).toBe(want);
    expect((await ctx.request.get(`/fhir/Observation/${id}`)).text).toBe(want);
    expect((await ctx.request.get(`/fhir/Observation/${id}/_history/1`)).text).toBe(want);
    expect(resourceText((await ctx.request.get(`/fhir/Observation/${id}/_history`)).text, 'Observation', id)).toBe(want);
    expect(resourceText((await ctx.request.get(`/fhir/Observation?_id=${id}`)).text, 'Observation', id)).toBe(want);
    const shaped = (await ctx.request.get(`/fhir/Observation/${id}?_elements=component`)).text;
    expect(shaped).toContain(minify(EXAMPLE).slice(minify(EXAMPLE).indexOf('"component":')));
  });

  it('own cases through create, read, search with numeric comparison, $lastn and _summary', async () => {
    const patient = unique('pd');
    const body = OWN(patient);
    const created = await ctx.request.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(body);
    expect(created.status).toBe(201);
    const obs = JSON.parse(created.text) as Observation;
    const want = expected(body, obs.id!, obs.meta);
    for (const t of ['"value":6.0,', '"value":1.00,', '"value":66.899999999999991}', '"value":1E-22}', '"value":0.0}', '"value":-0.5}', '"value":100,', '"value":12345678901234567890}']) {
      expect(want).toContain(t);
    }
    expect(created.text).toBe(want);
    expect((await ctx.request.get(`/fhir/Observation/${obs.id}`)).text).toBe(want);
    // Stored: plain numbers in the FHIR JSON, the texts beside it (only those JS writes differently).
    const doc = await ctx.db.collection<{ _id: string; res: Observation; dec?: unknown }>('Observation').findOne({ _id: obs.id! });
    expect(doc?.res.valueQuantity?.value).toBe(6);
    expect(doc?.res.referenceRange?.[0].high?.value).toBe(100);
    expect(doc?.dec).toEqual([
      { p: '/valueQuantity/value', t: '6.0' },
      { p: '/referenceRange/0/low/value', t: '1.00' },
      { p: '/component/0/valueQuantity/value', t: '66.899999999999991' },
      { p: '/component/1/valueQuantity/value', t: '1E-22' },
      { p: '/component/2/valueQuantity/value', t: '0.0' },
      { p: '/component/4/valueQuantity/value', t: '12345678901234567890' },
    ]);
    const hist = await ctx.db.collection<{ _id: string; dec?: unknown }>('history').findOne({ _id: `Observation/${obs.id}/1` });
    expect(hist?.dec).toEqual(doc?.dec);
    // Search compares numbers (6.0 means [5.95, 6.05)), and answers the sender's text.
    for (const q of ['value-quantity=6', 'value-quantity=6.0', 'value-quantity=gt5.99', 'value-quantity=lt6.01']) {
      const found = await ctx.request.get(`/fhir/Observation?subject=Patient/${patient}&${q}`);
      expect(found.status).toBe(200);
      expect(resourceText(found.text, 'Observation', obs.id!)).toBe(want);
    }
    for (const q of ['value-quantity=6.1', 'value-quantity=gt6.05', 'value-quantity=6.00']) {
      const none = JSON.parse((await ctx.request.get(`/fhir/Observation?subject=Patient/${patient}&${q}`)).text) as Bundle;
      expect({ q, total: none.entry?.length ?? 0 }).toEqual({ q, total: q === 'value-quantity=6.00' ? 1 : 0 });
    }
    expect(resourceText((await ctx.request.get(`/fhir/Observation/$lastn?patient=${patient}&max=1`)).text, 'Observation', obs.id!)).toBe(want);
    const data = (await ctx.request.get(`/fhir/Observation/${obs.id}?_summary=data`)).text;
    expect(data).toContain(minify(body).slice(minify(body).indexOf('"valueQuantity":')));
  });

  it('a conditional create that finds its match answers the stored text', async () => {
    const patient = unique('pc');
    const body = OWN(patient);
    const first = await ctx.request.post('/fhir/Observation').set('Content-Type', FHIR_JSON).set('If-None-Exist', `subject=Patient/${patient}`).send(body);
    expect(first.status).toBe(201);
    const again = await ctx.request.post('/fhir/Observation').set('Content-Type', FHIR_JSON).set('If-None-Exist', `subject=Patient/${patient}`).send(body);
    expect(again.status).toBe(200);
    expect(again.text).toBe(first.text);
  });

  it('an update that changes only the spelling of a decimal is a new version with the new text', async () => {
    const id = unique('spell');
    const body = OWN(unique('ps'), id);
    expect((await put(id, body)).status).toBe(201);
    expect((await put(id, body)).headers.etag).toBe('W/"1"'); // identical: no new version
    const respelled = body.replace('"value": 6.0,', '"value": 6.00,');
    const r = await put(id, respelled);
    expect(r.headers.etag).toBe('W/"2"');
    const want = expected(respelled, id, (JSON.parse(r.text) as Observation).meta);
    expect(r.text).toBe(want);
    expect((await ctx.request.get(`/fhir/Observation/${id}`)).text).toBe(want);
    expect((await ctx.request.get(`/fhir/Observation/${id}/_history/1`)).text).toContain('"value":6.0,');
  });

  it('JSON Patch and FHIRPath Patch: the patched value takes the patch text, the others keep theirs', async () => {
    const id = unique('patch');
    const body = OWN(unique('pp'), id);
    expect((await put(id, body)).status).toBe(201);
    const jp = await ctx.request
      .patch(`/fhir/Observation/${id}`)
      .set('Content-Type', 'application/json-patch+json')
      .send('[{"op":"replace","path":"/valueQuantity/value","value":7.50},{"op":"add","path":"/component/0/valueQuantity/unit","value":"g"},{"op":"copy","from":"/referenceRange/0/low","path":"/referenceRange/0/high"}]');
    expect(jp.status).toBe(200);
    const afterJson = minify(body)
      .replace('"value":6.0,', '"value":7.50,')
      .replace('"value":66.899999999999991}', '"value":66.899999999999991,"unit":"g"}')
      .replace('"high":{"value":100,"unit":"kg"}', '"high":{"value":1.00,"unit":"kg"}');
    expect(jp.text).toBe(expected(afterJson, id, (JSON.parse(jp.text) as Observation).meta));

    const fp = await ctx.request
      .patch(`/fhir/Observation/${id}`)
      .set('Content-Type', FHIR_JSON)
      .send(
        '{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Observation.component[1].valueQuantity.value"},{"name":"value","valueDecimal":2.50}]}]}',
      );
    expect(fp.status).toBe(200);
    const afterFp = afterJson.replace('"value":1E-22}', '"value":2.50}');
    const want = expected(afterFp, id, (JSON.parse(fp.text) as Observation).meta);
    expect(fp.text).toBe(want);
    expect((await ctx.request.get(`/fhir/Observation/${id}`)).text).toBe(want);
  });

  it('batch and transaction responses (with urn:uuid references rewritten) keep the texts', async () => {
    const patient = unique('pb');
    const obs = minify(OWN(patient)).replace(`"reference":"Patient/${patient}"`, '"reference":"urn:uuid:9d1b3c2a-0000-4000-8000-000000000001"');
    const tx = `{"resourceType":"Bundle","type":"transaction","entry":[
      {"fullUrl":"urn:uuid:9d1b3c2a-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
      {"fullUrl":"urn:uuid:9d1b3c2a-0000-4000-8000-000000000002","resource":${obs},"request":{"method":"POST","url":"Observation"}}]}`;
    const r = await ctx.request.post('/fhir').set('Content-Type', FHIR_JSON).send(tx);
    expect(r.status).toBe(200);
    const b = JSON.parse(r.text) as Bundle;
    const created = b.entry![1].resource as Observation;
    const sent = obs.replace('urn:uuid:9d1b3c2a-0000-4000-8000-000000000001', created.subject!.reference!);
    const want = expected(sent, created.id!, created.meta);
    expect(resourceText(r.text, 'Observation', created.id!)).toBe(want);
    expect((await ctx.request.get(`/fhir/Observation/${created.id}`)).text).toBe(want);

    const batch = `{"resourceType":"Bundle","type":"batch","entry":[
      {"resource":${minify(OWN(patient))},"request":{"method":"POST","url":"Observation"}},
      {"request":{"method":"GET","url":"Observation/${created.id}"}}]}`;
    const br = await ctx.request.post('/fhir').set('Content-Type', FHIR_JSON).send(batch);
    expect(br.status).toBe(200);
    const bb = JSON.parse(br.text) as Bundle;
    const made = bb.entry![0].resource as Observation;
    expect(resourceText(br.text, 'Observation', made.id!)).toBe(expected(OWN(patient), made.id!, made.meta));
    expect(resourceText(br.text, 'Observation', created.id!)).toBe(want);
  });
});
