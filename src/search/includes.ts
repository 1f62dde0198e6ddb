import type { Resource } from 'fhir/r4';
import type { AccessPolicy } from '../auth/types';
import { breathe } from '../deadline';
import { canRead } from './conditions';
import type { SearchContext } from './context';
import type { IncludeSpec } from './control';
import { referenceParts } from './encoders/reference';

/** How deep `:iterate` goes (how many resources includes may add: SEARCH_MAX_INCLUDES). */
const MAX_ITERATE_DEPTH = 3;

/** `_include` / `_revinclude` (with `:iterate`, depth-capped), batched per type. */
export async function resolveIncludes(sc: SearchContext, matches: Resource[], specs: IncludeSpec[], policy: AccessPolicy): Promise<Resource[]> {
  if (specs.length === 0 || matches.length === 0) return [];
  const MAX_INCLUDES = sc.config.limits.includeResults;
  const seen = new Set(matches.map((r) => `${r.resourceType}/${r.id}`));
  const out: Resource[] = [];
  let current = matches;
  for (let depth = 0; depth < MAX_ITERATE_DEPTH && current.length > 0 && out.length < MAX_INCLUDES; depth++) {
    await breathe();
    const active = specs.filter((s) => depth === 0 || s.iterate);
    if (active.length === 0) break;
    const found: Resource[] = [];
    // Forward includes: collect local references per target type.
    const wanted = new Map<string, Set<string>>();
    for (const s of active.filter((x) => !x.rev)) {
      for (const r of current) {
        if (s.source !== '*' && r.resourceType !== s.source) continue;
        const params = sc.registry.byType.get(r.resourceType);
        const ps = s.param === '*' ? [...(params?.values() ?? [])].filter((p) => p.type === 'reference' && !p.unsupported) : [params?.get(s.param)];
        for (const p of ps) {
          if (!p?.evaluate) continue;
          for (const ref of referenceParts(p.evaluate(r), sc.ctx).refs) {
            const [t, id] = ref.split('/');
            if (!id || ref.split('/').length !== 2 || !sc.registry.byType.has(t) || (s.target && s.target !== t)) continue;
            if (!wanted.has(t)) wanted.set(t, new Set());
            wanted.get(t)?.add(id);
          }
        }
      }
    }
    for (const [t, ids] of wanted) {
      if (!canRead(policy, t)) continue;
      const todo = [...ids].filter((id) => !seen.has(`${t}/${id}`));
      if (todo.length === 0) continue;
      found.push(...(await sc.executor.byIds(t, todo.slice(0, MAX_INCLUDES), policy)).map((d) => d.res));
    }
    // Reverse includes: resources of the source type whose reference points at a current one.
    for (const s of active.filter((x) => x.rev)) {
      if (!canRead(policy, s.source)) continue;
      const refs = current
        .filter((r) => !s.target || r.resourceType === s.target)
        .map((r) => `${r.resourceType}/${r.id}`);
      if (refs.length === 0) continue;
      const docs = await sc.executor.page({ type: s.source, cond: { k: 'in', f: `idx.${s.param}`, v: refs }, policy, limit: MAX_INCLUDES, fields: ['res'] });
      found.push(...docs.map((d) => d.res));
    }
    const fresh: Resource[] = [];
    for (const r of found) {
      const key = `${r.resourceType}/${r.id}`;
      if (seen.has(key)) continue;
      seen.add(key);
      fresh.push(r);
    }
    out.push(...fresh);
    current = fresh;
  }
  return out.slice(0, MAX_INCLUDES);
}
