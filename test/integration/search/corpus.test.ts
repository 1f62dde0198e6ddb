import type { Resource } from 'fhir/r4';
import { allowAllPolicy } from '../../../src/auth/types';
import { all } from './fixtures';
import { generateRpmData } from '../../../bench/search/generate';
import { SearchService } from '../../../src/search';
import { type SearchFixture, createSearchFixture, officialExamples } from './helpers';

/**
 * One semantics, two evaluators: every query of a corpus is run as a MongoDB filter on FerretDB
 * and in memory (`matches`) over the official R4 examples plus a generated data set; the results
 * must be identical. The corpus is derived from the stored index values themselves, so every
 * parameter of every type is exercised with values that exist (and prefixes/modifiers around them).
 * Both storage executors are checked: the embedded engine's own (candidate buckets and point
 * reads, `f.service` here) on every query, the MongoDB filter executor on a quarter of them (it
 * scans on FerretDB), on the same database.
 */
const TYPES = ['Patient', 'Device', 'Observation'];
let f: SearchFixture;
let resources: Resource[];
/** The MongoDB executor over the same documents (slow on FerretDB, but exact: that is what is checked). */
let mongoStyle: SearchService;

beforeAll(async () => {
  f = await createSearchFixture('corpus');
  const generated = generateRpmData({ patients: 6, observationsPerPatient: 14, seed: 7 });
  await f.put(...officialExamples(TYPES), ...all, ...generated);
  // Compare against what is stored (the store stamps meta.lastUpdated).
  resources = [];
  for (const t of TYPES) resources.push(...(await f.db.collection(t).find({}).toArray()).map((d) => d.res as Resource));
  mongoStyle = await SearchService.create({ db: f.db, config: f.config, types: ['Patient', 'Device', 'Observation', 'SubscriptionTopic'], engine: 'mongodb' });
}, 120_000);
afterAll(() => f.close());

function pick<T>(xs: T[], n: number): T[] {
  const step = Math.max(1, Math.floor(xs.length / n));
  return xs.filter((_, i) => i % step === 0).slice(0, n);
}

function leaves(v: unknown): unknown[] {
  if (Array.isArray(v)) return v;
  return v === undefined ? [] : [v];
}

