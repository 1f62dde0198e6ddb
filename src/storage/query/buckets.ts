import type { Collection, Db } from 'mongodb';
import { COLLECTIONS } from '../collections';
import { type Cond, FALSE, TRUE, and, evaluate, or } from '../../search/cond';
import type { Idx } from '../../search/types';

/**
 * Time-bucketed candidate lists for Observation search on FerretDB.
 *
 * FerretDB 1.24 answers only a bare `{ _id }` filter from an index; every other filter scans the
 * whole collection. The remote-monitoring queries are narrow in two ways, though: one patient
 * over a time window, or one code over a time window. So each Observation version appends a small
 * entry (its id and a few index values) to documents keyed by `_id`:
 *
 * - `Observation|p|Patient/x|2024-03-01`: the patient's Observations of that UTC day, plus a
 *   directory `Observation|p|Patient/x` listing the days (and the `code:s` seen on each), so a
 *   query without a window walks the days newest first and `$lastn` knows which codes exist;
 * - `Observation|c|8867-4|2024-03-01T10`: Observations of that code in that UTC hour.
 *
 * Writing them costs the request nothing: right after a version's commit point the store stages
 * its entries in memory (`stage`, no I/O) where readers see them at once, and the outbox worker,
 * which already handles every committed version after the commit, stores them with one update per
 * bucket and batch (`record`) and unstages them. A crash loses only staged entries of versions whose
 * outbox intents are still there, so the outbox stores them after the restart. Entries are never
 * removed, so the lists are a superset: an entry may belong to an older version, or to a deleted
 * resource. Readers therefore treat them only as candidates, fetch the current documents by
 * `_id` and check the exact condition, the access policy and `deleted` on each. A query that
 * the buckets cannot bound (no patient or code pinned, or no window for a code) returns undefined
 * and scans as before.
 *
 * Only one process writes the buckets (the outbox lease holder, or the start-up rebuild), which
 * matters because `$push`/`$addToSet` are read-modify-write on FerretDB; the in-memory staging
 * likewise assumes the single server instance the embedded database serves (see the README).
 */

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
/** An entry spanning more days (or hours, for code buckets) goes to the key's `long` bucket. */
const MAX_SPAN_DAYS = 31;
const MAX_SPAN_HOURS = 48;
/** Buckets read in parallel per step of a day walk (patients) or an hour walk (codes). */
const DAYS_PER_STEP = 3;
const HOURS_PER_STEP = 12;

/** Index values copied into entries: enough to discard most non-matches without a read. */
const PATIENT_FIELDS = new Set(['code', 'code:s', 'category', 'date', 'status']);
const CODE_FIELDS = new Set(['code', 'date', 'value-quantity', 'status']);

export const BUCKET_COLLECTION = COLLECTIONS.buckets;
/** Bumped when the bucket layout or the entry fields change: the buckets are then rebuilt. */
export const BUCKET_LAYOUT = 'v2';

interface Entry {
  i: string;
  x: Record<string, unknown>;
}
interface BucketDoc {
  _id: string;
  e: Entry[];
}
interface DirDoc {
  _id: string;
  d: Record<string, string[]>;
}

/** The parts of a current document the buckets need. */
export interface BucketSource {
  _id: string;
  idx: Idx;
  comp: string[];
}

/** What a query pins down, found by analysing its condition. */
export interface BucketPlan {
  patients?: string[];
  codes?: string[];
  /** Pinned via `subject`/`patient` (not only the compartment): one subject, so `$lastn` may stop early. */
  subjectPinned: boolean;
  window?: { lo: number; hi: number };
}

/** A candidate: an id and the date low bound (ms, -Infinity when undated) and `code:s` its entry recorded. */
export interface Candidate {
  i: string;
  l: number;
  c: string;
}

/** One step of a walk: candidates, and how far the walk is complete (see `walk`). */
export interface WalkStep {
  ids: Candidate[];
  /**
   * Newest first: every match with `date.l >= bound` is among the ids yielded so far; oldest
   * first: every match with `date.l <= bound`. -Infinity/+Infinity once everything was yielded.
   */
  bound: number;
  /** `code:s` values present in days not read yet (for `$lastn`). */
  codesLeft: Set<string>;
}

