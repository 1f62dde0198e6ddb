import type { Collection } from 'mongodb';
import type { AccessPolicy } from '../../auth/types';
import { type Cond, evaluate } from '../../search/cond';
import { findByIds } from '../lookup';
import type { CurrentDoc } from '../types';
import type { IndexFn } from '../versions';
import type { BucketPlan } from './bucket-plan';
import type { BucketIndex, Candidate } from './buckets';
import { DATE_SORT, type SortKey, sortValue } from './keys';
import { restoreDecimals } from '../../json';
import { WALK_PARAMS, evaluable, indexView, paramsOfCond, rebuildCarried } from './carried-index';
import { groupMayMatch } from './newest';
import type { Entry } from './bucket-store';
import { carriedOf } from './entry-codec';

/** A bucket walk's inputs: the buckets, the collection its candidates are read from, the exact checks. */
export interface WalkInput {
  buckets: BucketIndex;
  col: Collection<CurrentDoc>;
  plan: BucketPlan;
  cond: Cond;
  policy: AccessPolicy;
  /** Recomputes the index values carried documents leave out (see CarriedDoc). */
  index: IndexFn;
}

/**
 * Fetches candidates by `_id`, each id once, keeping in `found` the current documents that
 * exactly match (and `extra`), are not deleted and may be read. Carried documents are indexed
 * only for the parameters these checks and the walk read (carried-index.ts).
 */
function candidateFetcher(w: WalkInput, extra?: Cond): { found: CurrentDoc[]; fetch: (cands: Candidate[]) => Promise<void> } {
  const fetched = new Set<string>();
  const pc = w.policy.readCond(w.col.collectionName);
  const params = paramsOfCond(pc, paramsOfCond(extra, paramsOfCond(w.cond, new Set(WALK_PARAMS))));
  const found: CurrentDoc[] = [];
  const fetch = async (cands: Candidate[]) => {
    // Carried documents are current (see buckets.ts); the others are read by `_id`.
    const carried = new Map<string, CurrentDoc>();
    for (const c of cands) {
      const d = fetched.has(c.i) || carried.has(c.i) ? undefined : carriedOf(c);
      if (d) carried.set(c.i, rebuildCarried(d, w.index, params, restoreDecimals));
    }
    const ids = [...new Set(cands.map((c) => c.i))].filter((id) => !fetched.has(id) && !carried.has(id));
    for (const id of [...ids, ...carried.keys()]) fetched.add(id);
    const docs = [...carried.values(), ...(await findByIds(w.col, ids)).map(restoreDecimals)];
    for (const d of docs) {
      const e = evaluable(d);
      if (!d.deleted && evaluate(w.cond, e) && (!extra || evaluate(extra, e)) && (!pc || evaluate(pc, e))) found.push(d);
    }
  };
  return { found, fetch };
}

/**
 * Walks a bucket plan and fetches candidates in the order their entries give, a page's worth
 * at a time, so a first page reads about `limit` documents. A match is certain to be in order
 * (settled) once no unread day and no unfetched entry can come before it; the walk stops when
 * `limit` matches are settled and returns only settled ones (a later page refinds the rest).
 */
export async function collectCandidates(
  w: WalkInput,
  mode: 'none' | 'asc' | 'desc',
  from: number | undefined,
  afterCond: Cond | undefined,
  limit: number,
  afterId?: string,
  idDir: 1 | -1 = 1,
): Promise<CurrentDoc[]> {
  const { found, fetch } = candidateFetcher(w, afterCond);
  if (mode === 'none') {
    // `_id` order: every candidate id is known after the walk, so only the first page's worth
    // (in id order, past the boundary) is fetched, a chunk at a time.
    const ids: Candidate[] = [];
    for await (const step of w.buckets.walk(w.plan, w.cond, 'none')) ids.push(...step.ids);
    const past = (c: Candidate) => afterId === undefined || (idDir === 1 ? c.i > afterId : c.i < afterId);
    const todo = [...new Map(ids.filter(past).map((c) => [c.i, c])).values()];
    todo.sort((a, b) => (a.i < b.i ? -idDir : a.i > b.i ? idDir : 0));
    while (found.length < limit && todo.length > 0) await fetch(todo.splice(0, Math.min(limit - found.length + 2, 1000)));
    return found;
  }
  const pending: Candidate[] = [];
  let dayBound = mode === 'asc' ? -Infinity : Infinity;
  const settledCount = () => found.filter((d) => inRegion(d, mode, dayBound, pending[0])).length;
  walk: for await (const step of w.buckets.walk(w.plan, w.cond, mode, from)) {
    dayBound = step.bound;
    pending.push(...step.ids);
    pending.sort(candidateOrder(mode));
    for (;;) {
      const need = limit - settledCount();
      if (need <= 0) break walk;
      if (pending.length === 0) break;
      await fetch(pending.splice(0, Math.min(need + 2, 1000)));
    }
  }
  return found.filter((d) => inRegion(d, mode, dayBound, pending[0]));
}

/**
 * $lastn from a patient's buckets: walks the days newest first and fetches, per code, the
 * newest entries until `max` matches of that code are settled (see collectCandidates). With
 * one subject pinned it stops once every code still present in unread days is settled;
 * otherwise it reads every candidate.
 */
