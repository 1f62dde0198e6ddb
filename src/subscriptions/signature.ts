import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Webhook signatures: `X-Vigil-Signature: t=<unix seconds>,v1=<hex hmac>[,v1=<hex hmac>]`, where
 * each v1 is HMAC-SHA256(secret, "<t>.<raw body>"). During a secret rotation both the new and the
 * previous secret sign, so a receiver holding either one verifies (see README.md here).
 */
export function signatureHeader(timestampSeconds: number, body: string, secrets: string[]): string {
  const parts = [`t=${timestampSeconds}`];
  for (const s of secrets) parts.push(`v1=${hmacHex(s, timestampSeconds, body)}`);
  return parts.join(',');
}

function hmacHex(secret: string, t: number, body: string): string {
  return createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
}

export interface VerifyOptions {
  /** Largest accepted age of the timestamp, to stop replays (seconds). */
  toleranceSeconds?: number;
  nowSeconds?: number;
}

/** The receiver's side of the recipe: true when any v1 matches any of the receiver's secrets. */
export function verifySignature(header: string, body: string, secrets: string[], opts: VerifyOptions = {}): boolean {
  const fields = header.split(',').map((p) => p.trim());
  const t = Number(fields.find((f) => f.startsWith('t='))?.slice(2));
  if (!Number.isInteger(t)) return false;
  const now = opts.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - t) > (opts.toleranceSeconds ?? 300)) return false;
  const given = fields.filter((f) => f.startsWith('v1=')).map((f) => Buffer.from(f.slice(3), 'hex'));
  return secrets.some((s) => {
    const expected = Buffer.from(hmacHex(s, t, body), 'hex');
    return given.some((g) => g.length === expected.length && timingSafeEqual(g, expected));
  });
}

export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}