type Order = 'desc' | 'asc' | 'none';

/** What a set of versions adds: entries per bucket, and days (with their codes) per directory. */
interface Ops {
  buckets: Map<string, Entry[]>;
  dirs: Map<string, Map<string, Set<string>>>;
}

export class BucketIndex {
  private readonly col: Collection<BucketDoc>;
  private readonly dirs: Collection<DirDoc>;
  /** Directory contents known to be stored (only this process writes them). */
  private readonly dirCache = new Map<string, Map<string, Set<string>>>();
  /** Entries of committed versions not stored yet, by bucket and entry token. */
  private readonly staged = new Map<string, Map<string, Entry>>();
  private readonly stagedDirs = new Map<string, Map<string, Set<string>>>();

  constructor(db: Db) {
    this.col = db.collection<BucketDoc>(BUCKET_COLLECTION);
    this.dirs = db.collection<DirDoc>(BUCKET_COLLECTION);
  }

  /** Right after the commit point of these versions: readers see their entries from now on. */
  stage(type: string, docs: readonly BucketSource[]): void {
    const ops = this.opsOf(type, docs);
    for (const [key, entries] of ops.buckets) {
      const m = this.staged.get(key) ?? new Map<string, Entry>();
      for (const e of entries) m.set(token(e), e);
      this.staged.set(key, m);
    }
    for (const [key, days] of ops.dirs) {
      const m = this.stagedDirs.get(key) ?? new Map<string, Set<string>>();
      for (const [day, codes] of days) m.set(day, new Set([...(m.get(day) ?? []), ...codes]));
      this.stagedDirs.set(key, m);
    }
  }

  /** Stores the entries of these versions (one update per bucket) and unstages them. */
  async record(type: string, docs: readonly BucketSource[]): Promise<void> {
    const ops = this.opsOf(type, docs);
    // One update at a time: FerretDB 1.24 stalled (every connection, for good) when a multi-update
    // `bulkWrite` ran beside the request path's inserts; single updates off the request path are fine.
    for (const [key, entries] of ops.buckets) {
      await this.col.updateOne({ _id: key }, { $push: { e: { $each: entries } } }, { upsert: true });
    }
    for (const [key, days] of ops.dirs) {
      const add: Record<string, { $each: string[] }> = {};
      for (const [day, codes] of days) add[`d.${day}`] = { $each: [...codes] };
      await this.dirs.updateOne({ _id: key }, { $addToSet: add } as never, { upsert: true });
    }
    for (const [key, entries] of ops.buckets) {
      const m = this.staged.get(key);
      if (!m) continue;
      for (const e of entries) m.delete(token(e));
      if (m.size === 0) this.staged.delete(key);
    }
    for (const [key, days] of ops.dirs) {
      let known = this.dirCache.get(key);
      if (!known) {
        if (this.dirCache.size > 50_000) this.dirCache.clear();
        known = new Map();
        this.dirCache.set(key, known);
      }
      const m = this.stagedDirs.get(key);
      for (const [day, codes] of days) {
        known.set(day, new Set([...(known.get(day) ?? []), ...codes]));
        const st = m?.get(day);
        if (st) for (const c of codes) st.delete(c);
        if (st && st.size === 0) m?.delete(day);
      }
      if (m && m.size === 0) this.stagedDirs.delete(key);
    }
  }