export async function lastnViaBuckets(w: WalkInput, max: number): Promise<CurrentDoc[]> {
  if (w.plan.subjectPinned && w.plan.patients?.length === 1) {
    const newest = await lastnFromNewest(w, w.plan.patients[0], max);
    if (newest) return newest;
  }
  const { found, fetch } = candidateFetcher(w);
  const pending = new Map<string, Candidate[]>();
  let dayBound = Infinity;
  const settledPerCode = () => {
    const n = new Map<string, number>();
    for (const d of found) if (inRegion(d, 'desc', dayBound, pending.get(codeOf(d))?.[0])) n.set(codeOf(d), (n.get(codeOf(d)) ?? 0) + 1);
    return n;
  };
  for await (const step of w.buckets.walk(w.plan, w.cond, 'desc')) {
    dayBound = step.bound;
    if (!w.plan.subjectPinned) {
      await fetch(step.ids);
      continue;
    }
    for (const c of step.ids) pending.set(c.c, [...(pending.get(c.c) ?? []), c]);
    for (const list of pending.values()) list.sort(candidateOrder('desc'));
    for (;;) {
      const settled = settledPerCode();
      const chunk: Candidate[] = [];
      for (const [code, list] of pending) {
        const short = max - (settled.get(code) ?? 0);
        if (short > 0 && list.length > 0) chunk.push(...list.splice(0, short + 1));
      }
      if (chunk.length === 0) break;
      await fetch(chunk);
    }
    const settled = settledPerCode();
    if ([...step.codesLeft].every((c) => (settled.get(c) ?? 0) >= max)) break;
  }
  found.sort(compareBy([{ field: DATE_SORT, dir: -1 }, { field: '_id', dir: 1 }]));
  const taken = new Map<string, number>();
  return found.filter((d) => {
    const key = `${String(indexView(d, 'subject').subject ?? '')} ${codeOf(d)}`;
    const n = taken.get(key) ?? 0;
    taken.set(key, n + 1);
    return n < max;
  });
}

/**
 * $lastn of one patient from its newest bucket (newest.ts): per code, the matches among the
 * groups' entries that no full group's unkept entries can precede; undefined when that leaves
 * a code short of `max` or an entry's resource has a later version (the caller walks instead).
 */
async function lastnFromNewest(w: WalkInput, patient: string, max: number): Promise<CurrentDoc[] | undefined> {
  const view = await w.buckets.newest(patient);
  if (view.touched.has('')) return undefined;
  const live = view.groups.filter((g) => groupMayMatch(w.cond, g.x));
  const cands: Candidate[] = [];
  /** Per `code:s`: the last kept entry of each full group (beyond it, entries are unknown). */
  const edges = new Map<string, Candidate[]>();
  for (const g of live) {
    const code = typeof g.x['code:s'] === 'string' ? g.x['code:s'] : '';
    const group = g.entries.map((e) => candidateOf(e, code));
    if (group.some((c) => view.touched.has(c.i))) return undefined;
    cands.push(...group);
    edges.set(code, [...(edges.get(code) ?? []), ...(g.full ? [group[group.length - 1]] : [])]);
  }
  const { found, fetch } = candidateFetcher(w);
  await fetch(cands);
  const order = compareBy([{ field: DATE_SORT, dir: -1 }, { field: '_id', dir: 1 }]);
  found.sort(order);
  const out: CurrentDoc[] = [];
  for (const [code, ends] of edges) {
    const known = (d: CurrentDoc) => ends.every((e) => dateMs(d) > e.l || (dateMs(d) === e.l && d._id <= e.i));
    const settled = found.filter((d) => codeOf(d) === code && known(d));
    if (settled.length < max && ends.length > 0) return undefined;
    out.push(...settled.slice(0, max));
  }
  return out.sort(order);
}

function candidateOf(e: Entry, code: string): Candidate {
  const l = (e.x.date as { l?: unknown } | undefined)?.l;
  const d = carriedOf(e);
  return { i: e.i, l: l instanceof Date ? l.getTime() : -Infinity, c: code, ...(d ? { d } : {}) };
}

function codeOf(d: CurrentDoc): string {
  const v = indexView(d, 'code')['code:s'];
  return typeof v === 'string' ? v : '';
}

function dateMs(d: CurrentDoc): number {
  const v = sortValue(d, DATE_SORT);
  return v instanceof Date ? v.getTime() : -Infinity;
}

/**
 * Whether a match lies in the part of the date order a bucket walk has completed: within the
 * days read (`dayBound`) and strictly before the next unfetched entry, whose document may tie.
 */
function inRegion(d: CurrentDoc, mode: 'asc' | 'desc', dayBound: number, next?: Candidate): boolean {
  const x = dateMs(d);
  if (mode === 'desc') return x >= dayBound && (!next || x > next.l);
  return x <= dayBound && (!next || x < next.l);
}

/** Candidates in walk order: by their entry's date, then id. */
function candidateOrder(mode: 'asc' | 'desc'): (a: Candidate, b: Candidate) => number {
  const num = (x: number, y: number) => (x === y ? 0 : x < y ? -1 : 1);
  return (a, b) => (mode === 'desc' ? num(b.l, a.l) : num(a.l, b.l)) || (a.i < b.i ? -1 : a.i > b.i ? 1 : 0);
}

/** MongoDB's order for the keys a bucket walk serves (`_id` strings, dates with missing lowest). */
export function compareBy(order: SortKey[]): (a: CurrentDoc, b: CurrentDoc) => number {
  return (a, b) => {
    for (const k of order) {
      const c = k.field === '_id' ? (a._id < b._id ? -1 : a._id > b._id ? 1 : 0) : dateMs(a) - dateMs(b);
      if (c !== 0 && !Number.isNaN(c)) return c * k.dir;
    }
    return 0;
  };
}
