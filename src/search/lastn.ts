import type { Bundle, BundleEntry } from 'fhir/r4';
import { Errors } from '../errors';
import { filterCond } from './conditions';
import type { SearchContext } from './context';
import { parseControl } from './control';
import { entry, outcomeEntry, used } from './links';
import { parseQuery } from './parse';
import { type Ignored, reject } from './query';
import type { SearchRequest } from './service';

/** Observation/$lastn: per code (and subject), the newest `max` observations. */
export async function lastn(sc: SearchContext, req: SearchRequest): Promise<Bundle> {
  const type = req.type ?? 'Observation';
  if (type !== 'Observation') throw Errors.badRequest('$lastn is defined on Observation only', 'MSG_OP_NOT_ALLOWED');
  let max = 1;
  const rest: [string, string][] = [];
  for (const [n, v] of req.params) {
    if (n === 'max') {
      if (!/^[1-9]\d{0,3}$/.test(v)) throw Errors.badRequest(`Invalid max "${v}" (a positive integer)`, 'MSG_PARAM_INVALID', ['max']);
      max = Number(v);
    } else rest.push([n, v]);
  }
  const ignored: Ignored[] = [];
  const { filters, control } = parseQuery(rest);
  const ctl = parseControl(sc, type, control.filter(([n]) => ['_summary', '_elements', '_format', '_pretty'].includes(n.split(':')[0])), req.handling, ignored);
  for (const [n] of control) if (!['_summary', '_elements', '_format', '_pretty'].includes(n.split(':')[0])) reject(n, 'is not supported by $lastn', req.handling, ignored);
  const cond = await filterCond(sc, type, filters, req.policy, req.handling, ignored);
  const entries: BundleEntry[] = [];
  for (const d of await sc.executor.lastn({ cond, policy: req.policy, max })) entries.push(entry(req.baseUrl, d.res, 'match', ctl));
  const outcome = outcomeEntry(ignored);
  if (outcome) entries.push(outcome);
  const bundle: Bundle = {
    resourceType: 'Bundle',
    type: 'searchset',
    total: entries.filter((e) => e.search?.mode === 'match').length,
    link: [{ relation: 'self', url: `${req.baseUrl}/Observation/$lastn${used(req.params, ignored)}` }],
  };
  if (entries.length > 0) bundle.entry = entries;
  return bundle;
}