  private opsOf(type: string, docs: readonly BucketSource[]): Ops {
    const ops: Ops = { buckets: new Map(), dirs: new Map() };
    if (type !== 'Observation') return ops;
    for (const doc of docs) {
      const range = dateRangeOf(doc.idx);
      const codeS = typeof doc.idx['code:s'] === 'string' ? (doc.idx['code:s'] as string) : '';
      const days = range ? spanKeys(range, DAY_MS, MAX_SPAN_DAYS, dayKey) : ['none'];
      for (const p of new Set(doc.comp.filter((c) => c.startsWith('Patient/')))) {
        const entry = { i: doc._id, x: pick(doc.idx, PATIENT_FIELDS) };
        for (const d of days) push(ops.buckets, `Observation|p|${p}|${d}`, entry);
        this.addToDir(ops, `Observation|p|${p}`, days, codeS);
      }
      const hours = range ? spanKeys(range, HOUR_MS, MAX_SPAN_HOURS, hourKey) : ['none'];
      for (const code of bareCodes(doc.idx.code)) {
        const entry = { i: doc._id, x: pick(doc.idx, CODE_FIELDS) };
        for (const h of hours) push(ops.buckets, `Observation|c|${code}|${h}`, entry);
        this.addToDir(ops, `Observation|c|${code}`, hours, '');
      }
    }
    return ops;
  }

  /** Adds units (days or hours) with a code to a directory, unless known to be stored. */
  private addToDir(ops: Ops, dirKey: string, units: string[], code: string): void {
    const known = this.dirCache.get(dirKey);
    for (const u of units) {
      if (known?.get(u)?.has(code)) continue;
      const pending = ops.dirs.get(dirKey) ?? new Map<string, Set<string>>();
      pending.set(u, (pending.get(u) ?? new Set<string>()).add(code));
      ops.dirs.set(dirKey, pending);
    }
  }

  /**
   * Erasure: removes the entries of resources `ids` from every bucket the versions `docs` went to
   * (and from what is staged), and the directories of `patients`. Read, filter and replace, like
   * `record`'s updates on FerretDB; erasure is rare and runs beside few writes.
   */
  async erase(type: string, docs: readonly BucketSource[], ids: ReadonlySet<string>, patients: readonly string[]): Promise<number> {
    const ops = this.opsOf(type, docs);
    let removed = 0;
    for (const key of ops.buckets.keys()) {
      const staged = this.staged.get(key);
      if (staged) for (const [tok, e] of staged) if (ids.has(e.i)) staged.delete(tok);
      const doc = await this.col.findOne({ _id: key });
      if (!doc) continue;
      const kept = doc.e.filter((e) => !ids.has(e.i));
      removed += doc.e.length - kept.length;
      if (kept.length === 0) await this.col.deleteOne({ _id: key });
      else if (kept.length < doc.e.length) await this.col.replaceOne({ _id: key }, { e: kept });
    }
    for (const p of patients) {
      const dirKey = `Observation|p|Patient/${p}`;
      const dir = await this.dirs.findOne({ _id: dirKey });
      for (const day of [...Object.keys(dir?.d ?? {}), 'long', 'none']) await this.col.deleteOne({ _id: `${dirKey}|${day}` });
      await this.dirs.deleteOne({ _id: dirKey });
      this.dirCache.delete(dirKey);
      this.stagedDirs.delete(dirKey);
    }
    return removed;
  }

  /** Removes every bucket (before a rebuild). */
  async clear(): Promise<void> {
    await this.col.deleteMany({});
    this.dirCache.clear();
  }

  /** What `cond` pins down; undefined when the buckets cannot bound the query. */
  plan(type: string, cond: Cond): BucketPlan | undefined {
    if (type !== 'Observation') return undefined;
    const subjects = pins(cond, (f) => f === 'idx.subject' || f === 'idx.patient', (v) => (typeof v === 'string' && v.startsWith('Patient/') ? v : undefined));
    const patients = subjects ?? pins(cond, (f) => f === 'comp', (v) => (typeof v === 'string' && v.startsWith('Patient/') ? v : undefined));
    const win = windowOf(cond);
    const window = win === 'none' ? undefined : win;
    if (patients && patients.length <= 20) return { patients, subjectPinned: subjects !== undefined && subjects.length === 1, window };
    const codes = pins(cond, (f) => f === 'idx.code', (v) => (typeof v === 'string' ? bareCode(v) : undefined));
    // Any window, or none: the code directory lists the hours that hold entries.
    if (codes && codes.length <= 20) return { codes, subjectPinned: false, window };
    return undefined;
  }

