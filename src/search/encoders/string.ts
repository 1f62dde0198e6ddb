import type { Address, HumanName } from 'fhir/r4';
import type { Encoder, Idx, TypedValue } from '../types';
import { escapeRegex, invalid, normalise, pushAll, unescapeValue } from './common';

/** The searchable strings of a value: every part of a name or an address, or the string itself. */
export function stringParts(values: TypedValue[]): string[] {
  const out: string[] = [];
  const add = (s: string | undefined) => {
    if (typeof s === 'string' && s.trim() !== '') out.push(s);
  };
  for (const { type, value } of values) {
    if (value === null || value === undefined) continue;
    if (type === 'HumanName') {
      const n = value as HumanName;
      add(n.family);
      n.given?.forEach(add);
      n.prefix?.forEach(add);
      n.suffix?.forEach(add);
      add(n.text);
    } else if (type === 'Address') {
      const a = value as Address;
      a.line?.forEach(add);
      [a.city, a.district, a.state, a.postalCode, a.country, a.text].forEach(add);
    } else if (typeof value === 'string') add(value);
    else if (typeof value === 'object' && typeof (value as { text?: unknown }).text === 'string') {
      add((value as { text: string }).text);
    }
  }
  return out;
}

const P = (f: string) => `idx.${f}`;

/** Strings: a folded form for the default starts-with and `:contains`, the original for `:exact`. */
export const stringEncoder: Encoder = {
  modifiers: ['exact', 'contains'],
  index(_param, values, idx: Idx, field) {
    const parts = stringParts(values);
    if (parts.length === 0) return;
    const folded = parts.map(normalise);
    pushAll(idx, field, folded);
    pushAll(idx, `${field}:exact`, parts);
    if (idx[`${field}:s`] === undefined) idx[`${field}:s`] = folded[0];
  },
  toCond(param, value, field) {
    const text = unescapeValue(value.raw);
    switch (value.modifier) {
      case 'exact':
        return { k: 'eq', f: P(`${field}:exact`), v: text };
      case undefined:
      case 'contains': {
        const t = normalise(text);
        if (!t) throw invalid(param, 'string', value.raw);
        return { k: 'regex', f: P(field), re: value.modifier ? escapeRegex(t) : `^${escapeRegex(t)}` };
      }
      default:
        throw invalid(param, 'modifier', value.modifier);
    }
  },
  presenceField: (field) => P(field),
  sortField: (_p, field) => P(`${field}:s`),
};
