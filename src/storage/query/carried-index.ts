import type { Cond } from '../../search/cond';
import type { CurrentDoc, IndexEntries } from '../types';
import type { IndexFn } from '../versions';
import type { CarriedDoc } from './bucket-store';

/**
 * Index values of carried documents, computed only as far as a walk reads them.
 *
 * A carried document comes without its index values (see CarriedDoc); the full index of an
 * Observation evaluates 48 search parameters, 0.37-0.50 ms on this machine, while the few a
 * monitoring query reads (code, date, subject, patient) take 0.02 ms. A bucket walk checks
 * dozens of carried documents per page, so it indexes each only for the parameters its
 * conditions, the access policy, the keyset boundary and the walk itself read. The document it
 * returns still has a complete `idx`: the property computes the full index on first read, so
 * every reader past the walk sees exactly what a stored document holds.
 */

/** Parameters the walk itself reads of every match: its order (date), `$lastn`'s grouping (subject, code). */
export const WALK_PARAMS: readonly string[] = ['date', 'subject', 'code'];

/**
 * The search parameter an index field belongs to: `idx.<code>`, `idx.<code>:s` (a token's
 * first coding) or `idx.<code>.<part>`; undefined for fields outside the index.
 */
export function paramOfField(field: string): string | undefined {
  if (!field.startsWith('idx.')) return undefined;
  const key = field.slice(4).split('.')[0];
  const colon = key.indexOf(':');
  return colon === -1 ? key : key.slice(0, colon);
}

/** Every parameter whose index values a condition reads. */
export function paramsOfCond(c: Cond | undefined, into: Set<string> = new Set()): Set<string> {
  if (!c) return into;
  if ('c' in c) {
    for (const x of c.c) paramsOfCond(x, into);
  } else if ('f' in c) {
    const p = paramOfField(c.f);
    if (p !== undefined) into.add(p);
  }
  return into;
}

/** The partial index of a rebuilt document and the parameters it covers. */
interface Partial {
  idx: IndexEntries;
  params: ReadonlySet<string>;
}
const partials = new WeakMap<CurrentDoc, Partial>();

/**
 * A carried document as a current document: index values of `params` at once, the full index
 * (lazily, once) when anything reads `idx`. Its decimal texts are attached before indexing, as
 * they were when the version was written (quantity ranges keep the sender's precision).
 */
export function rebuildCarried(d: CarriedDoc, index: IndexFn, params: ReadonlySet<string>, restore: <T extends object>(doc: T) => T): CurrentDoc {
  const doc = restore({ ...d }) as CurrentDoc;
  partials.set(doc, { idx: index(doc.res, params).idx, params });
  Object.defineProperty(doc, 'idx', {
    configurable: true,
    enumerable: true,
    get() {
      const full = index(doc.res).idx;
      Object.defineProperty(doc, 'idx', { value: full, configurable: true, enumerable: true, writable: true });
      return full;
    },
    set(v: IndexEntries) {
      Object.defineProperty(doc, 'idx', { value: v, configurable: true, enumerable: true, writable: true });
    },
  });
  return doc;
}

/** The index values a walk may read of `param`: the partial index when it covers the parameter. */
export function indexView(d: CurrentDoc, param: string): IndexEntries {
  const p = partials.get(d);
  return p && p.params.has(param) ? p.idx : d.idx;
}

/**
 * The document as conditions over `params` see it: a rebuilt document with its partial index in
 * front (the prototype supplies the rest), any other document as it is.
 */
export function evaluable(d: CurrentDoc): object {
  const p = partials.get(d);
  return p ? Object.create(d, { idx: { value: p.idx, enumerable: true } }) : d;
}
