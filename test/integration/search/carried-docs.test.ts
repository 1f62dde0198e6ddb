import type { CommandStartedEvent } from 'mongodb';
import { FHIR_JSON, type TestContext, createTestContext, heartRate } from '../../support/context';

/**
 * A query pinning a patient and a code is answered from the patient-and-code buckets, whose
 * entries carry the current documents (src/storage/query/buckets.ts), so it reads no Observation
 * by `_id`. A carried document must always be the current version: updates, moves to another
 * patient or code, and deletes make the reader fetch the id again ("touched"), both while the
 * entries are only staged in memory and once the outbox has stored them; the sender's decimal
 * texts survive the carrying.
 */
let ctx: TestContext;
let observationReads = 0;

beforeAll(async () => {
  ctx = await createTestContext({
    env: { NEWS2_ENABLED: 'false', ALERTING_ENABLED: 'false' },
    onCommand: (e: CommandStartedEvent) => {
      if (e.commandName === 'find' && (e.command as { find?: unknown }).find === 'Observation') observationReads++;
    },
  });
});
afterAll(() => ctx.close());

interface Hit {
  id: string;
  text: string;
}

/** Bundle entries as ids and their resource text exactly as sent on the wire. */
async function searchText(q: string): Promise<{ hits: Hit[]; raw: string }> {
  const r = await ctx.request.get(`/fhir/Observation?${q}`).set('Accept', FHIR_JSON).buffer(true).parse((res, cb) => {
    let s = '';
    res.setEncoding('utf8');
    res.on('data', (c: string) => (s += c));
    res.on('end', () => cb(null, s));
  });
  expect(r.status).toBe(200);
  const raw = r.body as string;
  const bundle = JSON.parse(raw) as { entry?: { resource: { id: string } }[] };
  return { hits: (bundle.entry ?? []).map((e) => ({ id: e.resource.id, text: JSON.stringify(e.resource) })), raw };
}

const ids = async (q: string) => (await searchText(q)).hits.map((h) => h.id);

async function create(patient: string, valueText: string, when: string): Promise<string> {
  const body = JSON.stringify(heartRate(patient, 0, when)).replace('"value":0', `"value":${valueText}`);
  const r = await ctx.request.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(body);
  expect(r.status).toBe(201);
  return r.body.id as string;
}

async function put(id: string, resource: Record<string, unknown>): Promise<void> {
  const r = await ctx.request.put(`/fhir/Observation/${id}`).type(FHIR_JSON).send({ ...resource, id });
  // 201 when it writes a deleted resource again.
  expect([200, 201]).toContain(r.status);
}

/** Vital-sign values of a search's hits, by id. */
async function values(q: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const h of (await searchText(q)).hits) out[h.id] = (JSON.parse(h.text) as { valueQuantity: { value: number } }).valueQuantity.value;
  return out;
}

const HR = 'code=http://loinc.org|8867-4';

it('answers patient + code without reading Observations by _id, keeping the sender\'s decimal text', async () => {
  const a = await create('cd1', '72.50', '2024-08-01T08:00:00Z');
  const b = await create('cd1', '1.00E2', '2024-08-01T09:00:00Z');
  const c = await create('cd1', '64', '2024-08-02T08:00:00Z');
  await ctx.vigil.outbox.drainNow();
  for (const q of [`subject=Patient/cd1&${HR}&_sort=-date`, `patient=cd1&${HR}&date=ge2024-08-01&date=lt2024-08-02&_sort=date`]) {
    observationReads = 0;
    const { hits, raw } = await searchText(q);
    expect(observationReads).toBe(0);
    expect(hits.length).toBeGreaterThan(0);
    expect(raw).toContain('"value":72.50');
    expect(raw).toContain('"value":1.00E2');
  }
  expect(await ids(`subject=Patient/cd1&${HR}&_sort=-date`)).toEqual([c, b, a]);
  // Without a code: the pair buckets of every code the patient's directory lists; $lastn too.
  const earlier = await create('cd1', '97.0', '2024-08-02T07:00:00Z');
  const r = await ctx.request.post('/fhir/Observation').type(FHIR_JSON).send({ ...heartRate('cd1', 1, '2024-08-02T06:00:00Z'), code: { coding: [{ system: 'http://loinc.org', code: '59408-5' }] } });
  expect(r.status).toBe(201);
  await ctx.vigil.outbox.drainNow();
  observationReads = 0;
  expect(await ids('patient=cd1&_sort=-date&_count=3')).toEqual([c, earlier, r.body.id]);
  const last = await ctx.request.get('/fhir/Observation/$lastn?patient=cd1&max=1').set('Accept', FHIR_JSON);
  expect(last.status).toBe(200);
  expect((last.body.entry as { resource: { id: string } }[]).map((e) => e.resource.id).sort()).toEqual([c, r.body.id].sort());
  expect(observationReads).toBe(0);
  // The same resources as a read gives (same text, same version).
  for (const id of [a, b, c]) {
    const read = await ctx.request.get(`/fhir/Observation/${id}`).set('Accept', FHIR_JSON);
    const hit = (await searchText(`subject=Patient/cd1&${HR}`)).hits.find((h) => h.id === id);
    expect(hit && JSON.parse(hit.text)).toEqual(read.body);
  }
});

