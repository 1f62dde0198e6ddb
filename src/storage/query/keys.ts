import { type Cond, FALSE, and, not, or } from '../../search/cond';
import type { CurrentDoc } from '../types';
import { indexView, paramOfField } from './carried-index';

/** One key of a result order (`_id` last, as the tie-breaker). */
export interface SortKey {
  field: string;
  dir: 1 | -1;
}

/** A sort key's value in a keyset boundary. */
export type KeyValue = string | number | boolean | Date | null;

/** The sort field of Observation `date` (single-valued: its low bound). */
export const DATE_SORT = 'idx.date.l';

/** The value of a (dotted) sort field of a document, as a keyset boundary holds it. */
export function sortValue(doc: CurrentDoc, field: string): KeyValue {
  // A walk's rebuilt documents answer their walk's parameters from the partial index.
  const param = paramOfField(field);
  let cur: unknown = param === undefined ? doc : { idx: indexView(doc, param) };
  for (const seg of field.split('.')) {
    if (cur === null || typeof cur !== 'object' || cur instanceof Date) return null;
    cur = (cur as Record<string, unknown>)[seg];
  }
  if (cur === undefined || cur === null) return null;
  if (typeof cur === 'string' || typeof cur === 'number' || typeof cur === 'boolean' || cur instanceof Date) return cur;
  return null;
}

/** Rows strictly after the boundary in the given order (missing values sort first ascending, last descending). */
export function keysetCond(order: SortKey[], values: KeyValue[]): Cond {
  const alts: Cond[] = [];
  for (let i = 0; i < order.length; i++) {
    const eqs: Cond[] = order.slice(0, i).map((k, j) => ({ k: 'eq', f: k.field, v: values[j] }));
    const { field, dir } = order[i];
    const v = values[i];
    let after: Cond;
    if (dir === 1) after = v === null ? not({ k: 'eq', f: field, v: null }) : { k: 'range', f: field, elem: false, b: { gt: v } };
    else after = v === null ? FALSE : or([{ k: 'range', f: field, elem: false, b: { lt: v } }, { k: 'eq', f: field, v: null }]);
    alts.push(and([...eqs, after]));
  }
  return or(alts);
}

/** Whether a condition has `$elemMatch` ranges (which FerretDB evaluates loosely). */
export function hasElemRange(c: Cond): boolean {
  if (c.k === 'range') return c.elem;
  if (c.k === 'and' || c.k === 'or' || c.k === 'nor') return c.c.some(hasElemRange);
  return false;
}

/**
 * A condition the database may over-approximate safely: `$elemMatch` ranges stay where they only
 * widen the result and become FALSE under a negation (so the negation widens too). The exact
 * condition is then checked in memory.
 */
export function relax(c: Cond, positive: boolean): Cond {
  switch (c.k) {
    case 'range':
      return c.elem && !positive ? FALSE : c;
    case 'and':
      return and(c.c.map((x) => relax(x, positive)));
    case 'or':
      return or(c.c.map((x) => relax(x, positive)));
    case 'nor':
      return { k: 'nor', c: c.c.map((x) => relax(x, !positive)) };
    default:
      return c;
  }
}
