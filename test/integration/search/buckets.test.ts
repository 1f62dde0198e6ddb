import type { Bundle, Observation, Resource } from 'fhir/r4';
import { allowAllPolicy, type AccessPolicy } from '../../../src/auth/types';
import { BUCKET_COLLECTION } from '../../../src/storage/query';
import { generateObservations, generatePatient, rng } from '../../../bench/search/generate';
import { BASE, type SearchFixture, createSearchFixture } from './helpers';

/**
 * The candidate buckets (src/storage/query/buckets.ts) must give exactly what a scan gives: same
 * matches, same order, same pages, also with stale entries (updated and deleted resources),
 * readings spanning days, readings without a date, and a restricted access policy. Expected
 * answers come from the in-memory evaluator over the stored current versions.
 */
let f: SearchFixture;
const START = Date.parse('2024-05-01T00:00:00Z');
const STEP = 5 * 3600_000; // every 5 h: readings spread over ~9 days per patient

beforeAll(async () => {
  f = await createSearchFixture('buckets');
  const rand = rng(3);
  const resources: Resource[] = [];
  for (let p = 1; p <= 4; p++) {
    resources.push(...generatePatient(p, rand));
    resources.push(...generateObservations(p, 45, rand, START, STEP));
  }
  const hr = (id: string, patient: string, extra: Partial<Observation>): Observation => ({
    resourceType: 'Observation',
    id,
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
    subject: { reference: `Patient/${patient}` },
    valueQuantity: { value: 70, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
    ...extra,
  });
  // A reading without a date, one over a 40-day period (the `long` bucket), one over two days.
  resources.push(hr('undated', 'rpm-p1', {}));
  resources.push(hr('long', 'rpm-p1', { effectivePeriod: { start: '2024-04-20T00:00:00Z', end: '2024-05-30T00:00:00Z' } }));
  resources.push(hr('span', 'rpm-p1', { effectivePeriod: { start: '2024-05-03T20:00:00Z', end: '2024-05-04T04:00:00Z' } }));
  // Either side of a day (and six-hour, and hour) bucket edge, a millisecond apart.
  resources.push(hr('edge-before', 'rpm-p1', { effectiveDateTime: '2024-05-04T23:59:59.999Z' }));
  resources.push(hr('edge-midnight', 'rpm-p1', { effectiveDateTime: '2024-05-05T00:00:00.000Z' }));
  await f.put(...resources);
  // Stale entries: moved to another patient, to another day, to another code; and deleted.
  await f.put(hr('rpm-o1-3', 'rpm-p2', { effectiveDateTime: '2024-05-02T01:00:00Z' }));
  await f.put(hr('rpm-o1-4', 'rpm-p1', { effectiveDateTime: '2024-05-08T09:30:00Z' }));
  await f.put({ ...hr('rpm-o1-6', 'rpm-p1', { effectiveDateTime: '2024-05-02T06:00:00Z' }), code: { coding: [{ system: 'http://loinc.org', code: '9279-1' }] } } as Observation);
  await f.db.collection('Observation').updateOne({ _id: 'rpm-o1-10' as never }, { $set: { deleted: true } });
  // Stale values: entries recorded a desaturated heart rate that is no longer (or is now) current.
  const at = (v: number) => ({ effectiveDateTime: '2024-05-03T10:00:00Z', valueQuantity: { value: v, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' } });
  await f.put(hr('val-was-low', 'rpm-p3', at(30)), hr('val-now-low', 'rpm-p4', at(70)));
  await f.put(hr('val-was-low', 'rpm-p3', at(70)), hr('val-now-low', 'rpm-p4', at(31)));
}, 120_000);
afterAll(() => f.close());

async function current(): Promise<Resource[]> {
  return (await f.db.collection('Observation').find({ deleted: false }).toArray()).map((d) => d.res as Resource);
}

function dateOf(r: Resource): number {
  const o = r as Observation;
  const s = o.effectiveDateTime ?? o.effectivePeriod?.start;
  return s ? Date.parse(s) : -Infinity;
}

/** Expected ids in the query's order (`-date`, `date` or `_id`), from the in-memory evaluator. */
async function expected(query: string, policy: AccessPolicy = allowAllPolicy): Promise<string[]> {
  const criteria = f.service.compileCriteria('Observation', query.split('&').filter((p) => !p.startsWith('_')).join('&'));
  const idx = (r: Resource) => f.service.index(r);
  const hits = (await current()).filter((r) => f.service.matches(criteria, r) && policy.canRead(r, idx(r).comp));
  const byId = (a: Resource, b: Resource) => ((a.id ?? '') < (b.id ?? '') ? -1 : 1);
  if (query.includes('_sort=-date')) hits.sort((a, b) => dateOf(b) - dateOf(a) || byId(a, b));
  else if (query.includes('_sort=date')) hits.sort((a, b) => dateOf(a) - dateOf(b) || byId(a, b));
  else hits.sort(byId);
  return hits.map((r) => r.id ?? '');
}

async function allPages(query: string, policy?: AccessPolicy): Promise<string[]> {
  const seen: string[] = [];
  let b: Bundle = await f.search('Observation', query, { handling: 'strict', policy });
  for (let i = 0; i < 100; i++) {
    seen.push(...(b.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource?.id ?? ''));
    const next = b.link?.find((l) => l.relation === 'next')?.url;
    if (!next) break;
    b = await f.search('Observation', new URL(next).searchParams.toString(), { handling: 'strict', policy });
  }
  return seen;
}

async function usesBuckets(query: string): Promise<boolean> {
  const x = await f.service.explain({ type: 'Observation', params: [...new URLSearchParams(query).entries()], policy: allowAllPolicy, baseUrl: BASE, handling: 'strict' });
  return x.buckets !== undefined;
}

const QUERIES = [
  'subject=Patient/rpm-p1&_sort=-date&_count=7',
  'subject=Patient/rpm-p1&_sort=date&_count=6',
  'patient=rpm-p1&_count=9',
  'patient=rpm-p1&code=http://loinc.org|8867-4&date=ge2024-05-02&date=lt2024-05-05&_sort=-date&_count=3',
  'subject=Patient/rpm-p1&date=2024-05-04&_sort=-date',
  'subject=Patient/rpm-p1&date=sa2024-05-06&_sort=date&_count=4',
  'subject=Patient/rpm-p1&date=eb2024-05-03T12:00&_sort=-date&_count=4',
  'subject=Patient/rpm-p1&date=ne2024-05-04&_sort=-date&_count=10',
  'patient=rpm-p1,rpm-p2&code=8867-4&_sort=-date&_count=5',
  'patient=rpm-p2&value-quantity=gt90&_sort=-date&_count=4',
  'code=http://loinc.org|8867-4&date=ge2024-05-02&date=lt2024-05-03&_count=3',
  'code=59408-5&date=ge2024-05-01&date=le2024-05-04&value-quantity=lt96|http://unitsofmeasure.org|%&_sort=-date&_count=2',
  'code=8867-4,9279-1&date=2024-05-02&_sort=date',
  'patient=rpm-p3&date=ap2024-05-02T01:00&_count=4',
  // The population query: one code and a value threshold across patients, all time and windowed.
  'code=8867-4&value-quantity=lt60&_count=3',
  'code=http://loinc.org|59408-5&value-quantity=lt96|http://unitsofmeasure.org|%&_count=4',
  'code=8867-4&value-quantity=gt90&_sort=-date&_count=4',
  'code=8867-4&value-quantity=ge100&_sort=date&_count=3',
  'code=59408-5&value-quantity=le95&date=ge2024-05-03&_count=2',
  'code=8867-4&value-quantity=lt60&date=ge2024-05-03&date=lt2024-05-04&_sort=-date',
  'code=8867-4&date=ge2024-01-01&_sort=-date&_count=20',
  'code=8867-4,9279-1&_count=25',
  'code=8867-4&_sort=date&_count=15',
];

describe('candidate buckets', () => {
  test.each(QUERIES)('%s: every page, in order, equals the in-memory answer', async (q) => {
    expect(await usesBuckets(q)).toBe(true);
    const want = await expected(q);
    expect(want.length).toBeGreaterThan(0);
    expect(await allPages(q)).toEqual(want);
  });

  test('stale and special entries are handled: moved, re-dated, re-coded, deleted, undated, spanning', async () => {
    const p1 = await allPages('subject=Patient/rpm-p1&_sort=-date&_count=50');
    expect(p1).not.toContain('rpm-o1-3'); // moved to rpm-p2
    expect(p1).not.toContain('rpm-o1-10'); // deleted
    expect(p1[p1.length - 1]).toBe('undated'); // a missing date sorts lowest
    expect(p1).toContain('long');
    expect(await allPages('patient=rpm-p2&date=2024-05-02&_sort=-date')).toContain('rpm-o1-3');
    // Overlapping 4 May (eq would need the whole reading within the day).
    expect(await allPages('subject=Patient/rpm-p1&date=ge2024-05-04T00:00&date=lt2024-05-05&_sort=-date')).toEqual(expect.arrayContaining(['span', 'long']));
    expect(await allPages('subject=Patient/rpm-p1&date=2024-05-04&_sort=-date')).not.toContain('span');
    expect(await allPages('code=9279-1&date=2024-05-02')).toContain('rpm-o1-6');
    const hrOn2 = await allPages('code=8867-4&patient=rpm-p1&date=2024-05-02');
    expect(hrOn2).not.toContain('rpm-o1-6');
  });

  test('strict date bounds at a bucket edge: lt midnight leaves the day starting then out, gt the instant before keeps it', async () => {
    const lt = 'date=lt2024-05-05T00:00:00.000Z';
    const gt = 'date=gt2024-05-04T23:59:59.999Z';
    const queries = [
      `subject=Patient/rpm-p1&code=8867-4&date=ge2024-05-04&${lt}&_sort=-date`,
      `subject=Patient/rpm-p1&${gt}&date=lt2024-05-06&_sort=date`,
      `code=8867-4&date=ge2024-05-04&${lt}&_count=50`,
      `code=8867-4&value-quantity=lt75&${gt}&date=lt2024-05-06&_count=50`,
      `code=8867-4&value-quantity=lt75&date=ge2024-05-04&${lt}&_sort=-date`,
    ];
    // The window the walk reads ends a millisecond before the strict bound: the day starting there is not read.
    const x = await f.service.explain({ type: 'Observation', params: [...new URLSearchParams(queries[0]).entries()], policy: allowAllPolicy, baseUrl: BASE, handling: 'strict' });
    expect(x.buckets?.window).toEqual({ lo: Date.parse('2024-05-04T00:00:00Z'), hi: Date.parse('2024-05-05T00:00:00Z') - 1 });
    for (const q of queries) {
      expect(await usesBuckets(q)).toBe(true);
      const got = await allPages(q);
      expect(got).toEqual(await expected(q));
      expect(got).toContain(q.includes(lt) ? 'edge-before' : 'edge-midnight');
      expect(got).not.toContain(q.includes(lt) ? 'edge-midnight' : 'edge-before');
    }
  });

  test('no pinned patient or code scans instead', async () => {
    expect(await usesBuckets('status=final&date=2024-05-02')).toBe(false);
    expect(await usesBuckets('value-quantity=lt60')).toBe(false);
    const q = 'status=final&date=ge2024-05-08&_sort=-date&_count=20';
    expect(await allPages(q)).toEqual(await expected(q));
  });

  test('the population query checks the current value, not the entry\'s', async () => {
    const low = await allPages('code=8867-4&value-quantity=lt40&_count=2');
    expect(low).toContain('val-now-low');
    expect(low).not.toContain('val-was-low');
    expect(await allPages('code=8867-4&value-quantity=lt40&_sort=-date&_count=2')).toEqual(low.length > 0 ? await expected('code=8867-4&value-quantity=lt40&_sort=-date') : []);
    // Undated and spanning readings are found without a window, and not with one.
    const all = await allPages('code=8867-4&_count=50');
    expect(all).toEqual(expect.arrayContaining(['undated', 'long', 'span']));
    expect(await allPages('code=8867-4&date=ge2024-05-03&_count=50')).not.toContain('undated');
  });

  test('counts (_summary=count, _total=accurate) agree with the in-memory answer', async () => {
    for (const q of ['subject=Patient/rpm-p1', 'code=8867-4&date=ge2024-05-02&date=lt2024-05-04', 'code=8867-4&value-quantity=lt60']) {
      const b = await f.search('Observation', `${q}&_summary=count`, { handling: 'strict' });
      expect(b.total).toBe((await expected(q)).length);
      const t = await f.search('Observation', `${q}&_total=accurate&_count=2`, { handling: 'strict' });
      expect(t.total).toBe((await expected(q)).length);
    }
  });

  test('a patient-restricted policy sees only its compartment through the buckets', async () => {
    const only1: AccessPolicy = {
      ...allowAllPolicy,
      readCond: () => ({ k: 'eq', f: 'comp', v: 'Patient/rpm-p1' }),
      canRead: (_r, comp) => comp.includes('Patient/rpm-p1'),
    };
    const q = 'patient=rpm-p1,rpm-p2&code=8867-4&_sort=-date&_count=6';
    const got = await allPages(q, only1);
    expect(got).toEqual(await expected(q, only1));
    expect(got).not.toContain('rpm-o1-3');
  });

  test('$lastn from the buckets equals the newest reading per code, computed in memory', async () => {
    for (const max of [1, 3]) {
      const b = await f.service.lastn({
        type: 'Observation',
        params: [['patient', 'rpm-p1'], ['category', 'vital-signs'], ['max', String(max)]],
        policy: allowAllPolicy,
        baseUrl: BASE,
        handling: 'strict',
      });
      const got = (b.entry ?? []).map((e) => e.resource?.id ?? '').sort();
      const criteria = f.service.compileCriteria('Observation', 'patient=rpm-p1&category=vital-signs');
      const hits = (await current()).filter((r) => f.service.matches(criteria, r));
      hits.sort((a, b2) => dateOf(b2) - dateOf(a) || ((a.id ?? '') < (b2.id ?? '') ? -1 : 1));
      const per = new Map<string, number>();
      const want = hits
        .filter((r) => {
          const code = (r as Observation).code.coding?.[0].code ?? '';
          per.set(code, (per.get(code) ?? 0) + 1);
          return (per.get(code) ?? 0) <= max;
        })
        .map((r) => r.id ?? '')
        .sort();
      expect(got).toEqual(want);
      expect(got.length).toBe(6 * max); // five vital signs and the blood pressure panel
    }
  });

  test('the buckets are rebuilt from the stored Observations when their layout is unknown', async () => {
    const q = 'subject=Patient/rpm-p1&_sort=-date&_count=50';
    const before = await allPages(q);
    await f.db.collection('meta').deleteOne({ _id: 'search.buckets' as never });
    await f.db.collection(BUCKET_COLLECTION).deleteMany({});
    expect(await allPages(q)).toEqual([]);
    const messages: string[] = [];
    await f.service.reindexIfNeeded((m) => messages.push(m));
    expect(messages.some((m) => m.includes('building search buckets'))).toBe(true);
    expect(await allPages(q)).toEqual(before);
  });
});
