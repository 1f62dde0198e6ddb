import { type Cond, TRUE, evaluate } from '../../search/cond';
import type { Idx } from '../../search/types';
import type { DecimalText } from '../../json';
import type { CurrentDoc } from '../types';
import { type BucketStore, type CarriedDoc, type Dir, type Entry, type Ops, emptyOps, pushEntry } from './bucket-store';
import { type BucketPlan, TOKEN_PARAMS, bareCode, listedToken, planOf, project, tokenKey } from './bucket-plan';
import { bandMayMatch, bandsOf } from './value-bands';
import type { Carrier } from './entry-codec';
import type { ErasePlan } from './erase-plan';
import { NEWEST_FIELDS, type NewestView, isNewestKey, newestKey, touchedEntry, trimNewest, viewNewest } from './newest';
import { DAY_MS, HOUR_MS, bareCodes, dateRangeOf, dayKey, hourKey, pick, spanKeys, unitStart } from './bucket-units';

/**
 * Candidate buckets for search on FerretDB (stored by bucket-store.ts).
 *
 * FerretDB 1.24 answers only a bare `{ _id }` filter from an index; every other filter scans the
 * whole collection. The remote-monitoring queries are narrow, though, so each version appends a
 * small entry (its id and a few index values) to documents keyed by `_id`:
 *
 * - `Observation|p|Patient/x|2024-03-01`: the patient's Observations of that UTC day, plus a
 *   directory `Observation|p|Patient/x` listing the days (and the `code:s` seen on each), so a
 *   query without a window walks the days newest first and `$lastn` knows which codes exist;
 * - `Observation|pc|Patient/x|8867-4|2024-03-01T06`: the patient's Observations of that code and
 *   six hours, each entry carrying the current document but its index values, which the reader
 *   recomputes for the few a page uses (see CarriedDoc): a query pinning patient and code, the
 *   commonest monitoring query, then needs no read per result; with a directory
 *   `Observation|pc|Patient/x|8867-4` listing the blocks and the ids whose entries may be stale;
 * - `Observation|c|8867-4|2024-03-01T10`: Observations of that code in that UTC hour;
 * - `Observation|cv|59408-5|u-1:8|2024-03-01`: Observations of that code whose value falls in
 *   that band (value-bands.ts) on that day, carrying documents as `pc` entries do, with the
 *   directory `Observation|cv|59408-5` of (day, band) pairs and touched ids: the population query;
 * - `Observation|n|Patient/x`: the patient's newest readings of each code, carrying documents,
 *   kept trimmed (newest.ts): `$lastn` of one patient;
 * - `<Type>|t|identifier|<token>` (and `url`): every type's resources holding that token, for
 *   identifier lookups (conditional creates, device resends) and canonical urls.
 *
 * The lists are a superset (an entry may belong to an older version or a deleted resource), so
 * readers fetch the current documents by `_id` and check the exact condition, the access policy
 * and `deleted` on each. A query the buckets cannot bound gets no plan.
 *
 * A document carried by a `pc` or `cv` entry stands in for that read, so it must be current:
 * every version past the first (updates, deletes) adds its id to the `t` unit ("touched") of the
 * `pc` directories of the (patient, code) pairs and the `cv` directories of the codes of that
 * version and of the one before it, where older entries of the id may lie; readers fetch touched ids by `_id` as elsewhere. Remote
 * monitoring readings are written once, so touched lists stay short.
 */

/**
 * Pair buckets hold six hours: the newest readings of a patient's codes (`$lastn`, a first
 * page) are then a few kB per code rather than a day's worth of documents.
 */
const PC_UNIT_MS = 6 * HOUR_MS;
/** An entry spanning more days (or hours, for code buckets) goes to the key's `long` bucket. */
const MAX_SPAN_DAYS = 31;
const MAX_SPAN_HOURS = 48;
/** Buckets read in parallel per step of a day walk (patients) or an hour walk (codes). */
const DAYS_PER_STEP = 3;
const HOURS_PER_STEP = 12;

