import { Errors } from '../../errors';
import type { SearchParam } from '../types';

/** Field names may not contain `.` or start with `$`; bucket keys (systems, units) are escaped. */
export function escapeKey(s: string): string {
  return s.replace(/%/g, '%25').replace(/\./g, '%2E').replace(/\$/g, '%24');
}

/** Case- and accent-folded form used by string search. */
export function normalise(s: string): string {
  return s
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/\s+/g, ' ')
    .trim();
}

export function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** Splits on an unescaped separator (`,` `|` `$`), keeping other escapes for the next level. */
export function splitEscaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === '\\' && i + 1 < s.length) {
      cur += ch + s[i + 1];
      i++;
    } else if (ch === sep) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

/** Removes search escapes (`\,` `\|` `\$` `\\`). */
export function unescapeValue(s: string): string {
  return s.replace(/\\([,|$\\])/g, '$1');
}

export type Prefix = 'eq' | 'ne' | 'gt' | 'lt' | 'ge' | 'le' | 'sa' | 'eb' | 'ap';
const PREFIXES = new Set<string>(['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap']);

export function splitPrefix(raw: string): { prefix: Prefix; rest: string } {
  const m = /^([a-z]{2})(.*)$/.exec(raw);
  if (m && PREFIXES.has(m[1])) return { prefix: m[1] as Prefix, rest: m[2] };
  return { prefix: 'eq', rest: raw };
}

export function invalid(param: SearchParam, what: string, value: string): Error {
  return Errors.badRequest(
    `Invalid ${what} "${value}" for search parameter ${param.code} (${param.type})`,
    'MSG_PARAM_INVALID',
    param.expression ? [param.expression] : undefined,
  );
}

export function pushAll(idx: Record<string, unknown>, field: string, values: unknown[]): void {
  if (values.length === 0) return;
  const cur = idx[field];
  if (Array.isArray(cur)) cur.push(...values);
  else idx[field] = [...values];
}

export function dedupe<T>(a: T[]): T[] {
  return [...new Set(a)];
}