  /**
   * Walks the candidate ids of a plan in date order (`desc`/`asc` by `date.l`) or all at once
   * (`none`): a patient plan over the patients' days, a code plan over the codes' hours, each
   * from its directory, so only units holding entries are read. `from` skips units wholly
   * beyond a paging boundary. Entries are pre-filtered with the part of `cond` their copied
   * index values can decide (a code entry holds the value, so a threshold filters there).
   */
  async *walk(plan: BucketPlan, cond: Cond, order: Order, from?: number): AsyncGenerator<WalkStep> {
    const byCode = plan.codes !== undefined;
    const kind = byCode ? 'c' : 'p';
    const unitMs = byCode ? HOUR_MS : DAY_MS;
    const perStep = byCode ? HOURS_PER_STEP : DAYS_PER_STEP;
    const pre = project(cond, byCode ? CODE_FIELDS : PATIENT_FIELDS, true);
    const owners = (byCode ? plan.codes : plan.patients) ?? [];
    // Staged contents are taken before the reads: the outbox unstages only after storing them,
    // so whatever is no longer staged by then is already in the database.
    const stagedDirs = owners.map((o) => [...(this.stagedDirs.get(`Observation|${kind}|${o}`) ?? [])].map(([d, c]) => [d, [...c]] as [string, string[]]));
    const dirs = await Promise.all(owners.map((o) => this.dirs.findOne({ _id: `Observation|${kind}|${o}` })));
    // unit (day or hour) -> owners having it; codes per unit
    const byUnit = new Map<string, { owners: string[]; codes: Set<string> }>();
    for (let i = 0; i < owners.length; i++) {
      for (const [unit, codes] of [...Object.entries(dirs[i]?.d ?? {}), ...stagedDirs[i]]) {
        const slot = byUnit.get(unit) ?? { owners: [], codes: new Set<string>() };
        if (!slot.owners.includes(owners[i])) slot.owners.push(owners[i]);
        for (const c of codes) slot.codes.add(c);
        byUnit.set(unit, slot);
      }
    }
    const w = plan.window;
    const overlaps = (unit: string) => {
      if (!w) return true;
      const start = unitStart(unit);
      return start <= w.hi && start + unitMs - 1 >= w.lo;
    };
    let units = [...byUnit.keys()].filter((d) => d !== 'long' && d !== 'none' && overlaps(d)).sort();
    if (order === 'desc') units.reverse();
    if (from !== undefined && order === 'desc') units = units.filter((d) => unitStart(d) <= from);
    if (from !== undefined && order === 'asc') units = units.filter((d) => unitStart(d) + unitMs - 1 >= from);
    const codesLeft = (rest: string[]) => {
      const s = new Set<string>();
      for (const d of rest) for (const c of byUnit.get(d)?.codes ?? []) s.add(c);
      return s;
    };
    const keysOf = (unit: string) => (byUnit.get(unit)?.owners ?? []).map((o) => `Observation|${kind}|${o}|${unit}`);
    const read = async (ds: string[]) => this.candidates(ds.flatMap(keysOf), pre);
    // Spanning entries may start anywhere: they come first. Undated ones sort lowest (MongoDB's
    // order for a missing key), so they end a newest-first walk and start an oldest-first one;
    // a date window excludes them.
    const first = ['long', ...(order === 'asc' && !w ? ['none'] : [])].filter((d) => byUnit.has(d));
    const last = order !== 'asc' && !w && byUnit.has('none') ? ['none'] : [];
    if (order === 'none') {
      yield { ids: await read([...first, ...units, ...last]), bound: -Infinity, codesLeft: new Set() };
      return;
    }
    let ids = await read(first);
    const noneLeft = last.length > 0 ? codesLeft(last) : new Set<string>();
    if (units.length === 0) {
      yield { ids: [...ids, ...(await read(last))], bound: order === 'desc' ? -Infinity : Infinity, codesLeft: new Set() };
      return;
    }
    for (let i = 0; i < units.length; i += perStep) {
      const step = units.slice(i, i + perStep);
      ids = [...ids, ...(await read(step))];
      const done = i + perStep >= units.length;
      const edge = step[step.length - 1];
      if (done) {
        yield { ids: [...ids, ...(await read(last))], bound: order === 'desc' ? -Infinity : Infinity, codesLeft: new Set() };
        return;
      }
      const bound = order === 'desc' ? unitStart(edge) : unitStart(edge) + unitMs - 1;
      const left = codesLeft(units.slice(i + perStep));
      for (const c of noneLeft) left.add(c);
      yield { ids, bound, codesLeft: left };
      ids = [];
    }
  }

