import { createHmac, timingSafeEqual } from 'node:crypto';
import { Errors } from '../errors';

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
}

type Wire = Omit<CursorState, 'k'> & { k: unknown[] };

function sign(secret: string, body: string): string {
  return createHmac('sha256', secret).update(body).digest('base64url');
}

/** An opaque, HMAC-signed paging token. */
export function encodeCursor(secret: string, state: CursorState): string {
  const wire: Wire = { ...state, k: state.k.map((v) => (v instanceof Date ? { $d: v.getTime() } : v)) };
  const body = Buffer.from(JSON.stringify(wire)).toString('base64url');
  return `${body}.${sign(secret, body)}`;
}

/** Verifies and decodes a paging token; a tampered or foreign one is a 400. */
export function decodeCursor(secret: string, token: string, queryHash: string): CursorState {
  const bad = () => Errors.badRequest('Invalid or expired paging cursor (_cursor)', 'MSG_PARAM_INVALID', ['_cursor']);
  const [body, mac, extra] = token.split('.');
  if (!body || !mac || extra !== undefined) throw bad();
  const expected = Buffer.from(sign(secret, body));
  const given = Buffer.from(mac);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) throw bad();
  let wire: Wire;
  try {
    wire = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as Wire;
  } catch {
    throw bad();
  }
  if (wire.q !== queryHash || !Array.isArray(wire.k) || typeof wire.id !== 'string') throw bad();
  const k = wire.k.map((v) =>
    v && typeof v === 'object' && typeof (v as { $d?: unknown }).$d === 'number' ? new Date((v as { $d: number }).$d) : (v as string | number | boolean | null),
  );
  return { ...wire, k };
}
