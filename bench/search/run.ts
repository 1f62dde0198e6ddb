/**
 * Search benchmark: generates remote-monitoring data (bench/search/generate.ts), stores it as
 * current documents indexed by the search service, and measures the typical queries. Prints one
 * JSON line per (size, query): p50/p95/p99 of the search service, the same figures for the raw
 * database query it runs (the cost of our own code is the difference), and the index used.
 *
 *   node -r ts-node/register/transpile-only bench/search/run.ts [--sizes=10000,100000] [--large] [--iterations=100]
 *
 * `--warmup=N` (default 5) unmeasured runs first. `--scan-iterations=N` (default 10) caps the
 * runs of queries that scan on FerretDB; `--raw-iterations=N` (default: the same) the raw-database
 * baselines there, each a full collection scan (0 leaves them out, for 1M). `--large` adds 1,000,000 Observations (for a bigger machine). MONGODB_URI points it at a real
 * MongoDB; otherwise an embedded FerretDB is started in a temporary directory.
 *
 * `--corpus-dir=DIR` keeps the embedded database in DIR and its corpora (`vigil_corpus_<size>`)
 * after the run, and measures a stored corpus without loading it again: the queries then run on
 * a database that has settled after its bulk load (right after one, SQLite is still folding its
 * write-ahead log in, and the first run's tails show it), and builds can be compared on the same
 * corpus.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Resource } from 'fhir/r4';
import { type Db, type Document, MongoClient } from 'mongodb';
import { allowAllPolicy } from '../../src/auth/types';
import { loadConfig } from '../../src/config';
import { startEmbeddedDatabase } from '../../src/storage/embedded';
import { SearchService, type SearchRequest } from '../../src/search';
import { Collections } from '../../src/storage/collections';
import { HistoryPlan } from '../../src/storage/history-plan';
import type { Explanation } from '../../src/storage/query';
import type { BucketSource } from '../../src/storage/query/buckets';
import { Versions } from '../../src/storage/versions';
import { Bodies } from '../../src/storage/bodies';
import { VITALS, generateObservations, generatePatient, rng } from './generate';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const sizes = (args.get('sizes') ?? '10000,100000').split(',').map(Number);
if (args.has('large')) sizes.push(1_000_000);
const iterations = Number(args.get('iterations') ?? 100);
const warmup = Number(args.get('warmup') ?? 5);
const scanIterations = Number(args.get('scan-iterations') ?? 10);
/** Raw-database baselines per query where the raw query scans (FerretDB): each is a full scan. */
const rawIterations = Number(args.get('raw-iterations') ?? scanIterations);
const OBS_PER_PATIENT = 500;
const START = Date.parse('2024-01-01T00:00:00Z');
const STEP = 10 * 60000;
const BASE = 'http://localhost:8080/fhir';

