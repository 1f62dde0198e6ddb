import type { Limits } from '../config';
import { Errors, FhirError } from '../errors';
import { textProblem } from '../strict-text';

/**
 * Bounded work per request: the checks that refuse a request before any work is done, each
 * naming the limit and its setting (README "Limits").
 */

/** Keys that could reach an object's prototype if some code ever assigned them. */
export const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Elements whose strings are bounded by the body limit only: base64Binary `data`, narrative `div`. */
const LONG_STRING_KEYS = new Set(['data', 'div']);

function tooLarge(message: string, setting: string, expression?: string): FhirError {
  return new FhirError(413, 'too-costly', 'MSG_LIMIT', `${message} (limit set by ${setting})`, expression ? [expression] : undefined);
}

function pathOf(parent: string, key: string | number): string {
  return typeof key === 'number' ? `${parent}[${key}]` : parent ? `${parent}.${key}` : key;
}

/** A Bundle entry's resource: counted on a budget of its own (the entries are bounded by BUNDLE_MAX_ENTRIES). */
const ENTRY_RESOURCE = /^Bundle\.entry\[\d+\]\.resource$/;

type BodyLimits = Pick<Limits, 'arrayElements' | 'stringLength' | 'resourceElements'>;

/**
 * Walks a parsed JSON body once, without recursion (depth is bounded by the edge's scan):
 * arrays and strings within their limits, at most `resourceElements` array elements in one
 * resource (nested arrays multiply: 100 components of 100 codings are 10,000 index entries), no
 * prototype keys, no lone surrogates or control characters in strings, no number that does not
 * fit a double. Locations in refusals are FHIRPath-like, rooted at the resource type.
 */
export function checkJsonBody(body: unknown, limits: BodyLimits): void {
  const root = body && typeof body === 'object' && typeof (body as { resourceType?: unknown }).resourceType === 'string' ? String((body as { resourceType: string }).resourceType) : '';
  const stack: [unknown, string, string, { n: number }][] = [[body, root, '', { n: 0 }]];
  while (stack.length > 0) {
    const [v, at, key, budget] = stack.pop()!;
    if (typeof v === 'string') {
      if (v.length > limits.stringLength && !LONG_STRING_KEYS.has(key)) {
        throw tooLarge(`The string at ${at || 'the body'} has ${v.length} characters, more than ${limits.stringLength}`, 'JSON_MAX_STRING_LENGTH', at);
      }
      const problem = textProblem(v);
      if (problem) throw Errors.badRequest(`The string at ${at || 'the body'} ${problem}; nothing was changed`, 'MSG_TEXT_INVALID', at ? [at] : undefined);
    } else if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw Errors.badRequest(`The number at ${at || 'the body'} is out of range`, 'MSG_NUMBER_RANGE', at ? [at] : undefined);
    } else if (Array.isArray(v)) {
      const isEntries = root === 'Bundle' && at === 'Bundle.entry';
      if (!isEntries && v.length > limits.arrayElements) {
        throw tooLarge(`The array at ${at || 'the body'} has ${v.length} elements, more than ${limits.arrayElements}`, 'JSON_MAX_ARRAY_LENGTH', at);
      }
      if (!isEntries && (budget.n += v.length) > limits.resourceElements) {
        throw tooLarge(`The resource holding ${at || 'the body'} has more than ${limits.resourceElements} array elements in all`, 'RESOURCE_MAX_ELEMENTS', at);
      }
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], pathOf(at, i), key, budget]);
    } else if (v !== null && typeof v === 'object') {
      const keys = Object.keys(v);
      const own = ENTRY_RESOURCE.test(at) ? { n: 0 } : budget;
      for (let i = keys.length - 1; i >= 0; i--) {
        const k = keys[i];
        if (FORBIDDEN_KEYS.has(k)) throw Errors.badRequest(`The property name "${k}" is not allowed (at ${at || 'the body'})`, 'MSG_KEY_FORBIDDEN', at ? [at] : undefined);
        const problem = textProblem(k);
        if (problem) throw Errors.badRequest(`A property name at ${at || 'the body'} ${problem}`, 'MSG_TEXT_INVALID', at ? [at] : undefined);
        stack.push([(v as Record<string, unknown>)[k], pathOf(at, k), k, own]);
      }
    }
  }
}

/** A Bundle's entry count, checked before any entry is looked at. */
export function checkBundleSize(entries: number, limits: Pick<Limits, 'bundleEntries'>): void {
  if (entries > limits.bundleEntries) {
    throw tooLarge(`The Bundle has ${entries} entries, more than ${limits.bundleEntries}`, 'BUNDLE_MAX_ENTRIES', 'Bundle.entry');
  }
}

/** Alternatives of a search value: commas not escaped by a backslash. */
function alternatives(value: string): number {
  let n = 1;
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '\\') i++;
    else if (value[i] === ',') n++;
  }
  return n;
}

function searchLimit(message: string, setting: string, param?: string): FhirError {
  return new FhirError(400, 'too-costly', 'MSG_LIMIT', `${message} (limit set by ${setting})`, param ? [param] : undefined);
}

/** The cost of a search, bounded before it runs: parameters, chain depth, includes. */
export function checkSearchCost(pairs: [string, string][], limits: Limits): void {
  let params = 0;
  let includes = 0;
  for (const [name, value] of pairs) {
    params += alternatives(value);
    if (params > limits.searchParams) {
      throw searchLimit(`The search has more than ${limits.searchParams} parameters (each comma-separated value counts)`, 'SEARCH_MAX_PARAMS');
    }
    const base = name.split(':')[0];
    if (base === '_include' || base === '_revinclude') {
      if (++includes > limits.includeParams) {
        throw searchLimit(`The search has more than ${limits.includeParams} _include/_revinclude parameters`, 'SEARCH_MAX_INCLUDE_PARAMS', name);
      }
      continue;
    }
    // Each `.` is one more link of a chain, each `_has:` one more reverse chain.
    const depth = (name.match(/\./g)?.length ?? 0) + (name.match(/_has:/g)?.length ?? 0);
    if (depth > limits.chainDepth) {
      throw searchLimit(`The parameter "${name.slice(0, 100)}" chains ${depth} levels deep, more than ${limits.chainDepth}`, 'SEARCH_MAX_CHAIN_DEPTH', name.slice(0, 100));
    }
  }
}

/** A `_search` form body, refused by its size before it is decoded. */
export function checkFormSize(bytes: number, limits: Pick<Limits, 'searchFormBytes'>): void {
  if (bytes > limits.searchFormBytes) {
    throw tooLarge(`The search form has ${bytes} bytes, more than ${limits.searchFormBytes}`, 'SEARCH_FORM_LIMIT');
  }
}

/** Refuses JSON nested deeper than `max` without parsing it (a cheap scan, strings skipped). */
export function checkJsonDepth(text: string, max: number): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++; // backslash: skip the escaped character
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > max) throw Errors.badRequest(`JSON nesting deeper than ${max} levels is not accepted`, 'MSG_JSON_TOO_DEEP');
    } else if (c === 125 || c === 93) depth--;
  }
}