/** Index values copied into entries: enough to discard most non-matches without a read. */
const PATIENT_FIELDS = new Set(['code', 'code:s', 'category', 'date', 'status']);
const PC_FIELDS = new Set(['date', 'code:s']);
/** A patient walk over more codes than this reads the patient's day buckets (and then each result by `_id`). */
const MAX_PC_OWNERS = 12;
/** Directory unit of a `pc` or `cv` directory listing touched ids (never a time key). */
const TOUCHED = 't';
const CODE_FIELDS = new Set(['code', 'date', 'value-quantity', 'status']);

/** Bumped when the bucket layout or the entry fields change: the buckets are then rebuilt. */
export const BUCKET_LAYOUT = 'v9';

/** The buckets the store keeps trimmed: the patients' newest readings (newest.ts). */
export const TRIMMED_BUCKETS = {
  is: isNewestKey,
  trim: trimNewest,
  // Entries gone from a trimmed bucket may have pushed others out: what is left proves nothing.
  afterRemoval: (kept: readonly Entry[]) => trimNewest([...kept, touchedEntry('')]),
};

/** The parts of a version the buckets need. */
export interface BucketSource {
  _id: string;
  idx: Idx;
  comp: string[];
  /** Version and time of the version (time buckets; absent for loaders that do not know them). */
  vid?: number;
  ts?: Date;
  deleted?: boolean;
  /** The resource and its decimal texts, when known: `pc` entries carry the document. */
  res?: CurrentDoc['res'];
  dec?: DecimalText[];
  /** Set for big resources (their `res` is a lean copy): never carried. */
  body?: string;
  /** Index values of the version before this one (vid > 1), where its older entries lie. */
  prior?: { idx?: Idx; comp?: string[] } | null;
}

/** A candidate: an id and the date low bound (ms, -Infinity when undated) and `code:s` its entry recorded; the document its entry carries (ids not touched). */
export interface Candidate extends Carrier {
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
/** Bucket kinds a walk reads (see the file comment). */
type Kind = 'c' | 'p' | 'pc' | 'cv';
/** What a walk reads: its owners' directories, and the ids whose carried documents may be stale. */
interface Route {
  kind: Kind;
  owners: string[];
  dirs: Dir[];
  touched: Set<string>;
}

export class BucketIndex {
  constructor(private readonly store: BucketStore) {}

  /** What `cond` pins down (see bucket-plan.ts). */
  plan(type: string, cond: Cond, dateOrder = false): BucketPlan | undefined {
    return planOf(type, cond, dateOrder);
  }

  /** The entries these (live) versions add. */
  opsOf(type: string, docs: readonly BucketSource[], ops: Ops = emptyOps()): Ops {
    for (const doc of docs) {
      if (type === 'Observation') this.touchedOps(doc, ops);
      if (doc.deleted || !doc.idx) continue;
      for (const param of TOKEN_PARAMS) {
        const v = doc.idx[param];
        for (const t of new Set(Array.isArray(v) ? v : [v])) if (listedToken(t)) pushEntry(ops, tokenKey(type, param, t), { i: doc._id, x: {} });
      }
      if (type === 'Observation') this.observationOps(doc, ops);
    }
    return ops;
  }

  private observationOps(doc: BucketSource, ops: Ops): void {
    const range = dateRangeOf(doc.idx);
    const codeS = typeof doc.idx['code:s'] === 'string' ? (doc.idx['code:s'] as string) : '';
    const days = range ? spanKeys(range, DAY_MS, MAX_SPAN_DAYS, dayKey) : ['none'];
    const carried = carriedDoc(doc);
    for (const p of new Set(doc.comp.filter((c) => c.startsWith('Patient/')))) {
      const entry = { i: doc._id, x: pick(doc.idx, PATIENT_FIELDS) };
      for (const d of days) pushEntry(ops, `Observation|p|${p}|${d}`, entry);
      this.store.addToDir(ops, `Observation|p|${p}`, days, codeS);
      pushEntry(ops, newestKey(p), { i: doc._id, x: pick(doc.idx, NEWEST_FIELDS), ...(carried ? { d: carried } : {}) });
    }
    const blocks = range ? spanKeys(range, PC_UNIT_MS, 4 * MAX_SPAN_DAYS, hourKey) : ['none'];
    for (const [p, code] of pairsOf(doc)) {
      const entry = { i: doc._id, x: pick(doc.idx, PC_FIELDS), ...(carried ? { d: carried } : {}) };
      for (const b of blocks) pushEntry(ops, `${pcKey(p, code)}|${b}`, entry);
      this.store.addToDir(ops, pcKey(p, code), blocks, codeS);
    }
    const bands = bandsOf(doc.idx);
    for (const code of bandedCodes(doc)) {
      const entry = { i: doc._id, x: pick(doc.idx, CODE_FIELDS), ...(carried ? { d: carried } : {}) };
      for (const b of bands) for (const d of days) pushEntry(ops, `${cvKey(code)}|${b}|${d}`, entry);
      for (const b of bands) this.store.addToDir(ops, cvKey(code), days, b);
    }
    const hours = range ? spanKeys(range, HOUR_MS, MAX_SPAN_HOURS, hourKey) : ['none'];
    for (const code of bareCodes(doc.idx.code)) {
      const entry = { i: doc._id, x: pick(doc.idx, CODE_FIELDS) };
      for (const h of hours) pushEntry(ops, `Observation|c|${code}|${h}`, entry);
      this.store.addToDir(ops, `Observation|c|${code}`, hours, '');
    }
  }

