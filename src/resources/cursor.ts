import { createHmac, timingSafeEqual } from 'node:crypto';
import { Errors } from '../errors';

/**
 * Opaque, tamper-proof paging cursors: base64url(JSON) + "." + HMAC-SHA256. A client can hand
 * them back but cannot forge or alter one.
 */
export class CursorCodec {
  constructor(private readonly secret: string) {}

  encode(value: unknown): string {
    const body = Buffer.from(JSON.stringify(value)).toString('base64url');
    return `${body}.${this.sign(body)}`;
  }

  decode<T>(token: string, param = '_page'): T {
    const [body, sig] = token.split('.');
    if (!body || !sig) throw Errors.badRequest(`Invalid paging cursor in ${param}`, 'MSG_BAD_CURSOR');
    const expected = Buffer.from(this.sign(body));
    const given = Buffer.from(sig);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      throw Errors.badRequest(`Invalid or tampered paging cursor in ${param}`, 'MSG_BAD_CURSOR');
    }
    try {
      return JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as T;
    } catch {
      throw Errors.badRequest(`Invalid paging cursor in ${param}`, 'MSG_BAD_CURSOR');
    }
  }

  private sign(body: string): string {
    return createHmac('sha256', this.secret).update(body).digest('base64url');
  }
}