/** Queries for one type built from the values its resources really have. */
function corpus(type: string): string[] {
  const params = f.service.paramsOf(type);
  const indexed = resources.filter((r) => r.resourceType === type).map((r) => f.service.index(r).idx);
  const queries = new Set<string>();
  const enc = (s: string) => s.replace(/[\\,|$]/g, (c) => `\\${c}`);
  for (const p of params.values()) {
    if (p.unsupported || p.code === '_id') continue;
    queries.add(`${p.code}:missing=true`);
    queries.add(`${p.code}:missing=false`);
    const values = indexed.flatMap((idx) => leaves(idx[p.code]));
    switch (p.type) {
      case 'token': {
        const strs = [...new Set(values.filter((v): v is string => typeof v === 'string'))];
        for (const v of pick(strs, 4)) {
          const bar = v.indexOf('|');
          const q = bar < 0 ? enc(v) : `${enc(v.slice(0, bar))}|${enc(v.slice(bar + 1))}`;
          queries.add(`${p.code}=${q}`);
          queries.add(`${p.code}:not=${q}`);
        }
        const texts = indexed.flatMap((idx) => leaves(idx[`${p.code}:text`])).filter((v): v is string => typeof v === 'string');
        for (const t of pick(texts, 2)) queries.add(`${p.code}:text=${enc(t.slice(0, 4))}`);
        break;
      }
      case 'string': {
        const strs = values.filter((v): v is string => typeof v === 'string');
        for (const v of pick(strs, 4)) {
          queries.add(`${p.code}=${enc(v.slice(0, 3))}`);
          queries.add(`${p.code}:contains=${enc(v.slice(1, 4))}`);
        }
        const exact = indexed.flatMap((idx) => leaves(idx[`${p.code}:exact`])).filter((v): v is string => typeof v === 'string');
        for (const v of pick(exact, 2)) queries.add(`${p.code}:exact=${enc(v)}`);
        break;
      }
      case 'reference':
      case 'uri': {
        const strs = [...new Set(values.filter((v): v is string => typeof v === 'string'))];
        for (const v of pick(strs, 4)) queries.add(`${p.code}=${enc(v)}`);
        break;
      }
      case 'date': {
        const lows = indexed.flatMap((idx) => leaves((idx[p.code] as { l?: unknown } | undefined)?.l)).filter((v): v is Date => v instanceof Date);
        for (const d of pick(lows, 2)) {
          if (d.getUTCFullYear() < 1000 || d.getUTCFullYear() > 9000) continue;
          const iso = d.toISOString();
          for (const prefix of ['', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb']) queries.add(`${p.code}=${prefix}${iso.slice(0, 10)}`);
          queries.add(`${p.code}=${iso.slice(0, 4)}`);
          queries.add(`${p.code}=${iso.slice(0, 16)}`);
        }
        break;
      }
      case 'quantity': {
        const nums = indexed.flatMap((idx) => leaves((idx[p.code] as { v?: unknown } | undefined)?.v)).filter((v): v is number => typeof v === 'number');
        for (const n of pick(nums, 2)) {
          for (const prefix of ['', 'ne', 'gt', 'lt', 'ge', 'le', 'ap']) queries.add(`${p.code}=${prefix}${n}`);
          queries.add(`${p.code}=gt${n}|http://unitsofmeasure.org|/min`);
          queries.add(`${p.code}=${n}||mm[Hg]`);
        }
        queries.add(`${p.code}=gt37|http://unitsofmeasure.org|Cel`);
        queries.add(`${p.code}=lt1|http://unitsofmeasure.org|kg`);
        break;
      }
      case 'composite': {
        const second = p.composite?.params[1].type;
        if (second === 'quantity') {
          queries.add(`${p.code}=http://loinc.org|8480-6$gt120`);
          queries.add(`${p.code}=8867-4$lt60,8867-4$gt100`);
          queries.add(`${p.code}=http://loinc.org|8867-4$gt90|http://unitsofmeasure.org|/min`);
        } else if (second === 'token') queries.add(`${p.code}=http://loinc.org|882-1$http://snomed.info/sct|112144000`);
        else if (second === 'string') queries.add(`${p.code}=8601-7$norm`);
        else if (second === 'date') queries.add(`${p.code}=8867-4$ge2024-03-01`);
        break;
      }
      default:
        break;
    }
  }
  // Combinations: AND of two parameters and ORs.
  if (type === 'Observation') {
    queries.add('code=http://loinc.org|8867-4&value-quantity=gt100');
    queries.add('code=8867-4,59408-5&date=ge2024-01-01&status=final');
    queries.add('subject=Patient/rpm-p1&code=http://loinc.org|8867-4&date=ge2024-03-01T00:00:00Z&date=lt2024-03-02T00:00:00Z');
    queries.add('category=vital-signs&value-quantity=lt90||%');
    queries.add('interpretation=H,HH&patient=rpm-p2');
  }
  // Keep the run short on a shared machine: an even sample of at most 220 queries per type.
  const list = [...queries];
  const step = Math.max(1, list.length / 220);
  return list.filter((_, i) => Math.floor(i / step) !== Math.floor((i - 1) / step));
}

describe.each(TYPES)('%s: both storage executors and in-memory matching agree', (type) => {
  test('on every corpus query', async () => {
    const qs = corpus(type);
    expect(qs.length).toBeGreaterThan(type === 'Observation' ? 200 : 20);
    const ofType = resources.filter((r) => r.resourceType === type);
    const mismatches: string[] = [];
    let nonEmpty = 0;
    for (const q of qs) {
      const criteria = f.service.compileCriteria(type, q);
      const inMemory = ofType.filter((r) => f.service.matches(criteria, r)).map((r) => r.id).sort();
      // The search path: the database filter (re-checked where FerretDB's $elemMatch is loose).
      const found = (await f.service.findMatches(type, q, allowAllPolicy, 100000)).map((d) => d._id).sort();
      if (JSON.stringify(inMemory) !== JSON.stringify(found)) mismatches.push(`${q}: memory=${inMemory.join(',')} db=${found.join(',')}`);
      // The raw filter alone is exact whenever it has no multi-valued ranges, and never misses a match.
      const raw = (await f.db.collection(type).find(f.service.criteriaFilter(criteria), { projection: { _id: 1 } }).toArray()).map((d) => String(d._id)).sort();
      if (criteria.exact && JSON.stringify(raw) !== JSON.stringify(inMemory)) mismatches.push(`${q} (raw filter): memory=${inMemory.join(',')} db=${raw.join(',')}`);
      if (inMemory.some((id) => !raw.includes(id ?? ''))) mismatches.push(`${q} (raw filter misses matches)`);
      if (found.length > 0 && found.length < ofType.length) nonEmpty++;
    }
    expect(mismatches).toEqual([]);
    // The corpus must discriminate: many queries select some but not all resources.
    expect(nonEmpty).toBeGreaterThan(qs.length / 4);
  }, 400_000);

  // A sample: on FerretDB every query of this executor scans the collection (~2 ms a document).
  test('the MongoDB filter executor gives exactly the in-memory matches (a sample)', async () => {
    const qs = corpus(type).filter((_, i) => i % 4 === 0);
    const ofType = resources.filter((r) => r.resourceType === type);
    const mismatches: string[] = [];
    for (const q of qs) {
      const criteria = f.service.compileCriteria(type, q);
      const inMemory = ofType.filter((r) => f.service.matches(criteria, r)).map((r) => r.id).sort();
      const viaFilters = (await mongoStyle.findMatches(type, q, allowAllPolicy, 100000)).map((d) => d._id).sort();
      if (JSON.stringify(inMemory) !== JSON.stringify(viaFilters)) mismatches.push(`${q}: memory=${inMemory.join(',')} db=${viaFilters.join(',')}`);
    }
    expect(mismatches).toEqual([]);
  }, 400_000);

  test('search() pages through exactly the matches (a sample)', async () => {
    const qs = corpus(type).filter((_, i) => i % 9 === 0);
    for (const q of qs) {
      const criteria = f.service.compileCriteria(type, q);
      const expected = resources.filter((r) => r.resourceType === type && f.service.matches(criteria, r)).map((r) => r.id).sort();
      const seen: string[] = [];
      let b = await f.search(type, `${q}&_count=25`, { handling: 'strict' });
      for (;;) {
        seen.push(...(b.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource?.id ?? ''));
        const next = b.link?.find((l) => l.relation === 'next')?.url;
        if (!next) break;
        b = await f.search(type, new URL(next).searchParams.toString(), { handling: 'strict' });
      }
      expect({ q, found: seen.sort().join(',') }).toEqual({ q, found: expected.join(',') });
    }
  }, 400_000);
});
