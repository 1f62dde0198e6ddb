import type { Resource } from 'fhir/r4';
import { randomUUID } from 'node:crypto';
import type { Collection } from 'mongodb';
import { restoreDecimals, type DecimalText } from '../json';
import { findByIds } from './lookup';
import type { CurrentDoc, HistoryDoc } from './types';

/** Default of STORAGE_INLINE_MAX: resources up to this many characters of JSON stay inline. */
export const DEFAULT_INLINE_MAX = 16 * 1024;
/** Strings of the lean copy are cut to this many characters (the cut ends in LEAN_MARK). */
export const LEAN_STRING = 256;
const LEAN_MARK = '\u2026';

/**
 * The full resource of a version kept out of line: `bodies` collection, `_id` = the history id of
 * the version plus a nonce (two racing writers of one version never share a body), read back only
 * by `_id`. `comp` lets erasure find bodies whose version never committed (a writer that died).
 */
export interface BodyDoc {
  _id: string;
  res: Resource;
  dec?: DecimalText[];
  comp: string[];
  at: Date;
}

/** A stored document as read: `res` is lean when `body` names its full resource. */
type Stored = { res?: Resource; dec?: DecimalText[]; body?: string };

/**
 * Big resources out of the documents that are scanned. On the embedded engine any filter but a
 * bare `_id` decodes whole documents, so a few 4 MB photos made every scan of their type (and of
 * `history`) crawl. A version whose resource is over `inlineMax` characters keeps its full
 * resource (and its decimal texts) in `bodies`; its current and history documents keep `body`
 * (the body's `_id`) and a lean copy in `res`, every string cut to LEAN_STRING characters, which
 * is what in-database filters and policy checks look at (their values are codes, references and
 * short strings). Every read that returns a resource goes through `load`, the one function that
 * turns stored documents into resources.
 */
export class Bodies {
  constructor(
    readonly col: Collection<BodyDoc>,
    readonly inlineMax: number = DEFAULT_INLINE_MAX,
  ) {}

  /**
   * Before the commit point: stores the full resource of every big version and sets its `body`
   * (a writer that loses its race removes them again with `unplace`).
   */
  async place(items: readonly { hid: string; doc: CurrentDoc }[]): Promise<void> {
    const big = items.filter((it) => !it.doc.body && isOver(it.doc.res, this.inlineMax));
    if (big.length === 0) return;
    const at = new Date();
    const docs = big.map(({ hid, doc }) => {
      // A Patient is in its own compartment for erasure's sake (its `comp` names linked patients only).
      const own = hid.startsWith('Patient/') ? [`Patient/${doc._id}`] : [];
      const b: BodyDoc = { _id: `${hid}~${randomUUID()}`, res: doc.res, comp: [...new Set([...doc.comp, ...own])], at };
      if (doc.dec) b.dec = doc.dec;
      return b;
    });
    await this.col.insertMany(docs, { ordered: false });
    big.forEach((it, i) => (it.doc.body = docs[i]._id));
  }

  /** Removes the bodies `place` wrote for documents that will not be committed (a lost race, a rollback). */
  async unplace(docs: readonly CurrentDoc[]): Promise<void> {
    for (const d of docs) {
      if (!d.body) continue;
      await this.col.deleteOne({ _id: d.body });
      delete d.body;
    }
  }

  /** Removes bodies by id (a rollback found in the journal at start-up). */
  async remove(ids: readonly (string | undefined)[]): Promise<void> {
    for (const id of new Set(ids)) if (id) await this.col.deleteOne({ _id: id });
  }

  /**
   * Stored documents to resources: the full resource of each document with a `body` (point reads
   * by `_id`), then the decimal texts on every resource. In place; returns its argument.
   */
  async load<D extends Stored | null | undefined>(docs: D[]): Promise<D[]> {
    const want = docs.flatMap((d) => (d?.body && d.res ? [d.body] : []));
    if (want.length > 0) {
      const found = new Map((await findByIds(this.col, want)).map((b) => [b._id, b]));
      for (const d of docs) {
        if (!d?.body || !d.res) continue;
        const b = found.get(d.body);
        // Erasure removes documents before their bodies, so this is a document erased meanwhile.
        if (!b) throw new Error(`stored body ${d.body} is missing`);
        d.res = b.res;
        if (b.dec) d.dec = b.dec;
        else delete d.dec;
      }
    }
    for (const d of docs) restoreDecimals(d);
    return docs;
  }

  async loadOne<D extends Stored | null | undefined>(doc: D): Promise<D> {
    return (await this.load([doc]))[0];
  }

}

/** The form a document is stored in: with a `body`, a lean `res` and no decimal texts. */
export function storedForm<D extends CurrentDoc | HistoryDoc>(doc: D): D {
  if (!doc.body || !doc.res) return doc;
  const out = { ...doc, res: lean(doc.res) };
  delete out.dec;
  return out;
}

/** Whether a stored resource (an outbox event's) may be a lean copy: it holds a cut string. */
export function mayBeLean(value: unknown): boolean {
  if (typeof value === 'string') return value.length === LEAN_STRING && value.endsWith(LEAN_MARK);
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value)) return value.some(mayBeLean);
  for (const k in value) if (mayBeLean((value as Record<string, unknown>)[k])) return true;
  return false;
}

/** A copy with every string over LEAN_STRING characters cut (never inside a surrogate pair). */
export function lean<T>(value: T): T {
  if (typeof value === 'string') {
    if (value.length <= LEAN_STRING) return value;
    let end = LEAN_STRING - 1;
    const c = value.charCodeAt(end - 1);
    if (c >= 0xd800 && c <= 0xdbff) end--;
    return (value.slice(0, end).padEnd(LEAN_STRING - 1, ' ') + LEAN_MARK) as T;
  }
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map((v: unknown) => lean(v)) as T;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(value)) out[k] = lean((value as Record<string, unknown>)[k]);
  return out as T;
}

/** Whether a JSON value's text is over `max` characters (estimated from strings and keys, stops early). */
export function isOver(value: unknown, max: number): boolean {
  let n = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') n += v.length + 2;
    else if (typeof v === 'number' || typeof v === 'boolean') n += 8;
    else if (Array.isArray(v)) {
      n += v.length + 2;
      for (const x of v) stack.push(x);
    } else if (v !== null && typeof v === 'object') {
      for (const k of Object.keys(v)) {
        n += k.length + 4;
        stack.push((v as Record<string, unknown>)[k]);
      }
    }
    if (n > max) return true;
  }
  return false;
}