  /** A later version: its id is touched in the `pc` and `cv` directories of its and its predecessor's pairs and codes. */
  private touchedOps(doc: BucketSource, ops: Ops): void {
    if (!doc.deleted && (doc.vid ?? 1) <= 1) return;
    const dirs = new Set<string>();
    const patients = new Set<string>();
    for (const src of [doc, doc.prior]) {
      if (!src) continue;
      for (const [p, code] of pairsOf(src)) dirs.add(pcKey(p, code));
      for (const code of bandedCodes(src)) dirs.add(cvKey(code));
      for (const p of src.comp ?? []) if (p.startsWith('Patient/')) patients.add(p);
    }
    for (const key of dirs) this.store.addToDir(ops, key, [TOUCHED], doc._id);
    for (const p of patients) pushEntry(ops, newestKey(p), touchedEntry(doc._id));
  }

  /** A patient's newest readings per signature, stored and staged (newest.ts). */
  async newest(patient: string): Promise<NewestView> {
    const [entries] = await this.store.readEntries([newestKey(patient)]);
    return viewNewest(entries);
  }

  /**
   * Erasure (erase-plan.ts): the entries of resources `ids` in every bucket the versions `docs`
   * went to, and the directories of `patients`.
   */
  erasePlan(type: string, docs: readonly BucketSource[], ids: ReadonlySet<string>, patients: readonly string[]): ErasePlan {
    const plan: ErasePlan = { entries: [{ keys: [...this.opsOf(type, docs).buckets.keys()], ids: [...ids] }], dirs: [], dirCodes: [] };
    if (type !== 'Observation') return plan;
    const dirs = new Set([...patients.map((p) => `Observation|p|Patient/${p}`), ...docs.flatMap((d) => pairsOf(d).map(([p, code]) => pcKey(p, code)))]);
    for (const key of dirs) plan.dirs.push({ key, extra: ['long', 'none'] });
    // Value-band directories are shared by every patient: only the ids go.
    const bands = new Set(docs.flatMap((d) => bandedCodes(d).map(cvKey)));
    if (bands.size > 0) plan.dirCodes.push({ keys: [...bands], unit: TOUCHED, values: [...ids] });
    return plan;
  }

