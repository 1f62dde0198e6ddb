import { Errors } from '../errors';
import type { SearchContext } from './context';
import { encoderFor } from './encoders';
import { type Handling, type Ignored, reject } from './query';
import { type Summary, parseSummary } from './shape';
import type { SortKey } from '../storage/query';

/** An `_include` / `_revinclude` request. */
export interface IncludeSpec {
  source: string;
  param: string;
  target?: string;
  iterate: boolean;
  rev: boolean;
}

/** The control (result) parameters of a search. */
export interface Control {
  count: number;
  sort: SortKey[];
  includes: IncludeSpec[];
  summary?: Summary;
  elements?: string[];
  total: 'none' | 'estimate' | 'accurate';
  cursor?: string;
  types?: string[];
}

export function parseControl(sc: SearchContext, type: string | undefined, control: [string, string][], handling: Handling, ignored: Ignored[]): Control {
  const ctl: Control = { count: sc.config.defaultCount, sort: [], includes: [], total: 'none' };
  for (const [name, value] of control) {
    const [base, mod] = name.split(':');
    switch (base) {
      case '_count': {
        if (!/^\d+$/.test(value)) throw Errors.badRequest(`Invalid _count "${value}" (a non-negative integer)`, 'MSG_PARAM_INVALID', ['_count']);
        ctl.count = Math.min(Number(value), sc.config.maxCount);
        break;
      }
      case '_sort':
        ctl.sort = parseSort(sc, type, value);
        break;
      case '_include':
      case '_revinclude':
        for (const v of value.split(',').filter(Boolean)) {
          const spec = parseInclude(sc, type, v, base === '_revinclude', mod, handling, ignored, name);
          if (spec) ctl.includes.push(spec);
        }
        break;
      case '_summary':
        ctl.summary = parseSummary(value);
        break;
      case '_elements':
        ctl.elements = value.split(',').map((s) => s.trim()).filter(Boolean);
        break;
      case '_total':
        if (!['none', 'estimate', 'accurate'].includes(value)) {
          throw Errors.badRequest(`Invalid _total "${value}" (none, estimate or accurate)`, 'MSG_PARAM_INVALID', ['_total']);
        }
        ctl.total = value as Control['total'];
        break;
      case '_cursor':
        ctl.cursor = value;
        break;
      case '_type':
        ctl.types = [...(ctl.types ?? []), ...value.split(',').map((s) => s.trim()).filter(Boolean)];
        break;
      case '_format':
      case '_pretty':
        break;
      default:
        reject(name, 'is not supported', handling, ignored);
    }
  }
  return ctl;
}

function parseSort(sc: SearchContext, type: string | undefined, value: string): SortKey[] {
  const keys: SortKey[] = [];
  for (const item of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    const desc = item.startsWith('-');
    const code = desc ? item.slice(1) : item;
    const dir = desc ? -1 : 1;
    if (code === '_id') {
      keys.push({ field: '_id', dir });
      continue;
    }
    const p = type ? sc.registry.byType.get(type)?.get(code) : undefined;
    const enc = p && !p.unsupported && p.type !== 'composite' ? encoderFor(p) : undefined;
    if (!p || !enc) {
      // A 400 in lenient handling too: an ignored sort would return a page in an order the
      // client did not ask for and cannot tell from the Bundle.
      const why = !type ? 'sorting is not supported in system-level searches' : p ? `cannot sort on "${code}"` : `"${code}" is not a search parameter of ${type}`;
      throw Errors.badRequest(`_sort=${item}: ${why}`, 'MSG_SORT_UNKNOWN', ['_sort']);
    }
    keys.push({ field: enc.sortField(p, p.code), dir });
  }
  // _id always ends the key: a total order is what makes keyset paging exact.
  return keys.filter((k) => k.field !== '_id');
}

function parseInclude(
  sc: SearchContext,
  type: string | undefined,
  v: string,
  rev: boolean,
  mod: string | undefined,
  handling: Handling,
  ignored: Ignored[],
  name: string,
): IncludeSpec | undefined {
  const iterate = mod === 'iterate' || mod === 'recurse';
  if (mod !== undefined && !iterate) {
    // Like a filter's modifier: ignoring it would change what the client asked for (a 400 in lenient handling too).
    throw Errors.badRequest(`${name} uses the modifier :${mod}, which is not supported (only :iterate)`, 'MSG_PARAM_MODIFIER_INVALID', [name]);
  }
  if (v === '*') return rev ? undefined : { source: type ?? '*', param: '*', iterate, rev };
  const [source, param, target] = v.split(':');
  const p = sc.registry.byType.get(source)?.get(param ?? '');
  if (!p || p.type !== 'reference' || (target && !sc.registry.byType.has(target))) {
    reject(`${name}=${v}`, 'does not name a searchable reference parameter (Type:param[:target])', handling, ignored);
    return undefined;
  }
  return { source, param, target, iterate, rev };
}
