import { randomUUID } from 'node:crypto';
import type { Bundle, Resource } from 'fhir/r4';
import { allowAllPolicy } from '../../../src/auth/types';
import { all } from './fixtures';
import { generateRpmData } from '../../../bench/search/generate';
import { SearchService } from '../../../src/search';
import { type TestContext, createTestContext, heartRate } from '../../support/context';
import { BASE, type SearchFixture, createSearchFixture, officialExamples } from './helpers';

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
/** The embedded engine's executor with a tiny scan budget: unserved queries page in bounded scans. */
let budgeted: SearchService;

beforeAll(async () => {
  f = await createSearchFixture('corpus');
  const generated = generateRpmData({ patients: 6, observationsPerPatient: 14, seed: 7 });
  await f.put(...officialExamples(TYPES), ...all, ...generated);
  // Compare against what is stored (the store stamps meta.lastUpdated).
  resources = [];
  for (const t of TYPES) resources.push(...(await f.db.collection(t).find({}).toArray()).map((d) => d.res as Resource));
  mongoStyle = await SearchService.create({ db: f.db, config: f.config, types: ['Patient', 'Device', 'Observation', 'SubscriptionTopic'], engine: 'mongodb' });
  budgeted = await SearchService.create({ db: f.db, config: f.config, types: ['Patient', 'Device', 'Observation', 'Basic'], engine: 'ferretdb', scanBudget: 7 });
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
  // Keep the run short on a shared machine: an even sample of at most 220 queries per type,
  // plus every identifier lookup (served from the token lists).
  const list = [...queries];
  const step = Math.max(1, list.length / 220);
  const sample = list.filter((_, i) => Math.floor(i / step) !== Math.floor((i - 1) / step));
  return [...new Set([...sample, ...identifierQueries(type)])];
}

/** `identifier=system|value`, `identifier=value` and `identifier=|value` of the stored resources. */
function identifierQueries(type: string): string[] {
  const ids = resources.filter((r) => r.resourceType === type).flatMap((r) => ((r as { identifier?: { system?: string; value?: string }[] }).identifier ?? []));
  const enc = (s: string) => s.replace(/[\\,|$]/g, (c) => `\\${c}`);
  const out = new Set<string>();
  for (const i of pick(ids.filter((x) => x.value), 6)) {
    out.add(`identifier=${i.system ? `${enc(i.system)}|` : '|'}${enc(i.value ?? '')}`);
    out.add(`identifier=${enc(i.value ?? '')}`);
  }
  out.add('identifier=http://example.org/none|nothing');
  return [...out];
}

/** Every match of a search, page by page; and how many pages stopped short of `_count` with more to come. */
async function allPages(svc: SearchService, type: string, q: string, count: number): Promise<{ ids: string[]; shortPages: number }> {
  const ids: string[] = [];
  let shortPages = 0;
  let params: [string, string][] = [...new URLSearchParams(`${q}&_count=${count}`).entries()];
  for (let n = 0; n < 1000; n++) {
    const b = await svc.search({ type, params, policy: allowAllPolicy, baseUrl: BASE, handling: 'strict' });
    const page = (b.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource?.id ?? '');
    ids.push(...page);
    const next = b.link?.find((l) => l.relation === 'next')?.url;
    if (!next) break;
    if (page.length < count) shortPages++;
    params = [...new URL(next).searchParams.entries()];
  }
  return { ids, shortPages };
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

  test('identifier lookups are served from the token lists, not scanned', async () => {
    for (const q of identifierQueries(type)) {
      const x = await f.service.explain({ type, params: [...new URLSearchParams(q).entries()], policy: allowAllPolicy, baseUrl: BASE, handling: 'strict' });
      expect({ q, tokens: x.buckets?.tokens?.length ?? 0 }).toEqual({ q, tokens: 1 });
    }
  });

  test('bounded scans (a scan budget of 7) page through exactly the matches, each once', async () => {
    const qs = [...corpus(type).filter((_, i) => i % 11 === 0), ...identifierQueries(type).slice(0, 2), ''];
    let shortPages = 0;
    for (const q of qs) {
      const criteria = f.service.compileCriteria(type, q);
      const expected = resources.filter((r) => r.resourceType === type && f.service.matches(criteria, r)).map((r) => r.id).sort();
      const got = await allPages(budgeted, type, q, 5);
      shortPages += got.shortPages;
      expect({ q, found: got.ids.sort().join(',') }).toEqual({ q, found: expected.join(',') });
    }
    // The budget really bounded some pages (fewer entries than _count, with a next link).
    expect(shortPages).toBeGreaterThan(0);
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

/**
 * History from the time buckets and point reads (the embedded engine's plan) against the
 * history collection itself, read whole and ordered in memory: instance, type and system level,
 * with and without `_since`, paged small so every boundary is crossed.
 */
describe('history plans give exactly the stored versions, in order', () => {
  let ctx: TestContext;
  /** Finds with a filter other than `{ _id }` (each a scan on FerretDB), by collection. */
  const scans: string[] = [];
  const scansOf = (col: string) => scans.filter((x) => x.startsWith(`${col} `));
  let upTo = '';
  let stored: { _id: string; type: string; id: string; vid: number; ts: Date }[] = [];
  beforeAll(async () => {
    // 61 s per clock reading: versions spread over many minutes and across a day boundary.
    let t = Date.parse('2024-03-01T20:00:00Z');
    ctx = await createTestContext({
      env: { NEWS2_ENABLED: 'false', ALERTING_ENABLED: 'false' },
      clock: () => new Date((t += 61_000)),
      onCommand: (e) => {
        const cmd = e.command as { find?: string; filter?: Record<string, unknown> };
        if (cmd.find && Object.keys(cmd.filter ?? {}).join() !== '_id') scans.push(`${cmd.find} ${JSON.stringify(cmd.filter)}`);
      },
    });
    const tag = randomUUID().slice(0, 8);
    for (let i = 0; i < 12; i++) {
      const id = `h-${tag}-${i}`;
      await ctx.request.put(`/fhir/Patient/${id}`).send({ resourceType: 'Patient', id, active: true }).expect(201);
      if (i % 3 === 0) await ctx.request.put(`/fhir/Patient/${id}`).send({ resourceType: 'Patient', id, active: false }).expect(200);
      if (i % 4 === 0) await ctx.request.delete(`/fhir/Patient/${id}`).expect(204);
      const obs = await ctx.request.post('/fhir/Observation').send(heartRate(id, 60 + i)).expect(201);
      upTo = obs.body.meta.lastUpdated;
    }
    await ctx.vigil.audit.flush();
    // Everything at or before `upTo` is written now; later audit records are stamped later.
    stored = (await ctx.db.collection('history').find({}, { projection: { type: 1, id: 1, vid: 1, ts: 1 } }).toArray()) as never;
    stored = stored.filter((h) => h.ts <= new Date(upTo));
    stored.sort((a, b) => b.ts.getTime() - a.ts.getTime() || (a._id < b._id ? 1 : a._id > b._id ? -1 : 0));
  }, 120_000);
  afterAll(() => ctx.close());

  async function pages(path: string): Promise<string[]> {
    const out: string[] = [];
    let url: string | undefined = path;
    for (let n = 0; url && n < 200; n++) {
      const res: { body: Bundle } = await ctx.request.get(url).expect(200);
      for (const e of res.body.entry ?? []) out.push(`${(e.fullUrl ?? '').replace(/^.*\/fhir\//, '')}/${(e.response?.etag ?? '').replace(/\D/g, '')}`);
      const next = res.body.link?.find((l) => l.relation === 'next')?.url;
      url = next?.replace(/^.*\/fhir/, '/fhir');
    }
    return out;
  }

  test('type and system level, with and without _since', async () => {
    scans.length = 0;
    const since = stored[Math.floor(stored.length / 2)].ts.toISOString();
    const cases: [string, (h: (typeof stored)[number]) => boolean][] = [
      [`/fhir/Patient/_history?_at=${upTo}&_count=4`, (h) => h.type === 'Patient'],
      [`/fhir/Patient/_history?_since=${since}&_at=${upTo}&_count=3`, (h) => h.type === 'Patient' && h.ts >= new Date(since)],
      [`/fhir/Observation/_history?_since=${since}&_at=${upTo}&_count=5`, (h) => h.type === 'Observation' && h.ts >= new Date(since)],
      [`/fhir/_history?_since=${since}&_at=${upTo}&_count=4`, (h) => h.ts >= new Date(since)],
      [`/fhir/_history?_at=${upTo}&_count=9`, () => true],
    ];
    for (const [path, keep] of cases) {
      const expected = stored.filter(keep).map((h) => h._id);
      expect({ path, got: await pages(path) }).toEqual({ path, got: expected });
    }
    expect(scansOf('history')).toEqual([]);
  });

  test('instance level, newest first', async () => {
    const one = stored.find((h) => h.type === 'Patient' && h.vid === 3);
    expect(one).toBeDefined();
    const expected = stored.filter((h) => h.type === 'Patient' && h.id === one!.id).map((h) => h._id);
    expect(expected).toHaveLength(3);
    scans.length = 0;
    expect(await pages(`/fhir/Patient/${one!.id}/_history?_count=1`)).toEqual(expected);
    expect(await pages(`/fhir/Patient/${one!.id}/_history?_since=${expected.length ? stored.find((h) => h._id === expected[1])!.ts.toISOString() : ''}`)).toEqual(expected.slice(0, 2));
    expect(scansOf('history')).toEqual([]);
  });

  test('conditional creates (If-None-Exist identifier) and identifier searches read the token lists, not scans', async () => {
    const value = `MRN-${randomUUID()}`;
    const body = { resourceType: 'Patient', identifier: [{ system: 'http://hospital.example/mrn', value }] };
    scans.length = 0;
    const first = await ctx.request.post('/fhir/Patient').set('If-None-Exist', `identifier=http://hospital.example/mrn|${value}`).send(body).expect(201);
    const again = await ctx.request.post('/fhir/Patient').set('If-None-Exist', `identifier=http://hospital.example/mrn|${value}`).send(body).expect(200);
    expect(again.body.id).toBe(first.body.id);
    const found: { body: Bundle } = await ctx.request.get(`/fhir/Patient?identifier=${encodeURIComponent(value)}`).expect(200);
    expect(found.body.entry?.map((e) => e.resource?.id)).toEqual([first.body.id]);
    expect(scansOf('Patient')).toEqual([]);
  });
});
