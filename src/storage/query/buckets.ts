import { type Cond, TRUE, evaluate } from '../../search/cond';
import type { Idx } from '../../search/types';
import { type BucketStore, type Entry, type Ops, emptyOps, pushEntry } from './bucket-store';
import { type BucketPlan, TOKEN_PARAMS, listedToken, planOf, project, tokenKey } from './bucket-plan';
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
 * - `Observation|c|8867-4|2024-03-01T10`: Observations of that code in that UTC hour;
 * - `<Type>|t|identifier|<token>` (and `url`): every type's resources holding that token, for
 *   identifier lookups (conditional creates, device resends) and canonical urls.
 *
 * The lists are a superset (an entry may belong to an older version or a deleted resource), so
 * readers fetch the current documents by `_id` and check the exact condition, the access policy
 * and `deleted` on each. A query the buckets cannot bound gets no plan.
 */

/** An entry spanning more days (or hours, for code buckets) goes to the key's `long` bucket. */
const MAX_SPAN_DAYS = 31;
const MAX_SPAN_HOURS = 48;
/** Buckets read in parallel per step of a day walk (patients) or an hour walk (codes). */
const DAYS_PER_STEP = 3;
const HOURS_PER_STEP = 12;

/** Index values copied into entries: enough to discard most non-matches without a read. */
const PATIENT_FIELDS = new Set(['code', 'code:s', 'category', 'date', 'status']);
const CODE_FIELDS = new Set(['code', 'date', 'value-quantity', 'status']);

/** Bumped when the bucket layout or the entry fields change: the buckets are then rebuilt. */
export const BUCKET_LAYOUT = 'v4';

/** The parts of a version the buckets need. */
export interface BucketSource {
  _id: string;
  idx: Idx;
  comp: string[];
  /** Version and time of the version (time buckets; absent for loaders that do not know them). */
  vid?: number;
  ts?: Date;
  deleted?: boolean;
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

export class BucketIndex {
  constructor(private readonly store: BucketStore) {}

  /** What `cond` pins down (see bucket-plan.ts). */
  plan(type: string, cond: Cond, dateOrder = false): BucketPlan | undefined {
    return planOf(type, cond, dateOrder);
  }

  /** The entries these (live) versions add. */
  opsOf(type: string, docs: readonly BucketSource[], ops: Ops = emptyOps()): Ops {
    for (const doc of docs) {
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
    for (const p of new Set(doc.comp.filter((c) => c.startsWith('Patient/')))) {
      const entry = { i: doc._id, x: pick(doc.idx, PATIENT_FIELDS) };
      for (const d of days) pushEntry(ops, `Observation|p|${p}|${d}`, entry);
      this.store.addToDir(ops, `Observation|p|${p}`, days, codeS);
    }
    const hours = range ? spanKeys(range, HOUR_MS, MAX_SPAN_HOURS, hourKey) : ['none'];
    for (const code of bareCodes(doc.idx.code)) {
      const entry = { i: doc._id, x: pick(doc.idx, CODE_FIELDS) };
      for (const h of hours) pushEntry(ops, `Observation|c|${code}|${h}`, entry);
      this.store.addToDir(ops, `Observation|c|${code}`, hours, '');
    }
  }

  /**
   * Erasure: removes the entries of resources `ids` from every bucket the versions `docs` went to
   * (and from what is staged), and the directories of `patients`. Erasure is rare and runs beside
   * few writes.
   */
  async erase(type: string, docs: readonly BucketSource[], ids: ReadonlySet<string>, patients: readonly string[]): Promise<number> {
    const removed = await this.store.eraseEntries(this.opsOf(type, docs).buckets.keys(), ids);
    if (type === 'Observation') for (const p of patients) await this.store.eraseDir(`Observation|p|Patient/${p}`, ['long', 'none']);
    return removed;
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
    const byCode = plan.codes !== undefined;
    const kind = byCode ? 'c' : 'p';
    const unitMs = byCode ? HOUR_MS : DAY_MS;
    const perStep = byCode ? HOURS_PER_STEP : DAYS_PER_STEP;
    const pre = project(cond, byCode ? CODE_FIELDS : PATIENT_FIELDS, true);
    const owners = (byCode ? plan.codes : plan.patients) ?? [];
    const dirs = await this.store.readDirs(owners.map((o) => `Observation|${kind}|${o}`));
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
    const read = async (ds: string[]) => this.candidates(ds.flatMap(keysOf), pre);
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

  /** Entries in these buckets that the pre-filter keeps, each (id, date, code) once. */
  private async candidates(keys: string[], pre: Cond): Promise<Candidate[]> {
    const lists = await this.store.readEntries(keys);
    const out = new Map<string, Candidate>();
    for (const e of lists.flat() as Entry[]) {
      const date = (e.x.date as { l?: unknown } | undefined)?.l;
      const c: Candidate = { i: e.i, l: date instanceof Date ? date.getTime() : -Infinity, c: typeof e.x['code:s'] === 'string' ? (e.x['code:s'] as string) : '' };
      const key = `${c.i} ${c.l} ${c.c}`;
      if (out.has(key)) continue;
      if (pre.k === 'const' ? pre.v : evaluate(pre, { _id: e.i, idx: e.x })) out.set(key, c);
    }
    return [...out.values()];
  }
}
