import { type Cond } from '../cond';
import type { EncodeContext, Encoder, Idx, SearchParam } from '../types';
import { escapeKey, invalid, pushAll, splitEscaped } from './common';
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
          // `system|` alone is no composite query form; sort keys are not needed inside buckets.
          for (const t of new Set(tokens.filter((x) => !x.endsWith('|')))) {
            const bucket: Idx = {};
            second(valueParam).index({ ...valueParam, single: false }, vals, bucket, `${field}.${escapeKey(t)}`, ctx);
            for (const [k, v] of Object.entries(bucket)) {
              if (k.endsWith(':s')) continue;
              if (Array.isArray(v)) pushAll(idx, k, v);
              else idx[k] = v;
            }
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
      // Errors name the composite the client sent, not its component.
      const [tokenParam, valueParam] = def.params.map((c) => ({ ...c, code: param.code, single: false }));
      const t = tokenQueryString(tokenParam, parts[0]);
      return second(valueParam).toCond(valueParam, { raw: parts[1] }, `${field}.${escapeKey(t)}`, ctx);
    },
    presenceField: (field) => `idx.${field}`,
    sortField: (_p, field) => `idx.${field}`,
  };
}
