import type { Encoder, Idx } from '../types';
import { escapeRegex, invalid, pushAll, unescapeValue } from './common';

const P = (f: string) => `idx.${f}`;

/** URIs match exactly; `:below` is a prefix, `:above` any stored URI that is a prefix of the value. */
export const uriEncoder: Encoder = {
  modifiers: ['below', 'above'],
  index(param, values, idx: Idx, field) {
    const us = values.map((v) => v.value).filter((v): v is string => typeof v === 'string' && v !== '');
    if (us.length === 0) return;
    if (param.single && us.length === 1) idx[field] = us[0];
    else {
      pushAll(idx, field, us);
      idx[`${field}:s`] = us[0];
    }
  },
  toCond(param, value, field) {
    const u = unescapeValue(value.raw);
    if (!u) throw invalid(param, 'uri', value.raw);
    switch (value.modifier) {
      case undefined:
        return { k: 'eq', f: P(field), v: u };
      case 'below':
        return { k: 'regex', f: P(field), re: `^${escapeRegex(u)}` };
      case 'above': {
        const prefixes: string[] = [];
        const parts = u.split('/');
        for (let i = parts.length; i >= 3; i--) prefixes.push(parts.slice(0, i).join('/'));
        return { k: 'in', f: P(field), v: prefixes.length ? prefixes : [u] };
      }
      default:
        throw invalid(param, 'modifier', value.modifier);
    }
  },
  presenceField: (field) => P(field),
  sortField: (param, field) => P(param.single ? field : `${field}:s`),
};
