import { createHmac, timingSafeEqual } from 'node:crypto';
import type { FhirError } from '../errors';

/**
 * The one paging-cursor codec (history `_page`, search `_cursor`): base64url(JSON) + "." +
 * HMAC-SHA256 under the server's cursor secret. A client can hand a cursor back but cannot
 * forge or alter one. What the JSON holds is the caller's business (see search/cursor.ts).
 */
/** `meta` key of the generated cursor secret (when CURSOR_SECRET is not configured). */
export const CURSOR_SECRET_KEY = 'cursor-secret';

export class CursorCodec {
  constructor(private readonly secret: string) {}

  encode(value: unknown): string {
    const body = Buffer.from(JSON.stringify(value)).toString('base64url');
    return `${body}.${this.sign(body)}`;
  }

  /** The value of a genuine cursor; anything else (malformed, forged, altered) throws `invalid()`. */
  decode<T>(token: string, invalid: () => FhirError): T {
    const [body, sig, extra] = token.split('.');
    if (!body || !sig || extra !== undefined) throw invalid();
    const expected = Buffer.from(this.sign(body));
    const given = Buffer.from(sig);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) throw invalid();
    try {
      return JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as T;
    } catch {
      throw invalid();
    }
  }

  private sign(body: string): string {
    return createHmac('sha256', this.secret).update(body).digest('base64url');
  }
}
