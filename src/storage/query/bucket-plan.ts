import { type Cond, FALSE, TRUE, and, or } from '../../search/cond';
import { boundsValue } from './value-bands';

/**
 * Condition analysis for the candidate buckets: what a query pins down (patients, codes, tokens,
 * a time window), and the part of a condition an entry's copied index values can decide.
 */

/** What a query pins down, found by analysing its condition. */
export interface BucketPlan {
  patients?: string[];
  codes?: string[];
  /** Ids pinned by `_id`: read directly. */
  ids?: string[];
  /** Token-list bucket keys (`<Type>|t|<param>|<token>`): every match is in one of them. */
  tokens?: string[];
  /** With `patients`: the codes pinned too; then the patient-and-code buckets serve the walk. */
  patientCodes?: string[];
  /** With `codes`: the condition bounds the value, so the value bands serve the walk (value-bands.ts). */
  byValue?: boolean;
  /** Pinned via `subject`/`patient` (not only the compartment): one subject, so `$lastn` may stop early. */
  subjectPinned: boolean;
  window?: { lo: number; hi: number };
}

/** Token parameters kept as candidate lists for every type (identifier lookups, canonical urls). */
export const TOKEN_PARAMS: readonly string[] = ['identifier', 'url'];
/** More alternatives than this are not worth a bucket read each. */
const MAX_PINS = 20;
/** Up to this many pinned ids, point reads beat one scan. */
const MAX_IDS = 1000;

export function tokenKey(type: string, param: string, value: string): string {
  return `${type}|t|${param}|${value}`;
}

/** Token values worth a list: not `system|` alone (it holds every value of the system). */
export function listedToken(v: unknown): v is string {
  return typeof v === 'string' && v !== '' && !v.endsWith('|');
}

const patientRef = (v: unknown) => (typeof v === 'string' && v.startsWith('Patient/') ? v : undefined);

/**
 * What `cond` pins down; undefined when the buckets cannot bound the query. `dateOrder`: the
 * caller needs the date order, which token lists do not give.
 */
export function planOf(type: string, cond: Cond, dateOrder: boolean): BucketPlan | undefined {
  if (!dateOrder) {
    const ids = pins(cond, (f) => f === '_id', (v) => (typeof v === 'string' ? v : undefined));
    if (ids && ids.length <= MAX_IDS) return { ids, subjectPinned: false };
    for (const param of TOKEN_PARAMS) {
      const vals = pins(cond, (f) => f === `idx.${param}`, (v) => (listedToken(v) ? v : undefined));
      if (vals && vals.length <= MAX_PINS) return { tokens: vals.map((v) => tokenKey(type, param, v)), subjectPinned: false };
    }
  }
  if (type !== 'Observation') return undefined;
  const subjects = pins(cond, (f) => f === 'idx.subject' || f === 'idx.patient', patientRef);
  const patients = subjects ?? pins(cond, (f) => f === 'comp', patientRef);
  const win = windowOf(cond);
  const window = win === 'none' ? undefined : win;
  const codes = pins(cond, (f) => f === 'idx.code', (v) => (typeof v === 'string' ? bareCode(v) : undefined));
  if (patients && patients.length <= MAX_PINS) {
    const plan: BucketPlan = { patients, subjectPinned: subjects !== undefined && subjects.length === 1, window };
    if (codes && patients.length * codes.length <= MAX_PINS) plan.patientCodes = codes;
    return plan;
  }
  // Any window, or none: the code directory lists the hours that hold entries.
  if (codes && codes.length <= MAX_PINS) return { codes, subjectPinned: false, window, ...(boundsValue(cond) ? { byValue: true } : {}) };
  return undefined;
}

export function bareCode(token: string): string | undefined {
  const code = token.slice(token.lastIndexOf('|') + 1);
  return code === '' ? undefined : code;
}

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
      // Times are whole milliseconds: a strict bound excludes its own instant, so `lt` midnight
      // does not pull in the day starting then (entries spanning into it are in earlier days too).
      const at = (v: unknown, step: number) => {
        const t = ms(v);
        return t === undefined ? undefined : t + step;
      };
      for (const v of [at(b.gt, 1), at(b.gte, 0)]) if (v !== undefined) lo = Math.max(lo, v);
      for (const v of [at(b.lt, -1), at(b.lte, 0)]) if (v !== undefined) hi = Math.min(hi, v);
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
 * `ids` false: conditions on `_id` too (a projection decided for a group of entries, not one).
 */
export function project(cond: Cond, fields: Set<string>, positive: boolean, ids = true): Cond {
  const known = (f: string) => (ids && f === '_id') || (f.startsWith('idx.') && fields.has(f.slice(4).split('.')[0]));
  switch (cond.k) {
    case 'and':
      return and(cond.c.map((c) => project(c, fields, positive, ids)));
    case 'or':
      return or(cond.c.map((c) => project(c, fields, positive, ids)));
    case 'nor':
      return { k: 'nor', c: cond.c.map((c) => project(c, fields, !positive, ids)) };
    case 'const':
      return cond;
    default:
      return known(cond.f) ? cond : positive ? TRUE : FALSE;
  }
}