  /** Entries in these buckets that the pre-filter keeps, each (id, date, code) once. */
  private async candidates(keys: string[], pre: Cond): Promise<Candidate[]> {
    if (keys.length === 0) return [];
    const staged = keys.map((k) => [...(this.staged.get(k)?.values() ?? [])]); // before the reads, see walk()
    const docs = await Promise.all(keys.map((k) => this.col.findOne({ _id: k })));
    const out = new Map<string, Candidate>();
    for (let k = 0; k < keys.length; k++) {
      for (const e of [...(docs[k]?.e ?? []), ...staged[k]]) {
        const date = (e.x.date as { l?: unknown } | undefined)?.l;
        const c: Candidate = { i: e.i, l: date instanceof Date ? date.getTime() : -Infinity, c: typeof e.x['code:s'] === 'string' ? (e.x['code:s'] as string) : '' };
        const key = `${c.i} ${c.l} ${c.c}`;
        if (out.has(key)) continue;
        if (pre.k === 'const' ? pre.v : evaluate(pre, { _id: e.i, idx: e.x })) out.set(key, c);
      }
    }
    return [...out.values()];
  }
}

// ---------------------------------------------------------------- condition analysis

/**
 * Values of which `cond` requires the field to hold one (after `map`), or undefined when it
 * does not pin the field. Under AND any pinned part will do (the smallest is taken); under OR
 * every branch must be pinned.
 */
export function pins(cond: Cond, field: (f: string) => boolean, map: (v: unknown) => string | undefined): string[] | undefined {
  switch (cond.k) {
    case 'eq':
    case 'in': {
      if (!field(cond.f)) return undefined;
      const vals = cond.k === 'eq' ? [cond.v] : cond.v;
      const out: string[] = [];
      for (const v of vals) {
        const m = map(v);
        if (m === undefined) return undefined;
        out.push(m);
      }
      return [...new Set(out)];
    }
    case 'and': {
      let best: string[] | undefined;
      for (const c of cond.c) {
        const p = pins(c, field, map);
        if (p && (!best || p.length < best.length)) best = p;
      }
      return best;
    }
    case 'or': {
      const out = new Set<string>();
      for (const c of cond.c) {
        const p = pins(c, field, map);
        if (!p) return undefined;
        for (const v of p) out.add(v);
      }
      return [...out];
    }
    case 'const':
      return cond.v ? undefined : [];
    default:
      return undefined;
  }
}

const L = 'idx.date.l';
const H = 'idx.date.h';

/**
 * The time window `cond` confines Observation.date to: a match has a date range overlapping
 * [lo, hi]. 'none' when `cond` does not require a date at all.
 */