  /**
   * Walks the candidate ids of a plan in date order (`desc`/`asc` by `date.l`) or all at once
   * (`none`): a patient plan over the patients' days, a code plan over the codes' hours, each
   * from its directory, so only units holding entries are read; pinned ids and token lists only
   * at once. `from` skips units wholly beyond a paging boundary. Entries are pre-filtered with
   * the part of `cond` their copied index values can decide (a code entry holds the value, so a
   * threshold filters there).
   */
  async *walk(plan: BucketPlan, cond: Cond, order: Order, from?: number): AsyncGenerator<WalkStep> {
    if (plan.ids || plan.tokens) {
      const ids = plan.ids ? plan.ids.map((i) => ({ i, l: -Infinity, c: '' })) : await this.candidates(plan.tokens ?? [], TRUE);
      yield { ids, bound: order === 'asc' ? Infinity : -Infinity, codesLeft: new Set() };
      return;
    }
    const { kind, owners, dirs, touched } = await this.route(plan, cond);
    const byCode = kind === 'c';
    const unitMs = byCode ? HOUR_MS : kind === 'pc' ? PC_UNIT_MS : DAY_MS;
    // Pair buckets carry documents (more bytes per bucket): fewer read at once.
    const perStep = byCode ? HOURS_PER_STEP : kind === 'pc' ? Math.max(1, Math.floor(8 / owners.length)) : DAYS_PER_STEP;
    const pre = project(cond, byCode || kind === 'cv' ? CODE_FIELDS : kind === 'pc' ? PC_FIELDS : PATIENT_FIELDS, true);
    // unit (day or hour) -> owners having it; codes per unit
    const byUnit = new Map<string, { owners: string[]; codes: Set<string> }>();
    for (let i = 0; i < owners.length; i++) {
      for (const [unit, codes] of dirs[i]) {
        const slot = byUnit.get(unit) ?? { owners: [], codes: new Set<string>() };
        if (!slot.owners.includes(owners[i])) slot.owners.push(owners[i]);
        for (const c of codes) slot.codes.add(c);
        byUnit.set(unit, slot);
      }
    }
    const w = plan.window;
    const overlaps = (unit: string) => !w || (unitStart(unit) <= w.hi && unitStart(unit) + unitMs - 1 >= w.lo);
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
    const read = async (ds: string[]) => this.candidates(ds.flatMap(keysOf), pre, touched);
    // Spanning entries may start anywhere: they come first. Undated ones sort lowest (MongoDB's
    // order for a missing key), so they end a newest-first walk and start an oldest-first one;
    // a date window excludes them.
    const first = ['long', ...(order === 'asc' && !w ? ['none'] : [])].filter((d) => byUnit.has(d));
    const last = order !== 'asc' && !w && byUnit.has('none') ? ['none'] : [];
    const end = order === 'desc' ? -Infinity : Infinity;
    if (order === 'none') {
      yield { ids: await read([...first, ...units, ...last]), bound: -Infinity, codesLeft: new Set() };
      return;
    }
    let ids = await read(first);
    const noneLeft = last.length > 0 ? codesLeft(last) : new Set<string>();
    for (let i = 0; i < units.length; i += perStep) {
      const step = units.slice(i, i + perStep);
      ids = [...ids, ...(await read(step))];
      if (i + perStep >= units.length) break;
      const edge = step[step.length - 1];
      const left = codesLeft(units.slice(i + perStep));
      for (const c of noneLeft) left.add(c);
      yield { ids, bound: order === 'desc' ? unitStart(edge) : unitStart(edge) + unitMs - 1, codesLeft: left };
      ids = [];
    }
    yield { ids: [...ids, ...(await read(last))], bound: end, codesLeft: new Set() };
  }

  /**
   * Which buckets a walk reads: code plans the code buckets; patient plans the patient-and-code
   * buckets (their entries carry documents), for the pinned codes or else for every code the
   * patients' directories list, unless there are too many or a reading has no coded code (it is
   * in no pair bucket); then the patients' day buckets.
   */
  private async route(plan: BucketPlan, cond: Cond): Promise<Route> {
    const dirsOf = async (kind: Kind, owners: string[]): Promise<Route> => {
      const dirs = await this.store.readDirs(owners.map((o) => `Observation|${kind}|${o}`));
      return { kind, owners, dirs, touched: takeTouched(dirs) };
    };
    const banded = plan.codes && plan.byValue ? await this.bandRoute(plan.codes, cond) : undefined;
    if (banded) return banded;
    if (plan.codes) return dirsOf('c', plan.codes);
    const patients = plan.patients ?? [];
    if (plan.patientCodes) return dirsOf('pc', patients.flatMap((p) => (plan.patientCodes ?? []).map((c) => `${p}|${c}`)));
    const byPatient = await dirsOf('p', patients);
    const pairs: string[] = [];
    for (let i = 0; i < patients.length; i++) {
      const codes = new Set<string>();
      for (const cs of byPatient.dirs[i].values()) for (const c of cs) codes.add(c);
      for (const c of codes) {
        const code = bareCode(c);
        if (code === undefined) return byPatient;
        pairs.push(`${patients[i]}|${code}`);
      }
    }
    return pairs.length > 0 && pairs.length <= MAX_PC_OWNERS ? dirsOf('pc', [...new Set(pairs)]) : byPatient;
  }

