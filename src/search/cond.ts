import type { Document, Filter } from 'mongodb';

/**
 * The small condition language every encoder speaks. One interpreter turns it into a MongoDB
 * filter, the other evaluates it in memory over the same stored document shape, so a search and
 * a subscription match can never disagree. Only operators FerretDB 1.24 executes correctly are
 * used: $elemMatch appears only over arrays of scalars (FerretDB refuses it over objects).
 */
export type Scalar = string | number | boolean | Date | null;

export interface Bounds {
  gt?: Scalar;
  gte?: Scalar;
  lt?: Scalar;
  lte?: Scalar;
}

export type Cond =
  | { k: 'eq'; f: string; v: Scalar }
  | { k: 'in'; f: string; v: Scalar[] }
  | { k: 'nin'; f: string; v: Scalar[] }
  | { k: 'exists'; f: string; v: boolean }
  /** `elem`: all bounds hold for one element of an array field (`$elemMatch`); else plain bounds on a scalar. */
  | { k: 'range'; f: string; elem: boolean; b: Bounds }
  | { k: 'regex'; f: string; re: string }
  | { k: 'and' | 'or' | 'nor'; c: Cond[] }
  | { k: 'const'; v: boolean };

export const TRUE: Cond = { k: 'const', v: true };
export const FALSE: Cond = { k: 'const', v: false };

export function and(c: Cond[]): Cond {
  const parts = c.filter((x) => !(x.k === 'const' && x.v));
  if (parts.some((x) => x.k === 'const' && !x.v)) return FALSE;
  if (parts.length === 0) return TRUE;
  return parts.length === 1 ? parts[0] : { k: 'and', c: parts };
}

export function or(c: Cond[]): Cond {
  const parts = c.filter((x) => !(x.k === 'const' && !x.v));
  if (parts.some((x) => x.k === 'const' && x.v)) return TRUE;
  if (parts.length === 0) return FALSE;
  if (parts.length === 1) return parts[0];
  // OR of equalities on one field is one $in (an index can serve it).
  if (parts.every((p) => p.k === 'eq' || p.k === 'in')) {
    const f = (parts[0] as { f: string }).f;
    if (parts.every((p) => (p as { f: string }).f === f)) {
      const vals = parts.flatMap((p) => (p.k === 'eq' ? [p.v] : p.k === 'in' ? p.v : []));
      return { k: 'in', f, v: vals };
    }
  }
  return { k: 'or', c: parts };
}

export function not(c: Cond): Cond {
  if (c.k === 'const') return { k: 'const', v: !c.v };
  return { k: 'nor', c: [c] };
}

function boundsToMongo(b: Bounds): Document {
  const o: Document = {};
  if (b.gt !== undefined) o.$gt = b.gt;
  if (b.gte !== undefined) o.$gte = b.gte;
  if (b.lt !== undefined) o.$lt = b.lt;
  if (b.lte !== undefined) o.$lte = b.lte;
  return o;
}

/** MongoDB filter for a condition. */
export function toMongo(c: Cond): Filter<Document> {
  switch (c.k) {
    case 'eq':
      return { [c.f]: c.v };
    case 'in':
      return { [c.f]: { $in: c.v } };
    case 'nin':
      return { [c.f]: { $nin: c.v } };
    case 'exists':
      return { [c.f]: { $exists: c.v } };
    case 'range':
      return c.elem ? { [c.f]: { $elemMatch: boundsToMongo(c.b) } } : { [c.f]: boundsToMongo(c.b) };
    case 'regex':
      return { [c.f]: { $regex: c.re } };
    case 'and':
      return { $and: c.c.map(toMongo) };
    case 'or':
      return { $or: c.c.map(toMongo) };
    case 'nor':
      return { $nor: c.c.map(toMongo) };
    case 'const':
      return c.v ? {} : { _id: { $in: [] } };
  }
}

// ---- in-memory evaluation with MongoDB's semantics for the operators above ----