const SPO2 = 'code=http://loinc.org|59408-5';
const LOW_UCUM = `${SPO2}&value-quantity=lt90|http://unitsofmeasure.org|%25`;

async function spo2(patient: string, value: number, when: string): Promise<string> {
  const r = await ctx.request.post('/fhir/Observation').type(FHIR_JSON).send(spo2Body(patient, value, when));
  expect(r.status).toBe(201);
  return r.body.id as string;
}

function spo2Body(patient: string, value: number, when: string): Record<string, unknown> {
  return {
    ...heartRate(patient, value, when),
    code: { coding: [{ system: 'http://loinc.org', code: '59408-5' }] },
    valueQuantity: { value, unit: '%', system: 'http://unitsofmeasure.org', code: '%' },
  };
}

it('answers the population query (code and value threshold) from the value bands without reading by _id', async () => {
  const low1 = await spo2('cd-pop1', 85, '2024-08-05T08:00:00Z');
  const low2 = await spo2('cd-pop2', 89, '2024-08-05T09:00:00Z');
  await spo2('cd-pop1', 97, '2024-08-05T10:00:00Z');
  await spo2('cd-pop2', 90, '2024-08-05T11:00:00Z');
  await ctx.vigil.outbox.drainNow();
  observationReads = 0;
  expect((await ids(LOW_UCUM)).sort()).toEqual([low1, low2].sort());
  expect(await ids(`${SPO2}&value-quantity=lt86|http://unitsofmeasure.org|%25&date=2024-08-05&_sort=-date`)).toEqual([low1]);
  expect(observationReads).toBe(0);
  // A bound on the value as sent cannot tell base-unit bands apart: the code's hour buckets serve it.
  expect((await ids(`${SPO2}&value-quantity=lt90&date=2024-08-05`)).sort()).toEqual([low1, low2].sort());
});

describe.each([
  ['staged in memory (outbox stopped)', true],
  ['stored by the outbox', false],
])('carried documents follow later versions, %s', (_label, stopped) => {
  const p = stopped ? 'cd-s' : 'cd-o';
  beforeEach(async () => {
    if (stopped) await ctx.vigil.outbox.stop();
  });
  afterEach(async () => {
    if (stopped) ctx.vigil.outbox.start();
    await ctx.vigil.outbox.drainNow();
  });
  const settle = async () => {
    if (!stopped) await ctx.vigil.outbox.drainNow();
  };

  it('an update of the value on the same day', async () => {
    const a = await create(`${p}2`, '80', '2024-08-03T08:00:00Z');
    await settle();
    await put(a, heartRate(`${p}2`, 99, '2024-08-03T08:00:00Z'));
    await settle();
    expect(await values(`patient=${p}2&${HR}&_sort=-date`)).toEqual({ [a]: 99 });
    expect(await values(`patient=${p}2&${HR}&value-quantity=lt90`)).toEqual({});
  });

  it('a value that becomes abnormal, and one that no longer is (the population query)', async () => {
    // The population query spans patients: each run has a day of its own.
    const day = stopped ? '2024-08-06' : '2024-08-07';
    const was = await spo2(`${p}5`, 80, `${day}T08:00:00Z`);
    const now = await spo2(`${p}5`, 96, `${day}T09:00:00Z`);
    await settle();
    await put(was, spo2Body(`${p}5`, 95, `${day}T08:00:00Z`));
    await put(now, spo2Body(`${p}5`, 81, `${day}T09:00:00Z`));
    await settle();
    expect(await values(`${LOW_UCUM}&date=${day}`)).toEqual({ [now]: 81 });
    expect(await values(`${SPO2}&value-quantity=gt94&date=${day}`)).toEqual({ [was]: 95 });
  });

  it('a move to another patient, another code, and a delete', async () => {
    const moved = await create(`${p}3`, '70', '2024-08-04T08:00:00Z');
    const recoded = await create(`${p}3`, '71', '2024-08-04T09:00:00Z');
    const gone = await create(`${p}3`, '72', '2024-08-04T10:00:00Z');
    const kept = await create(`${p}3`, '73', '2024-08-04T11:00:00Z');
    await settle();
    await put(moved, heartRate(`${p}4`, 70, '2024-08-04T08:00:00Z'));
    await put(recoded, { ...heartRate(`${p}3`, 71, '2024-08-04T09:00:00Z'), code: { coding: [{ system: 'http://loinc.org', code: '9279-1' }] } });
    expect([200, 204]).toContain((await ctx.request.delete(`/fhir/Observation/${gone}`)).status);
    await settle();
    expect(await ids(`patient=${p}3&${HR}&_sort=-date`)).toEqual([kept]);
    expect(await ids(`patient=${p}4&${HR}&_sort=-date`)).toEqual([moved]);
    expect(await ids(`patient=${p}3&code=http://loinc.org|9279-1`)).toEqual([recoded]);
    // Written again after the delete: found once, as its newest version.
    await put(gone, heartRate(`${p}3`, 55, '2024-08-04T10:00:00Z'));
    await settle();
    expect(await values(`patient=${p}3&${HR}&_sort=-date`)).toEqual({ [kept]: 73, [gone]: 55 });
  });
});
