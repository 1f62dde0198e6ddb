import type { Reference } from 'fhir/r4';
import { type Cond } from '../cond';
import type { EncodeContext, Encoder, Idx, SearchParam, TypedValue } from '../types';
import { invalid, pushAll, unescapeValue } from './common';
import { tokenParts, tokenQueryString } from './token';
import { ID_RE, LOCAL_REF_RE } from '../../resources/id';

const TYPE_RE = /^[A-Z][A-Za-z]+$/;

/**
 * The stored form of a reference: `Type/id` for local ones (absolute URLs of this server
 * included, version dropped), the URL for external ones, `url` and `url|version` for canonicals.
 */
export function normaliseReference(ref: string, ctx: EncodeContext): string[] {
  if (!ref || ref.startsWith('#')) return [];
  let r = ref;
  if (r.startsWith(`${ctx.baseUrl}/`)) r = r.slice(ctx.baseUrl.length + 1);
  const m = LOCAL_REF_RE.exec(r);
  if (m) return [`${m[1]}/${m[2]}`];
  const bar = r.indexOf('|');
  if (bar > 0) return [r.slice(0, bar), r];
  return [r];
}

/** Reference strings and identifier tokens of the values (Reference, canonical, uri). */
export function referenceParts(values: TypedValue[], ctx: EncodeContext): { refs: string[]; identifiers: string[] } {
  const refs: string[] = [];
  const ids: TypedValue[] = [];
  for (const { type, value } of values) {
    if (typeof value === 'string') refs.push(...normaliseReference(value, ctx));
    else if (type === 'Reference' || (value && typeof value === 'object')) {
      const r = value as Reference;
      if (typeof r.reference === 'string') refs.push(...normaliseReference(r.reference, ctx));
      if (r.identifier) ids.push({ type: 'Identifier', value: r.identifier });
    }
  }
  return { refs, identifiers: tokenParts(ids).tokens };
}

const P = (f: string) => `idx.${f}`;

export const referenceEncoder: Encoder = {
  modifiers: ['identifier'],
  index(param, values, idx: Idx, field, ctx) {
    const { refs, identifiers } = referenceParts(values, ctx);
    if (refs.length > 0) {
      if (param.single && refs.length === 1) idx[field] = refs[0];
      else {
        pushAll(idx, field, refs);
        idx[`${field}:s`] = refs[0];
      }
    }
    pushAll(idx, `${field}:identifier`, identifiers);
    // `:missing` asks whether the element is there at all: a Reference with only a display or
    // an identifier is present though it yields no reference string.
    if (refs.length > 0 || values.some(({ value }) => hasContent(value))) idx[`${field}:present`] = true;
  },
  toCond(param, value, field, ctx) {
    if (value.modifier === 'identifier') {
      return { k: 'eq', f: P(`${field}:identifier`), v: tokenQueryString(param, value.raw) };
    }
    const raw = unescapeValue(value.raw);
    if (!raw) throw invalid(param, 'reference', value.raw);
    if (value.modifier) {
      // `subject:Patient=123`: the modifier names the target type.
      if (!TYPE_RE.test(value.modifier) || (param.targets.length > 0 && !param.targets.includes(value.modifier))) {
        throw invalid(param, 'reference type modifier', value.modifier);
      }
      const id = raw.includes('/') ? raw.slice(raw.lastIndexOf('/') + 1) : raw;
      if (!ID_RE.test(id)) throw invalid(param, 'reference', raw);
      return { k: 'eq', f: P(field), v: `${value.modifier}/${id}` };
    }
    return referenceCond(param, raw, P(field), ctx);
  },
  presenceField: (field) => P(`${field}:present`),
  sortField: (param, field) => P(param.single ? field : `${field}:s`),
};

function hasContent(value: unknown): boolean {
  if (typeof value === 'string') return value !== '';
  return Boolean(value && typeof value === 'object' && Object.keys(value).length > 0);
}

export function referenceCond(param: SearchParam, raw: string, path: string, ctx: EncodeContext): Cond {
  if (ID_RE.test(raw) && !raw.includes('/')) {
    const targets = param.targets.length > 0 ? param.targets : [];
    if (targets.length === 0) throw invalid(param, 'reference (give Type/id)', raw);
    return { k: 'in', f: path, v: targets.map((t) => `${t}/${raw}`) };
  }
  const norm = normaliseReference(raw, ctx);
  if (norm.length === 0) throw invalid(param, 'reference', raw);
  const local = LOCAL_REF_RE.exec(norm[0]);
  if (!local && !/^[a-z][a-z0-9+.-]*:/i.test(norm[0])) throw invalid(param, 'reference', raw);
  return { k: 'eq', f: path, v: norm[norm.length - 1] };
}
