import type { Cond } from '../../search/cond';
import { evaluate } from '../../search/cond';
import type { Entry } from './bucket-store';
import { carries, encodeEntry } from './entry-codec';
import { project } from './bucket-plan';

/**
 * A patient's newest readings, one small bucket per patient (`Observation|n|Patient/x`): for each
 * signature (the `code`, `code:s` and `category` index values an Observation has) the newest
 * NEWEST_PER_GROUP entries, each carrying its document as `pc` entries do. `$lastn` of one
 * patient, the console's "latest vitals", is then one point read instead of three waves of them
 * (the patient's directory, the directories of each of its codes, the newest block of each).
 *
 * Unlike every other bucket this one is kept trimmed: the outbox's store reads it, adds the new
 * entries and writes back what `trimNewest` keeps (only one process stores buckets; see
 * bucket-store.ts). Readers add the staged entries and trim again, so what they see is exactly
 * the newest entries of every signature over stored and staged.
 *
 * Why exact: every entry of a signature group has the same code and category values, so a
 * condition over those fields decides the whole group from any one entry (`groupMayMatch`); a
 * group holding fewer than NEWEST_PER_GROUP entries holds all of them; a full group is a prefix
 * of its entries in `$lastn` order (date newest first, then id), so its matches are the newest
 * of its matches, up to its last entry. A reader that cannot settle a code from these prefixes,
 * or meets an entry whose resource has had a later version (a `touched` marker), walks the
 * patient's buckets instead.
 */

/** Entries kept per signature: `$lastn` with `max` up to this is answered from the bucket. */
export const NEWEST_PER_GROUP = 3;
/** Index values an entry holds: the date for the order, the rest its signature. */
export const NEWEST_FIELDS = new Set(['date', 'code', 'code:s', 'category']);
const SIGNATURE_FIELDS = new Set(['code', 'code:s', 'category']);
/** Bytes of carried documents the bucket keeps; entries beyond go without (read by `_id`). */
const NEWEST_CARRY_BYTES = 300_000;
/** Touched markers kept by id; past this one marker (id '') says "every entry may be stale". */
const MAX_TOUCHED = 200;

export function newestKey(patient: string): string {
  return `Observation|n|${patient}`;
}

export function isNewestKey(key: string): boolean {
  return key.startsWith('Observation|n|');
}

/** The marker a later version of `id` leaves in the buckets of its (old and new) patients. */
export function touchedEntry(id: string): Entry {
  return { i: id, x: { t: 1 } };
}

function isTouched(e: Entry): boolean {
  return e.x.t === 1;
}

function dateLow(e: Entry): number {
  const l = (e.x.date as { l?: unknown } | undefined)?.l;
  return l instanceof Date ? l.getTime() : -Infinity;
}

/** `$lastn` order: newest first (undated last), then id. */
export function newestOrder(a: Entry, b: Entry): number {
  const x = dateLow(a);
  const y = dateLow(b);
  if (x !== y) return x > y ? -1 : 1;
  return a.i < b.i ? -1 : a.i > b.i ? 1 : 0;
}

/** The signature of an entry: its index values but the date. */
function signature(e: Entry): string {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e.x)) if (SIGNATURE_FIELDS.has(k.split('.')[0])) out[k] = v;
  return JSON.stringify(out);
}

/** Groups of a newest bucket's entries (stored and staged, each entry once), and its touched ids. */
export interface NewestView {
  groups: { x: Record<string, unknown>; entries: Entry[]; full: boolean }[];
  touched: Set<string>;
}

/** What a newest bucket keeps of these entries (the writer's trim; readers group the same way). */
export function trimNewest(entries: readonly Entry[]): Entry[] {
  const view = viewNewest(entries);
  const touched = view.touched.size > MAX_TOUCHED || view.touched.has('') ? [''] : [...view.touched];
  let carried = 0;
  const kept: Entry[] = [];
  for (const g of view.groups) {
    for (const e of g.entries) {
      if (!carries(e)) {
        kept.push(e);
        continue;
      }
      const bytes = encodeEntry(e).length;
      carried += bytes;
      kept.push(carried > NEWEST_CARRY_BYTES ? { i: e.i, x: e.x } : e);
    }
  }
  return [...kept, ...touched.map(touchedEntry)];
}

/** The entries grouped by signature, each group its newest NEWEST_PER_GROUP in order. */
export function viewNewest(entries: readonly Entry[]): NewestView {
  const touched = new Set<string>();
  const bySig = new Map<string, { x: Record<string, unknown>; all: Map<string, Entry> }>();
  for (const e of entries) {
    if (isTouched(e)) {
      touched.add(e.i);
      continue;
    }
    const sig = signature(e);
    const g = bySig.get(sig) ?? { x: e.x, all: new Map<string, Entry>() };
    // The same version twice (stored, then staged again) counts once; a carried copy wins.
    const key = `${e.i} ${dateLow(e)}`;
    const had = g.all.get(key);
    if (!had || (!carries(had) && carries(e))) g.all.set(key, e);
    bySig.set(sig, g);
  }
  const groups = [...bySig.values()].map((g) => {
    const sorted = [...g.all.values()].sort(newestOrder);
    return { x: g.x, entries: sorted.slice(0, NEWEST_PER_GROUP), full: sorted.length >= NEWEST_PER_GROUP };
  });
  return { groups, touched };
}

/**
 * Whether entries with these signature values can match `cond` (false: none of the group ever
 * can). Conditions on other fields count as possibly true.
 */
export function groupMayMatch(cond: Cond, x: Record<string, unknown>): boolean {
  const sigOnly: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(x)) if (SIGNATURE_FIELDS.has(k.split('.')[0])) sigOnly[k] = v;
  const c = project(cond, SIGNATURE_FIELDS, true, false);
  return c.k === 'const' ? c.v : evaluate(c, { idx: sigOnly });
}
