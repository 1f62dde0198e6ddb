import { type Cond } from '../cond';
import type { EncodeContext, Encoder, Idx, SearchParam } from '../types';
import { escapeKey, invalid, splitEscaped } from './common';
import { tokenParts, tokenQueryString } from './token';

/**
 * Composites pair a token with a second value of the same node (the code and the value of one
 * component). The second value is stored under a bucket named by each token string, so a query
 * is the second encoder's condition inside the bucket its token names; no `$elemMatch` on objects.
 */
export function compositeEncoder(second: (p: SearchParam) => Encoder): Encoder {
  return {
    modifiers: [],
    index(param, values, idx: Idx, field, ctx: EncodeContext) {
      // The indexer hands composites the resource itself; each expression part yields the nodes.
      const resource = values[0]?.value;
      const def = param.composite;
      if (!def) return;
      const valueParam = def.params[1];
      for (const part of def.parts) {
        for (const node of part.nodes(resource)) {
          const tokens = tokenParts(part.components[0](node.value)).tokens;
          const vals = part.components[1](node.value);
          if (tokens.length === 0 || vals.length === 0) continue;
          for (const t of new Set(tokens)) {
            second(valueParam).index({ ...valueParam, single: false }, vals, idx, `${field}.${escapeKey(t)}`, ctx);
          }
        }
      }
    },
    toCond(param, value, field, ctx): Cond {
      if (value.modifier) throw invalid(param, 'modifier', value.modifier);
      const def = param.composite;
      if (!def) throw invalid(param, 'composite', value.raw);
      const parts = splitEscaped(value.raw, '$');
      if (parts.length !== 2) throw invalid(param, 'composite value (token$value)', value.raw);
      const [tokenParam, valueParam] = def.params;
      const t = tokenQueryString(tokenParam, parts[0]);
      return second(valueParam).toCond({ ...valueParam, single: false }, { raw: parts[1] }, `${field}.${escapeKey(t)}`, ctx);
    },
    presenceField: (field) => `idx.${field}`,
    sortField: (_p, field) => `idx.${field}`,
  };
}
