import { Errors } from '../errors';
import { strictQuery } from '../strict-text';
import { CONTROL_PARAMS } from './registry';

/** One filtering parameter of a query: `code[:modifier][.chain]=v1,v2` or `_has:...`. */
export interface FilterParam {
  /** The key as the client sent it. */
  name: string;
  code: string;
  modifier?: string;
  /** Remaining chain after the first `.` (e.g. `identifier`, `organization.name`). */
  chain?: string;
  /** `_has:Type:ref:rest`. */
  has?: { type: string; ref: string; rest: string };
  /** The raw value (comma-separated alternatives, still escaped). */
  value: string;
}

export interface ParsedQuery {
  filters: FilterParam[];
  control: [string, string][];
}

/** Splits a parameter name into code, modifier, chain and reverse chain. */
export function parseName(name: string, value: string): FilterParam {
  if (name.startsWith('_has:')) {
    const m = /^_has:([A-Z][A-Za-z]+):([a-z0-9_][A-Za-z0-9_-]*):(.+)$/.exec(name);
    if (!m) throw Errors.badRequest(`Invalid _has parameter "${name}" (expected _has:Type:reference:parameter)`, 'MSG_PARAM_INVALID');
    return { name, code: '_has', has: { type: m[1], ref: m[2], rest: m[3] }, value };
  }
  const dot = name.indexOf('.');
  const head = dot < 0 ? name : name.slice(0, dot);
  const chain = dot < 0 ? undefined : name.slice(dot + 1);
  const colon = head.indexOf(':');
  const code = colon < 0 ? head : head.slice(0, colon);
  const modifier = colon < 0 ? undefined : head.slice(colon + 1);
  if (chain !== undefined && chain === '') throw Errors.badRequest(`Invalid chained parameter "${name}"`, 'MSG_PARAM_INVALID');
  return { name, code, modifier, chain, value };
}

/** Separates filtering parameters from result-shaping ones (`_count`, `_sort`, `_include`...). */
export function parseQuery(params: [string, string][]): ParsedQuery {
  const filters: FilterParam[] = [];
  const control: [string, string][] = [];
  for (const [name, value] of params) {
    const base = name.split(':')[0];
    if (CONTROL_PARAMS.has(base)) control.push([name, value]);
    else filters.push(parseName(name, value));
  }
  return { filters, control };
}

/** Decoded pairs of a URL query string (without `?`). */
export function queryPairs(query: string): [string, string][] {
  // Strict: escapes of invalid UTF-8 are a 400, never silently U+FFFD (If-None-Exist, criteria); a bare `%` is literal.
  return [...strictQuery(query.startsWith('?') ? query.slice(1) : query, { literalPercent: true }).entries()];
}