function emit(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ bench: 'search', ...obj, at: new Date().toISOString() })}\n`);
}

function pct(sorted: number[], p: number): number {
  return Number(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))].toFixed(2));
}

/** The index a plan uses: MongoDB's IXSCAN names, or FerretDB's SQLite plan and pushdown flags. */
function indexUsed(plan: Document): string {
  const names = new Set<string>();
  const walk = (n: unknown) => {
    if (!n || typeof n !== 'object') return;
    const o = n as Record<string, unknown>;
    if (o.stage === 'IXSCAN' && typeof o.indexName === 'string') names.add(o.indexName);
    if (o.stage === 'COLLSCAN') names.add('COLLSCAN');
    Object.values(o).forEach(walk);
  };
  walk(plan.queryPlanner ?? plan);
  if (names.size > 0) return [...names].join('+');
  const qp = plan.queryPlanner as { Plan?: string[] } | undefined;
  const sqlite = (qp?.Plan ?? []).map((l) => l.replace(/^id=\d+ parent=\d+ notused=\d+ detail=/, '')).join('; ');
  return `ferretdb: ${sqlite || 'unknown'} (filterPushdown=${plan.filterPushdown}, sortPushdown=${plan.sortPushdown})`;
}

/** Readings per patient generated per bulk step: a slice of time across every patient. */
const READINGS_PER_STEP = 50;
/** Bucket updates in flight during the load (distinct buckets; nothing else runs beside it). */
const LOAD_CONCURRENCY = 8;

/**
 * Bulk load of prepared documents, a slice of time at a time across all patients (as a live
 * ingest commits them): per slice one `insertMany` per 5,000 current documents and their history
 * versions, and one bucket update per bucket key touched (FerretDB; a no-op on MongoDB), so
 * each bucket is written about once. Each version is stamped at its effective time, so history
 * by time has something to walk.
 */
async function load(db: Db, service: SearchService, observations: number): Promise<{ ms: number; stored: number }> {
  const patients = Math.max(1, Math.round(observations / OBS_PER_PATIENT));
  const t0 = Date.now();
  let stored = 0;
  const toDoc = (r: Resource, ts: Date) => {
    const res = { ...r, meta: { versionId: '1', lastUpdated: ts.toISOString() } } as Resource;
    const { idx, comp } = service.index(res);
    return { _id: r.id as unknown as never, res, vid: 1, ts, deleted: false, idx, comp };
  };
  type Doc = ReturnType<typeof toDoc>;
  const historyOf = (type: string, d: Doc) => ({ _id: `${type}/${d._id}/1` as never, type, id: d._id, vid: 1, ts: d.ts, deleted: false, method: 'POST', res: d.res, comp: d.comp });
  const sourceOf = (d: Doc): BucketSource => ({ _id: d._id as unknown as string, idx: d.idx, comp: d.comp, vid: 1, ts: d.ts, res: d.res });
  const store = async (type: string, list: Doc[]) => {
    for (let i = 0; i < list.length; i += 5000) {
      const chunk = list.slice(i, i + 5000);
      await db.collection(type).insertMany(chunk, { ordered: false });
      await db.collection('history').insertMany(chunk.map((d) => historyOf(type, d)), { ordered: false });
    }
    await service.recordCandidates(type, list.map(sourceOf), LOAD_CONCURRENCY);
  };
  const rands = new Map<number, () => number>();
  const people: Doc[] = [];
  const devices: Doc[] = [];
  for (let p = 1; p <= patients; p++) {
    rands.set(p, rng(42 + p));
    const [patient, device] = generatePatient(p, rands.get(p));
    people.push(toDoc(patient, new Date(START)));
    devices.push(toDoc(device, new Date(START)));
  }
  await store('Patient', people);
  await store('Device', devices);
  for (let first = 0; first < OBS_PER_PATIENT; first += READINGS_PER_STEP) {
    const slice: Doc[] = [];
    const n = Math.min(READINGS_PER_STEP, OBS_PER_PATIENT - first);
    for (let p = 1; p <= patients; p++) {
      for (const o of generateObservations(p, n, rands.get(p) ?? rng(p), START, STEP, first)) slice.push(toDoc(o, new Date(o.effectiveDateTime ?? START)));
    }
    await store('Observation', slice);
    stored += slice.length;
  }
  return { ms: Date.now() - t0, stored };
}

interface Case {
  name: string;
  request: (rand: () => number) => SearchRequest;
  lastn?: boolean;
  /** History by time (storage's history plan) rather than a search. */
  history?: boolean;
}

function cases(patients: number): Case[] {
  const req = (type: string, q: string): SearchRequest => ({ type, params: [...new URLSearchParams(q).entries()], policy: allowAllPolicy, baseUrl: BASE, handling: 'strict' });
  const somePatient = (rand: () => number) => `rpm-p${1 + Math.floor(rand() * patients)}`;
  const span = OBS_PER_PATIENT * STEP;
  const day = (rand: () => number) => {
    const from = START + Math.floor(rand() * (span / 86400000 - 1)) * 86400000;
    return [new Date(from).toISOString(), new Date(from + 86400000).toISOString()];
  };
  return [
    {
      name: 'patient+code+24h range, newest first',
      request: (r) => {
        const [from, to] = day(r);
        return req('Observation', `subject=Patient/${somePatient(r)}&code=http://loinc.org|8867-4&date=ge${from}&date=lt${to}&_sort=-date&_count=50`);
      },
    },
    { name: '$lastn (patient, vital signs, max=1)', request: (r) => req('Observation', `patient=${somePatient(r)}&category=vital-signs&max=1`), lastn: true },
    {
      name: 'patient identifier lookup',
      request: (r) => req('Patient', `identifier=http://hospital.example/mrn|MRN-${100001 + Math.floor(r() * patients)}`),
    },
    {
      name: 'SpO2 below 90 % across patients, one day (value-quantity threshold)',
      request: (r) => {
        const [from, to] = day(r);
        return req('Observation', `code=http://loinc.org|${VITALS[1].code}&value-quantity=lt90|http://unitsofmeasure.org|%&date=ge${from}&date=lt${to}&_count=50`);
      },
    },
    {
      name: 'SpO2 below 90 % across patients, all time (value-quantity threshold)',
      request: () => req('Observation', `code=http://loinc.org|${VITALS[1].code}&value-quantity=lt90|http://unitsofmeasure.org|%&_count=50`),
    },
    { name: 'patient observations, newest first (first page)', request: (r) => req('Observation', `patient=${somePatient(r)}&_sort=-date&_count=20`) },
    { name: 'device identifier lookup', request: (r) => req('Device', `identifier=http://devices.example.org/serial|SN-${1 + Math.floor(r() * patients)}`) },
    // No patient, code, token or id pinned: FerretDB answers with a bounded scan (a page may be short).
    { name: 'unserved: any Observation with a value above 140 (first page)', request: () => req('Observation', 'value-quantity=gt140&_count=20') },
    {
      name: 'Observation/_history?_since= (last hour of the data, first page of 20)',
      request: () => req('Observation', `_since=${new Date(START + span - 3_600_000).toISOString()}`),
      history: true,
    },
  ];
}

