import { Errors } from '../errors';
import type { CursorCodec } from '../resources/cursor';

/** Where a page ends: the sort key values and id of its last (or, going back, first) row. */
export interface CursorState {
  /** Sort key values of the boundary row (null when missing). */
  k: (string | number | boolean | Date | null)[];
  id: string;
  /** Direction: n = the page after the boundary, p = the page before it. */
  d: 'n' | 'p';
  /** Hash of the query the cursor belongs to: a cursor cannot be replayed on another query. */
  q: string;
  /** For system-level searches: index of the resource type of the boundary row. */
  t?: number;
  /** Where a bounded scan stopped (storage's scan point): the next page continues there. */
  s?: { m: string; id: string };
}

type Wire = Omit<CursorState, 'k'> & { k: unknown[] };

/** A search paging token (dates survive the JSON as `{ $d: ms }`). */
export function encodeCursor(codec: CursorCodec, state: CursorState): string {
  const wire: Wire = { ...state, k: state.k.map((v) => (v instanceof Date ? { $d: v.getTime() } : v)) };
  return codec.encode(wire);
}

/** Verifies and decodes a paging token; a tampered or foreign one (another query's) is a 400. */
export function decodeCursor(codec: CursorCodec, token: string, queryHash: string): CursorState {
  const bad = () => Errors.badRequest('Invalid or expired paging cursor (_cursor)', 'MSG_PARAM_INVALID', ['_cursor']);
  const wire = codec.decode<Wire>(token, bad);
  if (wire?.q !== queryHash || !Array.isArray(wire.k) || typeof wire.id !== 'string') throw bad();
  if (wire.s !== undefined && (typeof wire.s?.m !== 'string' || typeof wire.s?.id !== 'string')) throw bad();
  const k = wire.k.map((v) =>
    v && typeof v === 'object' && typeof (v as { $d?: unknown }).$d === 'number' ? new Date((v as { $d: number }).$d) : (v as string | number | boolean | null),
  );
  return { ...wire, k };
}
