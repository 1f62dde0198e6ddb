import type { CodeableConcept, Coding, ContactPoint, Identifier } from 'fhir/r4';
import { type Cond, not } from '../cond';
import type { Encoder, Idx, QueryValue, SearchParam, TypedValue } from '../types';
import { escapeRegex, invalid, normalise, pushAll, splitEscaped, unescapeValue } from './common';
import { EQUIVALENCE_PARAMS, withLoincEquivalents } from '../../terminology/vital-codes';

/**
 * Tokens are stored as every string a query may ask for (`system|code`, `code`, `system|`, and
 * `|code` when there is no system), so each token query is one equality an index can serve.
 */
export function tokenStrings(system: string | undefined, code: string | undefined): string[] {
  const out: string[] = [];
  if (code !== undefined && code !== '') {
    out.push(code);
    out.push(system ? `${system}|${code}` : `|${code}`);
  }
  if (system) out.push(`${system}|`);
  return out;
}

interface TokenParts {
  tokens: string[];
  texts: string[];
  ofType: string[];
  /** The plain code used as sort key. */
  first?: string;
}

export function tokenParts(values: TypedValue[]): TokenParts {
  const p: TokenParts = { tokens: [], texts: [], ofType: [] };
  const add = (system: string | undefined, code: string | undefined) => {
    p.tokens.push(...tokenStrings(system, code));
    if (p.first === undefined && code) p.first = code;
  };
  const coding = (c: Coding) => {
    add(c.system, c.code);
    if (c.display) p.texts.push(normalise(c.display));
  };
  for (const { type, value } of values) {
    if (value === null || value === undefined) continue;
    switch (type) {
      case 'Coding':
        coding(value as Coding);
        break;
      case 'CodeableConcept': {
        const cc = value as CodeableConcept;
        cc.coding?.forEach(coding);
        if (cc.text) p.texts.push(normalise(cc.text));
        break;
      }
      case 'Identifier': {
        const id = value as Identifier;
        add(id.system, id.value);
        if (id.type?.text) p.texts.push(normalise(id.type.text));
        if (id.value) for (const c of id.type?.coding ?? []) p.ofType.push(`${c.system ?? ''}|${c.code ?? ''}|${id.value}`);
        break;
      }
      case 'ContactPoint': {
        const cp = value as ContactPoint;
        add(cp.system, cp.value);
        break;
      }
      case 'boolean':
        add(undefined, String(value));
        break;
      default:
        if (typeof value === 'string' || typeof value === 'number') {
          // code, string, uri, id...: the system is implicit, so only the bare code is searchable.
          p.tokens.push(String(value));
          if (p.first === undefined) p.first = String(value);
        }
    }
  }
  return p;
}

/** The token string a query value asks for (`code`, `system|code`, `|code`, `system|`). */
export function tokenQueryString(param: SearchParam, raw: string): string {
  const parts = splitEscaped(raw, '|');
  if (parts.length > 2) throw invalid(param, 'token', raw);
  if (parts.length === 1) {
    const code = unescapeValue(parts[0]);
    if (!code) throw invalid(param, 'token', raw);
    return code;
  }
  const [system, code] = parts.map(unescapeValue);
  if (!system && !code) throw invalid(param, 'token', raw);
  return `${system}|${code}`;
}

const P = (f: string) => `idx.${f}`;

/** Observation codes also index the LOINC equivalent of MDC codings (src/terminology/vital-codes.ts). */
function withEquivalents(v: TypedValue): TypedValue {
  if (v.type === 'CodeableConcept') {
    const cc = v.value as CodeableConcept;
    return cc?.coding?.length ? { type: v.type, value: { ...cc, coding: withLoincEquivalents(cc.coding) } } : v;
  }
  return v;
}

export const tokenEncoder: Encoder = {
  modifiers: ['not', 'text', 'of-type'],
  index(param, values, idx: Idx, field) {
    const p = tokenParts(param.resourceType === 'Observation' && EQUIVALENCE_PARAMS.has(param.code) ? values.map(withEquivalents) : values);
    pushAll(idx, field, p.tokens);
    pushAll(idx, `${field}:text`, p.texts);
    pushAll(idx, `${field}:type`, p.ofType);
    if (p.first !== undefined) idx[`${field}:s`] = p.first;
  },
  toCond(param, value: QueryValue, field): Cond {
    switch (value.modifier) {
      case undefined:
        return { k: 'eq', f: P(field), v: tokenQueryString(param, value.raw) };
      case 'not':
        return not({ k: 'eq', f: P(field), v: tokenQueryString(param, value.raw) });
      case 'text': {
        const t = normalise(unescapeValue(value.raw));
        if (!t) throw invalid(param, 'text', value.raw);
        return { k: 'regex', f: P(`${field}:text`), re: `^${escapeRegex(t)}` };
      }
      case 'of-type': {
        const parts = splitEscaped(value.raw, '|').map(unescapeValue);
        if (parts.length !== 3 || !parts[1] || !parts[2]) throw invalid(param, 'of-type value (system|code|value)', value.raw);
        return { k: 'eq', f: P(`${field}:type`), v: parts.join('|') };
      }
      default:
        throw invalid(param, 'modifier', value.modifier);
    }
  },
  presenceField: (field) => P(field),
  sortField: (_p, field) => P(`${field}:s`),
};
