import type { Observation, Resource } from 'fhir/r4';
import type { CriteriaPort } from '../../../src/auth/types';
import { Errors } from '../../../src/errors';
import { type Cond, and } from '../../../src/search/cond';

/**
 * A small stand-in for the search engine's CriteriaPort: token parameters `category` and `code`
 * of Observation (`system|code` or `code`), stored as `idx.<param>` arrays of "system|code" and
 * "|code"-less codes. Enough to exercise how the policy combines restrictions.
 */
interface Compiled {
  clauses: { param: 'category' | 'code'; system?: string; code: string }[];
}

function codings(r: Resource, param: 'category' | 'code') {
  if (r.resourceType !== 'Observation') return [];
  const o = r as Observation;
  const ccs = param === 'code' ? [o.code] : (o.category ?? []);
  return ccs.flatMap((cc) => cc.coding ?? []);
}

export const testCriteria: CriteriaPort = {
  compileCriteria(type, query) {
    if (type !== 'Observation') throw Errors.badRequest(`Restrictions are not supported on ${type}`, 'MSG_PARAM_UNKNOWN');
    const clauses: Compiled['clauses'] = [];
    for (const part of query.split('&')) {
      const [name, raw] = part.split('=');
      if ((name !== 'category' && name !== 'code') || !raw) {
        throw Errors.badRequest(`Unknown search parameter "${name}" for Observation`, 'MSG_PARAM_UNKNOWN');
      }
      const value = decodeURIComponent(raw);
      const bar = value.indexOf('|');
      clauses.push(bar < 0 ? { param: name, code: value } : { param: name, system: value.slice(0, bar), code: value.slice(bar + 1) });
    }
    return { clauses } satisfies Compiled;
  },
  matches(criteria, resource) {
    return (criteria as Compiled).clauses.every((c) =>
      codings(resource, c.param).some((cd) => cd.code === c.code && (c.system === undefined || cd.system === c.system)),
    );
  },
  criteriaCond(criteria): Cond {
    return and((criteria as Compiled).clauses.map((c): Cond => ({ k: 'eq', f: `idx.${c.param}`, v: c.system === undefined ? `|${c.code}` : `${c.system}|${c.code}` })));
  },
};

/** Index entries as testCriteria.criteriaCond expects them. */
export function testIdx(r: Resource): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const param of ['category', 'code'] as const) {
    out[param] = codings(r, param).flatMap((c) => [`${c.system}|${c.code}`, `|${c.code}`]);
  }
  return out;
}
