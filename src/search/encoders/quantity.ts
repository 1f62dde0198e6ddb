import { UcumLhcUtils } from '@lhncbc/ucum-lhc';
import type { Quantity } from 'fhir/r4';
import { type Cond, or } from '../cond';
import type { Encoder, Idx, SearchParam, TypedValue } from '../types';
import { escapeKey, invalid, pushAll, splitEscaped, splitPrefix, unescapeValue } from './common';
import { numberCond, parseNumber } from './number';

export const UCUM = 'http://unitsofmeasure.org';
const QUANTITY_TYPES = new Set(['Quantity', 'Age', 'Duration', 'Distance', 'Count', 'SimpleQuantity', 'MoneyQuantity']);

const utils = UcumLhcUtils.getInstance();

/** A UCUM unit's base-unit dimension and, for linear units, its factor (conversion is slow; cached). */
interface UnitInfo {
  dim: string;
  factor?: number;
}
const unitCache = new Map<string, UnitInfo | null>();

function unitInfo(code: string): UnitInfo | null {
  let u = unitCache.get(code);
  if (u === undefined) {
    const r = utils.convertToBaseUnits(code, 1);
    if (r.status === 'succeeded' && r.unitToExp && typeof r.magnitude === 'number') {
      const dim =
        Object.entries(r.unitToExp)
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
          .map(([k, e]) => `${k}${e}`)
          .join('_') || '1';
      const zero = utils.convertToBaseUnits(code, 0);
      // Offset units (Cel, [degF]) are not a plain factor: convert those value by value.
      u = { dim, factor: zero.magnitude === 0 ? r.magnitude : undefined };
    } else u = null;
    if (unitCache.size > 5000) unitCache.clear();
    unitCache.set(code, u);
  }
  return u;
}

/** The UCUM base-unit dimension of a unit (e.g. `g1_m-1_s-2` for mm[Hg]); null when not UCUM. */
export function canonicalUnit(code: string): string | null {
  return unitInfo(code)?.dim ?? null;
}

/** A value in UCUM base units (handles offset units such as Cel). */
export function toCanonical(code: string, value: number): number | undefined {
  const u = unitInfo(code);
  if (!u) return undefined;
  if (u.factor !== undefined) return value * u.factor;
  const r = utils.convertToBaseUnits(code, value);
  return r.status === 'succeeded' && typeof r.magnitude === 'number' ? r.magnitude : undefined;
}

const P = (f: string) => `idx.${f}`;

/**
 * Quantities are stored as numbers in buckets, because FerretDB cannot `$elemMatch` objects:
 * `v` (any unit), `u:<UCUM dimension>` (value in base units), `s:<system|code>` and `c:<code>`.
 * A query picks the bucket its unit names and compares numbers there.
 */
export const quantityEncoder: Encoder = {
  modifiers: [],
  index(_param, values: TypedValue[], idx: Idx, field) {
    let min: number | undefined;
    for (const { type, value } of values) {
      if (!QUANTITY_TYPES.has(type) || !value) continue;
      const q = value as Quantity;
      if (typeof q.value !== 'number') continue;
      pushAll(idx, `${field}.v`, [q.value]);
      min = min === undefined ? q.value : Math.min(min, q.value);
      if (q.code) {
        pushAll(idx, `${field}.${escapeKey(`s:${q.system ?? ''}|${q.code}`)}`, [q.value]);
        pushAll(idx, `${field}.${escapeKey(`c:${q.code}`)}`, [q.value]);
        if (q.system === UCUM) {
          const dim = canonicalUnit(q.code);
          const cv = dim ? toCanonical(q.code, q.value) : undefined;
          if (dim && cv !== undefined) pushAll(idx, `${field}.${escapeKey(`u:${dim}`)}`, [cv]);
        }
      }
    }
    if (min !== undefined) idx[`${field}:s`] = min;
  },
  toCond(param, value, field) {
    if (value.modifier) throw invalid(param, 'modifier', value.modifier);
    return quantityCond(param, value.raw, P(field));
  },
  presenceField: (field) => P(`${field}.v`),
  sortField: (_p, field) => P(`${field}:s`),
};

export function quantityCond(param: SearchParam, raw: string, path: string): Cond {
  const parts = splitEscaped(raw, '|');
  if (parts.length !== 1 && parts.length !== 3) throw invalid(param, 'quantity', raw);
  const num = parts[0];
  const { rest } = splitPrefix(num);
  parseNumber(param, rest); // validates before any unit logic
  if (parts.length === 1) return numberCond(param, num, `${path}.v`, true);
  const system = unescapeValue(parts[1]);
  const code = unescapeValue(parts[2]);
  if (!code) {
    if (system) throw invalid(param, 'quantity (a system needs a code)', raw);
    return numberCond(param, num, `${path}.v`, true);
  }
  const ucumCond = (): Cond | undefined => {
    const dim = canonicalUnit(code);
    if (!dim) return undefined;
    return numberCond(param, num, `${path}.${escapeKey(`u:${dim}`)}`, true, (n) => toCanonical(code, n) ?? n);
  };
  if (system === UCUM) {
    const c = ucumCond();
    if (!c) throw invalid(param, 'UCUM unit', code);
    return c;
  }
  if (system) return numberCond(param, num, `${path}.${escapeKey(`s:${system}|${code}`)}`, true);
  const byCode = numberCond(param, num, `${path}.${escapeKey(`c:${code}`)}`, true);
  const c = ucumCond();
  return c ? or([byCode, c]) : byCode;
}