  /**
   * A value-band walk: each (code, band) that may hold a match is an owner, its days (from the
   * code's directory) its units; the touched ids of the code's directory go with the first.
   */
  private async bandRoute(codes: string[], cond: Cond): Promise<Route | undefined> {
    const stored = await this.store.readDirs(codes.map(cvKey));
    const touched = takeTouched(stored);
    const owners: string[] = [];
    const dirs: Dir[] = [];
    codes.forEach((code, i) => {
      const byBand = new Map<string, Dir>();
      for (const [unit, values] of stored[i]) {
        for (const band of values) {
          if (!bandMayMatch(cond, band)) continue;
          const dir = byBand.get(band) ?? new Map<string, Set<string>>();
          dir.set(unit, new Set(['']));
          byBand.set(band, dir);
        }
      }
      for (const [band, dir] of byBand) {
        owners.push(`${code}|${band}`);
        dirs.push(dir);
      }
    });
    // Nothing excluded (a bound on the value as sent over base-unit bands): the code's hour
    // buckets hold the same candidates in fewer bytes.
    const all = stored.reduce((n, dir) => n + new Set([...dir.values()].flatMap((bs) => [...bs])).size, 0);
    if (owners.length > 0 && owners.length === all) return undefined;
    return { kind: 'cv', owners, dirs, touched };
  }

  /** Entries in these buckets that the pre-filter keeps, each (id, date, code) once. */
  private async candidates(keys: string[], pre: Cond, touched?: ReadonlySet<string>): Promise<Candidate[]> {
    const lists = await this.store.readEntries(keys);
    const out = new Map<string, Candidate>();
    for (const e of lists.flat() as Entry[]) {
      const date = (e.x.date as { l?: unknown } | undefined)?.l;
      const c: Candidate = { i: e.i, l: date instanceof Date ? date.getTime() : -Infinity, c: typeof e.x['code:s'] === 'string' ? (e.x['code:s'] as string) : '' };
      if (!touched?.has(e.i)) {
        if (e.d) c.d = e.d;
        if (e.t !== undefined) c.t = e.t;
      }
      const key = `${c.i} ${c.l} ${c.c}`;
      if (out.has(key)) continue;
      if (pre.k === 'const' ? pre.v : evaluate(pre, { _id: e.i, idx: e.x })) out.set(key, c);
    }
    return [...out.values()];
  }
}

/** Removes the touched units from directories read, returning their ids. */
function takeTouched(dirs: readonly Dir[]): Set<string> {
  const touched = new Set<string>();
  for (const dir of dirs) {
    for (const id of dir.get(TOUCHED) ?? []) touched.add(id);
    dir.delete(TOUCHED);
  }
  return touched;
}

function pcKey(patient: string, code: string): string {
  return `Observation|pc|${patient}|${code}`;
}

/** The (patient compartment, bare code) pairs of a version's index values. */
function pairsOf(src: { idx?: Idx; comp?: string[] }): [string, string][] {
  if (!src.idx) return [];
  const codes = bareCodes(src.idx.code);
  const out: [string, string][] = [];
  for (const p of new Set((src.comp ?? []).filter((c) => c.startsWith('Patient/')))) for (const code of codes) out.push([p, code]);
  return out;
}

/** What a `pc` or `cv` entry carries: the version as a point read would return it, but its index values (see CarriedDoc). */
function carriedDoc(doc: BucketSource): CarriedDoc | undefined {
  if (!doc.res || doc.body || doc.deleted || doc.vid === undefined || !(doc.ts instanceof Date)) return undefined;
  return { _id: doc._id, res: doc.res, ...(doc.dec?.length ? { dec: doc.dec } : {}), vid: doc.vid, ts: doc.ts, deleted: false, comp: doc.comp };
}

function cvKey(code: string): string {
  return `Observation|cv|${code}`;
}

/** Codes under which a version's value bands are kept (none without a quantity value). */
function bandedCodes(src: { idx?: Idx }): string[] {
  return src.idx && bandsOf(src.idx).length > 0 ? bareCodes(src.idx.code) : [];
}