export function windowOf(cond: Cond): { lo: number; hi: number } | 'none' {
  switch (cond.k) {
    case 'range': {
      if (cond.f !== L && cond.f !== H) return 'none';
      let lo = -Infinity;
      let hi = Infinity;
      const b = cond.b;
      const ms = (v: unknown) => (v instanceof Date ? v.getTime() : undefined);
      // l <= h, so a lower bound on l bounds h from below, an upper bound on h bounds l from above.
      for (const v of [b.gt, b.gte]) if (ms(v) !== undefined) lo = Math.max(lo, ms(v) as number);
      for (const v of [b.lt, b.lte]) if (ms(v) !== undefined) hi = Math.min(hi, ms(v) as number);
      return { lo, hi };
    }
    case 'eq':
      return (cond.f === L || cond.f === H) && cond.v instanceof Date ? { lo: cond.v.getTime(), hi: cond.v.getTime() } : 'none';
    case 'exists':
      return (cond.f === L || cond.f === H) && cond.v ? { lo: -Infinity, hi: Infinity } : 'none';
    case 'and': {
      let w: { lo: number; hi: number } | 'none' = 'none';
      for (const c of cond.c) {
        const x = windowOf(c);
        if (x === 'none') continue;
        w = w === 'none' ? x : { lo: Math.max(w.lo, x.lo), hi: Math.min(w.hi, x.hi) };
      }
      return w;
    }
    case 'or': {
      let w: { lo: number; hi: number } | undefined;
      for (const c of cond.c) {
        const x = windowOf(c);
        if (x === 'none') return 'none';
        w = w ? { lo: Math.min(w.lo, x.lo), hi: Math.max(w.hi, x.hi) } : x;
      }
      return w ?? 'none';
    }
    default:
      return 'none';
  }
}

/**
 * The part of `cond` an entry can decide: atoms on fields the entry lacks become TRUE where they
 * only narrow the result and FALSE under a negation, so the projection never drops a match.
 */
export function project(cond: Cond, fields: Set<string>, positive: boolean): Cond {
  const known = (f: string) => f === '_id' || (f.startsWith('idx.') && fields.has(f.slice(4).split('.')[0]));
  switch (cond.k) {
    case 'and':
      return and(cond.c.map((c) => project(c, fields, positive)));
    case 'or':
      return or(cond.c.map((c) => project(c, fields, positive)));
    case 'nor':
      return { k: 'nor', c: cond.c.map((c) => project(c, fields, !positive)) };
    case 'const':
      return cond;
    default:
      return known(cond.f) ? cond : positive ? TRUE : FALSE;
  }
}

// ---------------------------------------------------------------- helpers

function dateRangeOf(idx: Idx): { l: number; h: number } | undefined {
  const { l, h } = (idx.date ?? {}) as { l?: unknown; h?: unknown };
  if (!(l instanceof Date) || !(h instanceof Date)) return undefined;
  return { l: l.getTime(), h: h.getTime() };
}

function spanKeys(r: { l: number; h: number }, unit: number, max: number, key: (t: number) => string): string[] {
  const first = Math.floor(r.l / unit);
  const lastUnit = Math.floor(r.h / unit);
  if (lastUnit - first + 1 > max || !Number.isFinite(first) || !Number.isFinite(lastUnit)) return ['long'];
  const out: string[] = [];
  for (let u = first; u <= lastUnit; u++) out.push(key(u * unit));
  return out;
}

function dayKey(t: number): string {
  return new Date(t).toISOString().slice(0, 10);
}

/** Start (ms) of a day key (`2024-03-01`) or an hour key (`2024-03-01T10`). */
function unitStart(unit: string): number {
  return Date.parse(unit.length === 10 ? `${unit}T00:00:00Z` : `${unit}:00:00Z`);
}

function hourKey(t: number): string {
  return new Date(t).toISOString().slice(0, 13);
}

function bareCode(token: string): string | undefined {
  const code = token.slice(token.lastIndexOf('|') + 1);
  return code === '' ? undefined : code;
}

function bareCodes(tokens: unknown): string[] {
  if (!Array.isArray(tokens)) return [];
  const out = new Set<string>();
  for (const t of tokens) {
    const c = typeof t === 'string' ? bareCode(t) : undefined;
    if (c) out.add(c);
  }
  return [...out];
}

function pick(idx: Idx, fields: Set<string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(idx)) if (fields.has(k.split('.')[0])) out[k] = v;
  return out;
}

/** Identifies an entry's content, so staging and storing the same version twice is harmless. */
function token(e: Entry): string {
  return `${e.i} ${JSON.stringify(e.x)}`;
}

function push(m: Map<string, Entry[]>, key: string, e: Entry): void {
  const list = m.get(key);
  if (list) list.push(e);
  else m.set(key, [e]);
}
