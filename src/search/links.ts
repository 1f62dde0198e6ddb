import { createHash, randomUUID } from 'node:crypto';
import type { BundleEntry, FhirResource, OperationOutcome, Resource } from 'fhir/r4';
import type { Control } from './control';
import type { Ignored } from './query';
import { shape } from './shape';

/** A searchset entry, shaped by `_summary` / `_elements`. */
export function entry(baseUrl: string, res: Resource, mode: 'match' | 'include', ctl: Control): BundleEntry {
  return { fullUrl: `${baseUrl}/${res.resourceType}/${res.id}`, resource: shape(res, ctl.summary, ctl.elements) as FhirResource, search: { mode } };
}

/** The pairs the search actually used, in the client's order (for the self link). */
export function usedPairs(params: [string, string][], ignored: Ignored[]): [string, string][] {
  const skip = new Set(ignored.map((i) => i.name));
  return params.filter(([n, v]) => !skip.has(n) && !skip.has(`${n}=${v}`) && !['_format', '_pretty'].includes(n) && !(n === '_sort' && skip.has(`_sort=${v}`)));
}

export function used(params: [string, string][], ignored: Ignored[]): string {
  const q = new URLSearchParams(usedPairs(params, ignored)).toString();
  return q ? `?${q}` : '';
}

/** Binds a paging cursor to its query: a cursor cannot be replayed on another one. */
export function hashQuery(type: string, pairs: [string, string][]): string {
  return createHash('sha256')
    .update(type)
    .update(JSON.stringify(pairs.filter(([n]) => n !== '_cursor')))
    .digest('base64url')
    .slice(0, 16);
}

export function link(baseUrl: string, type: string | undefined, pairs: [string, string][]): string {
  // Commas stay literal: they separate a parameter's alternatives (`_type=Patient,Device`), and a
  // strict client reads `%2C` as part of one value. An escaped `\,` stays `%5C,`, the same value.
  const q = new URLSearchParams(pairs).toString().replace(/%2C/gi, ',');
  return `${baseUrl}${type ? `/${type}` : ''}${q ? `?${q}` : ''}`;
}

/** The warnings entry listing the parameters a lenient search ignored. */
export function outcomeEntry(ignored: Ignored[]): BundleEntry | undefined {
  if (ignored.length === 0) return undefined;
  const oo: OperationOutcome = {
    resourceType: 'OperationOutcome',
    issue: ignored.map((i) => ({
      severity: 'warning',
      code: 'not-supported',
      details: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/operation-outcome', code: 'MSG_PARAM_UNKNOWN' }] },
      diagnostics: `Search parameter "${i.name}" ${i.reason}; it was ignored`,
    })),
  };
  // Every searchset entry has a fullUrl (bdl-7 family of rules); the outcome has no server id.
  return { fullUrl: `urn:uuid:${randomUUID()}`, resource: oo, search: { mode: 'outcome' } };
}
