import type { Cond } from '../../search/cond';
import type { Idx } from '../../search/types';

/**
 * Value bands of Observation.value (the `value-quantity` index values) for the population
 * query ("who is desaturating": a code and a value threshold across patients). A value falls
 * in the band of its leading decimal digit and exponent: in UCUM base units when it has a UCUM
 * unit (`u`: what `|http://unitsofmeasure.org|%` compares; 87 % is in `u-1:8` = [0.8, 0.9)),
 * else as sent (`v`: what `value-quantity=lt90` and `|system|code` compare; `v1:8` = [80, 90)).
 * A threshold then reads the few bands that can hold a match, and the abnormal values a
 * population query looks for sit in bands apart from the normal ones. One kind per value keeps
 * the writes down; a bound on the value as sent cannot tell `u` bands apart (they all may match).
 *
 * Bounds within one part in 10^9 of a band edge count as the edge (90 % in base units is
 * 0.9000000000000001, which must not pull in the band [0.9, 1)).
 */

const FIELD = 'value-quantity';
const EPS = 1e-9;

/** The band of one number: `<kind><exponent>:<digit>`, `<kind>-<exponent>:<digit>` below zero written `<kind>n…`. */
export function bandOf(kind: 'v' | 'u', x: number): string | undefined {
  if (!Number.isFinite(x)) return undefined;
  if (x === 0) return `${kind}z`;
  const [mant, exp] = Math.abs(x).toExponential().split('e');
  return `${kind}${x < 0 ? 'n' : ''}${Number(exp)}:${mant[0]}`;
}

/** The closed interval a band covers (its open end taken as closed, which only widens it). */
export function bandRange(band: string): { lo: number; hi: number } | undefined {
  const m = /^[vu](n?)(-?\d+):(\d)$/.exec(band);
  if (band.slice(1) === 'z') return { lo: 0, hi: 0 };
  if (!m) return undefined;
  const lo = Number(`${m[3]}e${m[2]}`);
  const hi = Number(`${Number(m[3]) + 1}e${m[2]}`);
  return m[1] === 'n' ? { lo: -hi, hi: -lo } : { lo, hi };
}

/** The bands a version's values fall in: base units when it has them (none without a quantity value). */
export function bandsOf(idx: Idx): string[] {
  const q = idx[FIELD];
  if (!q || typeof q !== 'object' || Array.isArray(q)) return [];
  const entries = Object.entries(q as Record<string, unknown>);
  const base = entries.filter(([sub]) => sub.startsWith('u:'));
  const [kind, chosen] = base.length > 0 ? (['u', base] as const) : (['v', entries.filter(([sub]) => sub === 'v')] as const);
  const out = new Set<string>();
  for (const [, vals] of chosen) {
    if (!Array.isArray(vals)) continue;
    for (const x of vals) {
      const b = typeof x === 'number' ? bandOf(kind, x) : undefined;
      if (b) out.add(b);
    }
  }
  return [...out];
}

/** The band kind a condition field compares: `u` for base units, `v` for the value as sent. */
function kindOf(field: string): 'v' | 'u' | undefined {
  if (!field.startsWith(`idx.${FIELD}.`)) return undefined;
  return field.slice(`idx.${FIELD}.`.length).startsWith('u:') ? 'u' : 'v';
}

/** Whether `cond` bounds the value in every alternative (then the bands can serve it). */
export function boundsValue(cond: Cond): boolean {
  switch (cond.k) {
    case 'range':
      return kindOf(cond.f) !== undefined;
    case 'and':
      return cond.c.some(boundsValue);
    case 'or':
      return cond.c.length > 0 && cond.c.every(boundsValue);
    default:
      return false;
  }
}

/**
 * Whether an entry in `band` may satisfy `cond`. A base-unit bound needs only `u` bands (an
 * entry in a `v` band has no base-unit value); a bound on the value as sent may match any `u` band.
 */
export function bandMayMatch(cond: Cond, band: string): boolean {
  switch (cond.k) {
    case 'and':
      return cond.c.every((c) => bandMayMatch(c, band));
    case 'or':
      return cond.c.some((c) => bandMayMatch(c, band));
    case 'const':
      return cond.v;
    case 'range': {
      const kind = kindOf(cond.f);
      if (!kind) return true;
      if (band[0] !== kind) return kind === 'v';
      const r = bandRange(band);
      if (!r) return true;
      const tol = (x: number) => EPS * Math.abs(x);
      const num = (x: unknown) => (typeof x === 'number' ? x : undefined);
      const { gt, gte, lt, lte } = { gt: num(cond.b.gt), gte: num(cond.b.gte), lt: num(cond.b.lt), lte: num(cond.b.lte) };
      if (lt !== undefined && r.lo >= lt - tol(lt)) return false;
      if (lte !== undefined && r.lo > lte + tol(lte)) return false;
      if (gt !== undefined && r.hi <= gt + tol(gt)) return false;
      if (gte !== undefined && r.hi < gte - tol(gte)) return false;
      return true;
    }
    default:
      return true;
  }
}