/** What serves a search: MongoDB's index, the FerretDB buckets, or the bounded scan. */
function describePlan(plan: Explanation, database: string): string {
  const b = plan.buckets;
  if (b) return `candidate buckets by ${b.patients ? 'patient and day' : b.codes ? (b.byValue ? 'code, value band and day' : 'code and hour') : b.tokens ? 'token list' : 'pinned ids'} (_id point reads)`;
  if (database !== 'mongodb') return 'bounded scan: time buckets oldest first, _id point reads (FerretDB)';
  return indexUsed(plan.plan);
}

/** `[type]/_history?_since=`: storage's history plan against the raw filter on the history collection. */
async function measureHistory(db: Db, service: SearchService, r: SearchRequest, iterations: number, warmup: number): Promise<Record<string, unknown>> {
  const cols = new Collections(db);
  const plan = new HistoryPlan(cols, new Versions(cols, (res) => service.index(res), new Bodies(cols.bodies)), service.executor);
  const since = new Date(r.params.find(([n]) => n === '_since')?.[1] ?? 0);
  const times: number[] = [];
  const raw: number[] = [];
  let results = 0;
  for (let i = 0; i < iterations + warmup; i++) {
    const t = process.hrtime.bigint();
    const page = await plan.page({ type: r.type, since, limit: 21 });
    if (i >= warmup) times.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (i >= warmup) results += page.versions.length;
    if (i >= warmup && raw.length < Math.min(iterations, service.executor.engine === 'mongodb' ? iterations : rawIterations)) {
      const t2 = process.hrtime.bigint();
      await db.collection('history').find({ type: r.type, ts: { $gte: since } }, { sort: { ts: -1, _id: -1 }, limit: 21 }).toArray();
      raw.push(Number(process.hrtime.bigint() - t2) / 1e6);
    }
  }
  times.sort((a, b) => a - b);
  raw.sort((a, b) => a - b);
  return {
    p50: pct(times, 50),
    p95: pct(times, 95),
    p99: pct(times, 99),
    ...(raw.length ? { rawP50: pct(raw, 50), rawP99: pct(raw, 99) } : {}),
    meanResults: Number((results / iterations).toFixed(1)),
    index: service.executor.engine === 'mongodb' ? 'history (type, ts, _id)' : 'time buckets newest first, _id point reads (FerretDB)',
  };
}

