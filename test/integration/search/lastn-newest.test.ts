import type { CommandStartedEvent } from 'mongodb';
import type { Bundle, Observation } from 'fhir/r4';
import { FHIR_JSON, type TestContext, createTestContext, heartRate } from '../../support/context';

/**
 * `$lastn` of one patient is answered from the patient's newest bucket
 * (src/storage/query/newest.ts) with one bucket read and no Observation read, and must give
 * exactly what the newest readings per code are: with ties, readings sent late, undated ones,
 * one code under two categories, filters on category, code and date, every `max` around the
 * bucket's depth, and after updates and deletes (which send the reader back to the walk).
 * Expected answers are computed here from the current documents.
 */
let ctx: TestContext;
let bucketReads = 0;
let observationReads = 0;

beforeAll(async () => {
  ctx = await createTestContext({
    env: { NEWS2_ENABLED: 'false', ALERTING_ENABLED: 'false' },
    onCommand: (e: CommandStartedEvent) => {
      const find = (e.command as { find?: unknown }).find;
      if (e.commandName === 'find' && find === 'search_buckets') bucketReads++;
      if (e.commandName === 'find' && find === 'Observation') observationReads++;
    },
  });
});
afterAll(() => ctx.close());

const LAB = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] };

function reading(patient: string, code: string, when: string | undefined, category?: 'lab'): Record<string, unknown> {
  const r = heartRate(patient, 70, when ?? '2024-01-01T00:00:00Z') as Record<string, unknown>;
  r.code = { coding: [{ system: 'http://loinc.org', code }] };
  if (category === 'lab') r.category = [LAB];
  if (when === undefined) delete r.effectiveDateTime;
  return r;
}

async function post(r: Record<string, unknown>): Promise<string> {
  const res = await ctx.request.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(r);
  expect(res.status).toBe(201);
  return res.body.id as string;
}

async function lastn(q: string): Promise<string[]> {
  const r = await ctx.request.get(`/fhir/Observation/$lastn?${q}`).set('Accept', FHIR_JSON);
  expect(r.status).toBe(200);
  return ((r.body as Bundle).entry ?? []).map((e) => e.resource?.id ?? '');
}

/** The newest `max` per code of the patient's current readings that `keep` accepts, in `$lastn` order. */
async function expected(patient: string, max: number, keep: (o: Observation) => boolean = () => true): Promise<string[]> {
  const docs = await ctx.db.collection('Observation').find({ deleted: false }).toArray();
  const mine = docs.map((d) => d.res as Observation).filter((o) => o.subject?.reference === `Patient/${patient}` && keep(o));
  const at = (o: Observation) => (o.effectiveDateTime ? Date.parse(o.effectiveDateTime) : -Infinity);
  mine.sort((a, b) => (at(a) !== at(b) ? (at(a) > at(b) ? -1 : 1) : (a.id ?? '') < (b.id ?? '') ? -1 : 1));
  const per = new Map<string, number>();
  return mine
    .filter((o) => {
      const c = o.code.coding?.[0].code ?? '';
      per.set(c, (per.get(c) ?? 0) + 1);
      return (per.get(c) ?? 0) <= max;
    })
    .map((o) => o.id ?? '');
}

const isLab = (o: Observation) => o.category?.[0]?.coding?.[0]?.code === 'laboratory';

test('one patient: exact newest readings per code from one bucket read, for every max and filter', async () => {
  const p = 'nw1';
  // Heart rate: five readings, two at the same instant, one sent late with an older time.
  for (const t of ['2024-03-01T10:00:00Z', '2024-03-01T11:00:00Z', '2024-03-01T12:00:00Z', '2024-03-01T12:00:00Z']) await post(reading(p, '8867-4', t));
  await post(reading(p, '8867-4', '2024-02-28T09:00:00Z'));
  // The same code as a laboratory result, newer than every vital sign: a second signature.
  await post(reading(p, '8867-4', '2024-03-02T08:00:00Z', 'lab'));
  // Four glucose results (laboratory), two SpO2 readings, one reading without a date.
  for (const t of ['2024-03-01T01:00:00Z', '2024-03-01T02:00:00Z', '2024-03-01T03:00:00Z', '2024-03-01T04:00:00Z']) await post(reading(p, '2339-0', t, 'lab'));
  for (const t of ['2024-03-01T05:00:00Z', '2024-03-01T06:00:00Z']) await post(reading(p, '59408-5', t));
  await post(reading(p, '9279-1', undefined));
  // Another patient's readings stay out.
  await post(reading('nw2', '8867-4', '2024-03-05T00:00:00Z'));

  const cases: [string, (o: Observation) => boolean][] = [
    [`patient=${p}`, () => true],
    [`patient=${p}&category=vital-signs`, (o) => !isLab(o)],
    [`patient=${p}&category=laboratory`, isLab],
    [`patient=${p}&code=http://loinc.org|8867-4`, (o) => o.code.coding?.[0].code === '8867-4'],
    [`subject=Patient/${p}&date=lt2024-03-01T11:30:00Z`, (o) => !!o.effectiveDateTime && Date.parse(o.effectiveDateTime) < Date.parse('2024-03-01T11:30:00Z')],
  ];
  for (const [q, keep] of cases) {
    for (const max of [1, 2, 3, 4]) expect(await lastn(`${q}&max=${max}`)).toEqual(await expected(p, max, keep));
  }

  // The plain query, max=1: one bucket read, no Observation read (the bucket carries the documents).
  const want = await expected(p, 1);
  bucketReads = 0;
  observationReads = 0;
  expect(await lastn(`patient=${p}&max=1`)).toEqual(want);
  expect(bucketReads).toBe(1);
  expect(observationReads).toBe(0);
});

test('after an update and a delete the answer stays exact (the reader walks the buckets instead)', async () => {
  const p = 'nw3';
  const ids: string[] = [];
  for (const t of ['2024-04-01T10:00:00Z', '2024-04-01T11:00:00Z', '2024-04-01T12:00:00Z', '2024-04-01T13:00:00Z']) ids.push(await post(reading(p, '8867-4', t)));
  const spo2 = [await post(reading(p, '59408-5', '2024-04-01T09:00:00Z')), await post(reading(p, '59408-5', '2024-04-01T09:30:00Z'))];
  expect(await lastn(`patient=${p}&max=1`)).toEqual(await expected(p, 1));
  // The newest heart rate moves back in time, below readings the bucket no longer keeps.
  const moved = { ...reading(p, '8867-4', '2024-03-01T00:00:00Z'), id: ids[3] };
  expect((await ctx.request.put(`/fhir/Observation/${ids[3]}`).set('Content-Type', FHIR_JSON).send(moved)).status).toBe(200);
  expect([200, 204]).toContain((await ctx.request.delete(`/fhir/Observation/${spo2[1]}`)).status);
  const want = await expected(p, 1);
  bucketReads = 0;
  expect(await lastn(`patient=${p}&max=1`)).toEqual(want);
  expect(bucketReads).toBeGreaterThan(1);
  for (const max of [1, 2, 3, 4]) expect(await lastn(`patient=${p}&max=${max}`)).toEqual(await expected(p, max));
  const got = await lastn(`patient=${p}&max=1`);
  expect(got).toContain(ids[2]);
  expect(got).toContain(spo2[0]);
  // Readings arriving afterwards are seen at once (staged) and the answer stays exact.
  const fresh = await post(reading(p, '8867-4', '2024-04-02T00:00:00Z'));
  expect(await lastn(`patient=${p}&max=1`)).toContain(fresh);
  expect(await lastn(`patient=${p}&max=2`)).toEqual(await expected(p, 2));
});