/** Values at a dotted path, descending through arrays the way MongoDB does; arrays at the leaf are kept. */
function valuesAt(doc: unknown, path: string): unknown[] {
  let cur: unknown[] = [doc];
  for (const seg of path.split('.')) {
    const next: unknown[] = [];
    for (const v of cur) {
      if (Array.isArray(v)) {
        for (const e of v) if (e && typeof e === 'object' && !(e instanceof Date) && seg in e) next.push((e as Record<string, unknown>)[seg]);
      } else if (v && typeof v === 'object' && !(v instanceof Date) && seg in (v as object)) {
        next.push((v as Record<string, unknown>)[seg]);
      }
    }
    cur = next;
  }
  return cur.filter((v) => v !== undefined);
}

function leaves(vals: unknown[]): unknown[] {
  return vals.flatMap((v) => (Array.isArray(v) ? v : [v]));
}

function kind(v: unknown): string {
  if (v instanceof Date) return 'date';
  if (v === null) return 'null';
  return typeof v;
}

/** MongoDB comparison within one type bracket; undefined when the types differ (no match). */
function cmp(a: unknown, b: unknown): number | undefined {
  if (kind(a) !== kind(b)) return undefined;
  if (a instanceof Date && b instanceof Date) return a.getTime() - b.getTime();
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
  if (a === null && b === null) return 0;
  return undefined;
}

function equals(a: unknown, b: Scalar): boolean {
  return cmp(a, b) === 0;
}

function inBounds(v: unknown, b: Bounds): boolean {
  const test = (bound: Scalar | undefined, ok: (n: number) => boolean) => {
    if (bound === undefined) return true;
    const c = cmp(v, bound);
    return c !== undefined && ok(c);
  };
  return test(b.gt, (c) => c > 0) && test(b.gte, (c) => c >= 0) && test(b.lt, (c) => c < 0) && test(b.lte, (c) => c <= 0);
}

const regexCache = new Map<string, RegExp>();
function regex(re: string): RegExp {
  let r = regexCache.get(re);
  if (!r) {
    r = new RegExp(re);
    if (regexCache.size > 1000) regexCache.clear();
    regexCache.set(re, r);
  }
  return r;
}

/** Evaluates a condition on a document (the CurrentDoc shape: `_id`, `idx`, `comp`). */
export function evaluate(c: Cond, doc: unknown): boolean {
  switch (c.k) {
    case 'eq': {
      const vals = valuesAt(doc, c.f);
      if (c.v === null) return vals.length === 0 || leaves(vals).some((v) => v === null);
      return leaves(vals).some((v) => equals(v, c.v));
    }
    case 'in': {
      const ls = leaves(valuesAt(doc, c.f));
      if (c.v.includes(null) && ls.length === 0) return true;
      return ls.some((v) => c.v.some((x) => equals(v, x)));
    }
    case 'nin':
      return !evaluate({ k: 'in', f: c.f, v: c.v }, doc);
    case 'exists':
      return (valuesAt(doc, c.f).length > 0) === c.v;
    case 'range': {
      const vals = valuesAt(doc, c.f);
      if (c.elem) return vals.some((v) => Array.isArray(v) && v.some((e) => inBounds(e, c.b)));
      // Plain bounds on an array: MongoDB lets each bound be met by any element.
      const ls = leaves(vals);
      return (Object.keys(c.b) as (keyof Bounds)[]).every((key) => ls.some((v) => inBounds(v, { [key]: c.b[key] })));
    }
    case 'regex': {
      const r = regex(c.re);
      return leaves(valuesAt(doc, c.f)).some((v) => typeof v === 'string' && r.test(v));
    }
    case 'and':
      return c.c.every((x) => evaluate(x, doc));
    case 'or':
      return c.c.some((x) => evaluate(x, doc));
    case 'nor':
      return !c.c.some((x) => evaluate(x, doc));
    case 'const':
      return c.v;
  }
}