async function main(): Promise<void> {
  const corpusDir = args.get('corpus-dir');
  if (corpusDir) mkdirSync(corpusDir, { recursive: true });
  const dir = corpusDir ?? mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-search-'));
  const embedded = process.env.MONGODB_URI ? undefined : await startEmbeddedDatabase(dir, { syncMs: loadConfig({ EMBEDDED_DB_SYNC_MS: process.env.EMBEDDED_DB_SYNC_MS }).embeddedSyncMs });
  const uri = process.env.MONGODB_URI ?? embedded?.uri ?? '';
  const client = await MongoClient.connect(uri);
  const database = embedded ? 'ferretdb-sqlite' : 'mongodb';
  try {
    for (const size of sizes) {
      const db = client.db(corpusDir ? `vigil_corpus_${size}` : `vigil_bench_search_${size}_${Date.now()}`);
      const config = { ...loadConfig({ BASE_URL: BASE, AUTH_ENABLED: 'false' }), cursorSecret: 'bench' };
      const service = await SearchService.create({ db, config, types: ['Patient', 'Device', 'Observation'] });
      // A stored corpus is brought up to this build as a server's start-up would (a changed bucket layout is rebuilt).
      await service.reindexIfNeeded(); // on an empty database: marks the buckets built
      await service.ensureIndexes();
      // The corpus's size as its load recorded it: FerretDB 1.24 counts a collection by reading
      // every document (minutes at 1M), estimatedDocumentCount included.
      const corpus = db.collection<{ _id: string; observations: number }>('bench_corpus');
      const stored = corpusDir ? ((await corpus.findOne({ _id: 'size' }))?.observations ?? 0) : 0;
      let observations = stored;
      if (stored === 0) {
        const loaded = await load(db, service, size);
        observations = loaded.stored;
        await corpus.replaceOne({ _id: 'size' }, { observations }, { upsert: true });
        emit({ database, observations, phase: 'load', ms: loaded.ms, perSecond: Math.round((observations / loaded.ms) * 1000) });
      } else {
        emit({ database, observations: stored, phase: 'stored corpus', dir: corpusDir });
      }
      const patients = Math.max(1, Math.round(size / OBS_PER_PATIENT));
      for (const c of cases(patients)) {
        const rand = rng(7);
        const times: number[] = [];
        const raw: number[] = [];
        let results = 0;
        let index = '';
        if (c.history) {
          const h = await measureHistory(db, service, c.request(rand), iterations, warmup);
          emit({ database, observations, query: c.name, iterations, ...h });
          continue;
        }
        // Queries that scan (no bucket, FerretDB) take seconds at 100k: fewer iterations for them.
        const first = c.lastn ? undefined : await service.explain(c.request(rng(7)));
        const scans = database !== 'mongodb' && !c.lastn && !first?.buckets;
        const runsOf = scans ? Math.min(iterations, scanIterations) : iterations;
        const warm = scans ? Math.min(warmup, 1) : warmup;
        for (let i = 0; i < runsOf + warm; i++) {
          const r = c.request(rand);
          const t = process.hrtime.bigint();
          const b = c.lastn ? await service.lastn(r) : await service.search(r);
          const ms = Number(process.hrtime.bigint() - t) / 1e6;
          if (i >= warm) {
            times.push(ms);
            results += b.entry?.length ?? 0;
          }
          if (c.lastn) continue;
          const plan = await service.explain(r);
          if (!index) index = describePlan(plan, database);
          // The raw database baseline: the same find, without parsing, re-checking and Bundle building
          // (on FerretDB a scan where our buckets serve the query: measured a few times only).
          const rawScans = database !== 'mongodb';
          if (i < warm || (rawScans && raw.length >= Math.min(runsOf, rawIterations))) continue;
          const t2 = process.hrtime.bigint();
          await db.collection(r.type ?? '').find(plan.filter, { sort: plan.sort, limit: plan.limit }).toArray();
          if (i >= warm) raw.push(Number(process.hrtime.bigint() - t2) / 1e6);
        }
        const runs = runsOf;
        times.sort((a, b) => a - b);
        raw.sort((a, b) => a - b);
        emit({
          database,
          observations,
          query: c.name,
          iterations: runs,
          p50: pct(times, 50),
          p95: pct(times, 95),
          p99: pct(times, 99),
          ...(raw.length ? { rawP50: pct(raw, 50), rawP99: pct(raw, 99) } : {}),
          meanResults: Number((results / runs).toFixed(1)),
          index: c.lastn ? (database === 'mongodb' ? 'distinct + per-code find (lastn_subject_code_date)' : 'candidate buckets by patient and day, newest first (FerretDB)') : index,
        });
      }
      if (!corpusDir) await db.dropDatabase();
    }
  } finally {
    await client.close();
    await embedded?.stop();
    if (!corpusDir) rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
