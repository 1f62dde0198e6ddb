import type { CarriedDoc, Entry } from './bucket-store';

/**
 * The text form of bucket entries: one line per entry, its id and index values as JSON, then,
 * when it carries a document, a tab and the document as JSON. Dates are `{"$d": ms}` (bucket
 * entries hold index values, whose dates are `Date`s); FHIR JSON never has a key starting with
 * `$`, so the marker cannot clash with an index value. JSON text never holds a raw tab or
 * newline (JSON.stringify escapes them inside strings), so both are safe separators.
 *
 * A carried document stays text (`Entry.t`) until something reads it (`carriedOf`), not when
 * its bucket is read: a walk reads many entries to find the few a page uses (a population
 * query's first page of 50 reads every matching entry of a value band, each carrying about a
 * kilobyte), and an entry moved from one stored chunk to another is written back unparsed.
 */

function replacer(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key];
  return raw instanceof Date ? { $d: raw.getTime() } : value;
}

/** One entry as one line; a carried document read as text is written back as it was read. */
export function encodeEntry(e: Entry): string {
  const head = JSON.stringify({ i: e.i, x: e.x }, replacer);
  const doc = e.t ?? (e.d === undefined ? undefined : JSON.stringify(e.d, replacer));
  return doc === undefined ? head : `${head}\t${doc}`;
}

/** Entries as one chunk of lines. */
export function encodeEntries(entries: readonly Entry[]): string {
  return entries.map(encodeEntry).join('\n');
}

/** What may carry a document (bucket entries, walk candidates); read it through `carriedOf`. */
export interface Carrier {
  /** A current document but its index values (see CarriedDoc). */
  d?: CarriedDoc;
  /** That document's text as a read left it, not parsed yet. */
  t?: string;
}

/** Whether an entry carries a document, without parsing it. */
export function carries(e: Carrier): boolean {
  return e.d !== undefined || e.t !== undefined;
}

/** The document an entry carries, parsed from its text on first read (and kept). */
export function carriedOf(e: Carrier): CarriedDoc | undefined {
  if (e.d === undefined && e.t !== undefined) {
    const doc = JSON.parse(e.t) as CarriedDoc;
    doc.ts = reviveDates(doc.ts) as Date;
    e.d = doc;
  }
  return e.d;
}

/**
 * Every entry of a bucket's stored chunks, in stored order. Lines are parsed without a reviver
 * (a reviver is a call per value: 26-36 MB/s against the native parser's several hundred) and
 * dates restored where entries hold them: the index values `x` and a carried document's `ts`
 * (a carried resource is FHIR JSON, which never holds the marker). Lines of layout v9 hold the
 * carried document inline (`"d":` in the one JSON object); they are parsed whole, so buckets
 * written before need no rebuild.
 */
export function decodeEntries(chunks: readonly string[] | undefined): Entry[] {
  const out: Entry[] = [];
  for (const chunk of chunks ?? []) {
    if (chunk === '') continue;
    for (const line of chunk.split('\n')) {
      const tab = line.indexOf('\t');
      const e = JSON.parse(tab < 0 ? line : line.slice(0, tab)) as Entry;
      e.x = reviveDates(e.x) as Entry['x'];
      if (tab >= 0) e.t = line.slice(tab + 1);
      else if (e.d) e.d.ts = reviveDates(e.d.ts) as Date;
      out.push(e);
    }
  }
  return out;
}

/** A decoded value with its `{"$d": ms}` markers turned back into dates (as the reviver does). */
function reviveDates(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = reviveDates(value[i]);
    return value;
  }
  const o = value as Record<string, unknown>;
  const d = o.$d;
  if (typeof d === 'number' && Object.keys(o).length === 1) return new Date(d);
  for (const k of Object.keys(o)) o[k] = reviveDates(o[k]);
  return o;
}
