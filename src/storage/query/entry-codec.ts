import type { Entry } from './bucket-store';

/**
 * The text form of bucket entries: one JSON line per entry, dates as `{"$d": ms}` (bucket
 * entries hold index values, whose dates are `Date`s). FHIR JSON never has a key starting with
 * `$`, so the marker cannot clash with an index value.
 */

function replacer(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key];
  return raw instanceof Date ? { $d: raw.getTime() } : value;
}

function reviver(_key: string, value: unknown): unknown {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const d = (value as { $d?: unknown }).$d;
    if (typeof d === 'number' && Object.keys(value).length === 1) return new Date(d);
  }
  return value;
}

/** One entry as one line (JSON.stringify escapes newlines inside strings). */
export function encodeEntry(e: Entry): string {
  return JSON.stringify(e, replacer);
}

/** Entries as one chunk of lines. */
export function encodeEntries(entries: readonly Entry[]): string {
  return entries.map(encodeEntry).join('\n');
}

/** Every entry of a bucket's stored chunks, in stored order. */
export function decodeEntries(chunks: readonly string[] | undefined): Entry[] {
  const out: Entry[] = [];
  for (const chunk of chunks ?? []) {
    if (chunk === '') continue;
    for (const line of chunk.split('\n')) out.push(JSON.parse(line, reviver) as Entry);
  }
  return out;
}
