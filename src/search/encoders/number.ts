import { type Cond, and, not } from '../cond';
import type { Encoder, Idx, SearchParam, TypedValue } from '../types';
import { invalid, splitPrefix } from './common';

const NUM_RE = /^[+-]?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/;

/** A search number and the half-unit of its last significant digit (spec: precision ranges). */
export function parseNumber(param: SearchParam, s: string): { v: number; half: number } {
  const m = NUM_RE.exec(s);
  if (!m) throw invalid(param, 'number', s);
  const decimals = (m[2]?.length ?? 0) - Number(m[3] ?? 0);
  const v = Number(s);
  const half = 0.5 * 10 ** -decimals;
  // 1e999 is Infinity and 1e-999 underflows to 0: neither is the number the client wrote.
  const underflow = v === 0 && /[1-9]/.test(m[1] + (m[2] ?? ''));
  if (!Number.isFinite(v) || !Number.isFinite(half) || half === 0 || underflow) throw invalid(param, 'number (out of range)', s);
  // -0 is the number 0: the database must not see a negative zero.
  return { v: v === 0 ? 0 : v, half };
}

/** Number conditions over a numeric field (scalar, or array when `elem`). */
export function numberCond(param: SearchParam, raw: string, path: string, elem: boolean, scale?: (n: number) => number): Cond {
  const { prefix, rest } = splitPrefix(raw);
  const { v, half } = parseNumber(param, rest);
  const s = scale ?? ((n: number) => n);
  const r = (b: Record<string, number>): Cond => {
    // A unit conversion can carry a finite value out of range (1e300 Tm in metres).
    if (Object.values(b).some((n) => !Number.isFinite(n))) throw invalid(param, 'number (out of range in base units)', raw);
    return { k: 'range', f: path, elem, b };
  };
  switch (prefix) {
    case 'eq':
      return r({ gte: s(v - half), lt: s(v + half) });
    case 'ne':
      // Resources without a value are not "not equal" to anything.
      return and([{ k: 'exists', f: path, v: true }, not(r({ gte: s(v - half), lt: s(v + half) }))]);
    case 'gt':
    case 'sa':
      return r({ gt: s(v) });
    case 'lt':
    case 'eb':
      return r({ lt: s(v) });
    // The implied precision of the value counts (search.html#number): ge37 is "eq37 or gt37",
    // and eq37 means [36.5, 37.5), so ge37 matches 36.5 and le37 matches 37.4.
    case 'ge':
      return r({ gte: s(v - half) });
    case 'le':
      return r({ lt: s(v + half) });
    case 'ap': {
      const d = Math.max(Math.abs(v) * 0.1, half);
      return r({ gte: s(v - d), lte: s(v + d) });
    }
  }
}

export function numbers(values: TypedValue[]): number[] {
  const out: number[] = [];
  for (const { value } of values) {
    if (typeof value === 'number' && Number.isFinite(value)) out.push(value);
    else if (typeof value === 'string' && NUM_RE.test(value)) out.push(Number(value));
  }
  return out;
}

const P = (f: string) => `idx.${f}`;

export const numberEncoder: Encoder = {
  modifiers: [],
  index(param, values, idx: Idx, field) {
    const ns = numbers(values);
    if (ns.length === 0) return;
    if (param.single) idx[field] = ns[0];
    else {
      idx[field] = ns;
      idx[`${field}:s`] = Math.min(...ns);
    }
  },
  toCond(param, value, field) {
    if (value.modifier) throw invalid(param, 'modifier', value.modifier);
    return numberCond(param, value.raw, P(field), !param.single);
  },
  presenceField: (field) => P(field),
  sortField: (param, field) => P(param.single ? field : `${field}:s`),
};
