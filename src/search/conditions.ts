import type { AccessPolicy } from '../auth/types';
import { FhirError } from '../errors';
import { type Cond, FALSE, and } from './cond';
import type { SearchContext } from './context';
import { type FilterParam, parseName } from './parse';
import { type Handling, type Ignored, reject, simpleCond } from './query';
import type { Idx, SearchParam } from './types';

/** How many ids a chain or `_has` may resolve to before the query is refused as too costly. */
export const MAX_CHAIN_IDS = 5000;

/** Condition for all filtering parameters of a query (AND), resolving chains and `_has` against the database. */
export async function filterCond(sc: SearchContext, type: string, filters: FilterParam[], policy: AccessPolicy, handling: Handling, ignored: Ignored[]): Promise<Cond> {
  const params = sc.paramsOf(type);
  const conds: Cond[] = [];
  for (const fp of filters) {
    let c: Cond | undefined;
    if (fp.has) c = await hasCond(sc, type, fp, policy, handling, ignored);
    else if (fp.chain !== undefined) c = await chainCond(sc, type, params, fp, policy, handling, ignored);
    else c = simpleCond(params, fp, sc.ctx, handling, ignored);
    if (c) conds.push(c);
  }
  return and(conds);
}

/** `subject:Patient.identifier=x`: ids of matching targets, then an equality on the reference. */
export async function chainCond(
  sc: SearchContext,
  type: string,
  params: Map<string, SearchParam>,
  fp: FilterParam,
  policy: AccessPolicy,
  handling: Handling,
  ignored: Ignored[],
): Promise<Cond | undefined> {
  const p = params.get(fp.code);
  if (!p || p.type !== 'reference') {
    reject(fp.name, p ? 'cannot be chained (not a reference parameter)' : `is not known for ${type}`, handling, ignored);
    return undefined;
  }
  const targets = (fp.modifier ? [fp.modifier] : p.targets).filter((t) => sc.registry.byType.has(t));
  const chained = parseName(fp.chain ?? '', fp.value);
  const usable = targets.filter((t) => {
    const tp = sc.registry.byType.get(t);
    return tp?.has(chained.code) || chained.has !== undefined;
  });
  if (usable.length === 0) {
    reject(fp.name, `cannot be chained: no searchable target type has "${chained.code}"`, handling, ignored);
    return undefined;
  }
  const refs: string[] = [];
  for (const t of usable) {
    if (!canRead(policy, t)) continue;
    const sub = await filterCond(sc, t, [chained], policy, 'strict', ignored);
    const ids = await sc.executor.page({ type: t, cond: sub, policy, limit: MAX_CHAIN_IDS + 1, fields: ['_id'] });
    if (ids.length > MAX_CHAIN_IDS) throw tooCostly(fp.name);
    refs.push(...ids.map((d) => `${t}/${d._id}`));
  }
  return refs.length === 0 ? FALSE : { k: 'in', f: `idx.${p.code}`, v: refs };
}

/** `_has:Observation:patient:code=x`: resources referenced by matching Observations. */
export async function hasCond(sc: SearchContext, type: string, fp: FilterParam, policy: AccessPolicy, handling: Handling, ignored: Ignored[]): Promise<Cond | undefined> {
  const has = fp.has;
  if (!has) return undefined;
  const sourceParams = sc.registry.byType.get(has.type);
  const ref = sourceParams?.get(has.ref);
  if (!sourceParams || !ref || ref.type !== 'reference') {
    reject(fp.name, `is not usable: ${has.type}.${has.ref} is not a searchable reference`, handling, ignored);
    return undefined;
  }
  if (!canRead(policy, has.type)) return FALSE;
  const inner = parseName(has.rest, fp.value);
  const sub = await filterCond(sc, has.type, [inner], policy, 'strict', ignored);
  const docs = await sc.executor.page({ type: has.type, cond: sub, policy, limit: MAX_CHAIN_IDS + 1, fields: [`idx.${has.ref}`] });
  if (docs.length > MAX_CHAIN_IDS) throw tooCostly(fp.name);
  const ids = new Set<string>();
  for (const d of docs) {
    const v = (d.idx as Idx | undefined)?.[has.ref];
    for (const r of Array.isArray(v) ? v : [v]) {
      if (typeof r === 'string' && r.startsWith(`${type}/`)) ids.add(r.slice(type.length + 1));
    }
  }
  return ids.size === 0 ? FALSE : { k: 'in', f: '_id', v: [...ids] };
}

/** Whether the policy lets the caller search this type at all. */
export function canRead(policy: AccessPolicy, type: string): boolean {
  try {
    policy.assertAllowed('search', type);
    return true;
  } catch {
    return false;
  }
}

function tooCostly(name: string): FhirError {
  return new FhirError(400, 'too-costly', 'MSG_TOO_COSTLY', `Search parameter "${name}" matches more than ${MAX_CHAIN_IDS} resources; narrow it down`);
}
