import { Errors } from '../errors';
import { type Cond, and, not, or } from './cond';
import { encoderFor } from './encoders';
import { invalid, splitEscaped, unescapeValue } from './encoders/common';
import type { FilterParam } from './parse';
import type { EncodeContext, SearchParam } from './types';
import { ID_RE } from '../resources/id';

/** A parameter the search did not use, and why (reported in lenient mode, a 400 in strict mode). */
export interface Ignored {
  name: string;
  reason: string;
}

export type Handling = 'strict' | 'lenient';

export class Unusable extends Error {}

/** Reports an unknown/unsupported parameter: a 400 in strict mode, a note in lenient mode. */
export function reject(name: string, reason: string, handling: Handling, ignored: Ignored[]): void {
  if (handling === 'strict') {
    throw Errors.badRequest(`Search parameter "${name}" ${reason}`, 'MSG_PARAM_UNKNOWN');
  }
  ignored.push({ name, reason });
}

/** Comma-separated alternatives of a value; empty ones are dropped. */
export function alternatives(value: string): string[] {
  return splitEscaped(value, ',').filter((v) => v !== '');
}

/**
 * Condition for one non-chained parameter. Returns undefined when the parameter is ignored
 * (lenient mode, empty value). Alternatives are ORed; `:not` alternatives are ANDed (none of them).
 */
export function simpleCond(
  params: Map<string, SearchParam>,
  fp: FilterParam,
  ctx: EncodeContext,
  handling: Handling,
  ignored: Ignored[],
): Cond | undefined {
  const p = params.get(fp.code);
  if (!p) {
    reject(fp.name, `is not known for ${[...params.values()][0]?.resourceType ?? 'this type'}`, handling, ignored);
    return undefined;
  }
  if (p.unsupported) {
    reject(fp.name, `is not supported: ${p.unsupported}`, handling, ignored);
    return undefined;
  }
  const values = alternatives(fp.value);
  if (values.length === 0) return undefined;
  if (fp.modifier === 'missing') {
    if (values.length !== 1 || !['true', 'false'].includes(values[0])) throw invalid(p, ':missing value (true or false)', fp.value);
    if (p.code === '_id') return values[0] === 'true' ? { k: 'const', v: false } : { k: 'const', v: true };
    const enc = encoderFor(p);
    if (!enc) return undefined;
    return { k: 'exists', f: enc.presenceField(p.code), v: values[0] === 'false' };
  }
  if (p.code === '_id') return idCond(p, fp, values);
  const enc = encoderFor(p);
  if (!enc) {
    reject(fp.name, 'is not supported', handling, ignored);
    return undefined;
  }
  const isTypeModifier = p.type === 'reference' && fp.modifier !== undefined && /^[A-Z]/.test(fp.modifier);
  if (fp.modifier !== undefined && !isTypeModifier && !enc.modifiers.includes(fp.modifier)) throw badModifier(fp, p.type);
  const conds = values.map((raw) => enc.toCond(p, { modifier: fp.modifier, raw }, p.code, ctx));
  return fp.modifier === 'not' ? and(conds) : or(conds);
}


/**
 * An unknown or unsupported modifier is a 400 whatever the handling: the spec's own search
 * failure example (search.html#errors) is exactly this, since ignoring a modifier changes the
 * meaning of the parameter instead of dropping it.
 */
function badModifier(fp: FilterParam, kind: string): Error {
  return Errors.badRequest(
    `Search parameter "${fp.name}" uses the modifier :${fp.modifier}, which is not supported for ${kind} parameters`,
    'MSG_PARAM_MODIFIER_INVALID',
    [fp.name],
  );
}

function idCond(p: SearchParam, fp: FilterParam, values: string[]): Cond | undefined {
  if (fp.modifier !== undefined && fp.modifier !== 'not') throw badModifier(fp, '_id');
  const ids = values.map(unescapeValue);
  for (const id of ids) if (!ID_RE.test(id)) throw invalid(p, 'id', id);
  const c: Cond = ids.length === 1 ? { k: 'eq', f: '_id', v: ids[0] } : { k: 'in', f: '_id', v: ids };
  return fp.modifier === 'not' ? not(c) : c;
}
