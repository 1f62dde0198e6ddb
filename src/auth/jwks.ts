import type { JsonWebKey, KeyObject } from 'node:crypto';
import { JwtError, publicKeyFromJwk } from './jwt';

export interface Jwks {
  keys: JsonWebKey[];
}

export function isJwks(v: unknown): v is Jwks {
  return !!v && typeof v === 'object' && Array.isArray((v as Jwks).keys);
}

/**
 * Picks the key for a token header from a key set: by `kid` when the header names one; without a
 * kid only when `allowSingleWithoutKid` and the set has exactly one usable key. Keys whose `use`
 * is not `sig` or whose `alg` differs from the header's are skipped.
 */
export function selectKey(
  jwks: Jwks,
  header: { alg: string; kid?: string },
  allowSingleWithoutKid: boolean,
): KeyObject | undefined {
  const usable = jwks.keys.filter(
    (k) => (k.use === undefined || k.use === 'sig') && (k.alg === undefined || k.alg === header.alg),
  );
  let jwk: JsonWebKey | undefined;
  if (header.kid !== undefined) jwk = usable.find((k) => k.kid === header.kid);
  else if (allowSingleWithoutKid && usable.length === 1) jwk = usable[0];
  if (!jwk) return undefined;
  try {
    return publicKeyFromJwk(jwk);
  } catch {
    return undefined;
  }
}

/** Whether a JWKS URL may be fetched: https, or http on the loopback interface (local development). */
export function assertFetchableUrl(uri: string): void {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw new Error(`"${uri}" is not an absolute URL`);
  }
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(u.hostname);
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && loopback)) {
    throw new Error(`JWKS URL "${uri}" must use https (plain http only on localhost)`);
  }
}

const MAX_BYTES = 256 * 1024;

/**
 * A key set fetched from a URL (a client's `jwks_uri` or an external issuer's), cached for
 * `maxAgeMs` and fetched again early when a token names a kid we do not know, but never more
 * often than `minRefreshMs`, so a stream of bogus kids cannot make us hammer the URL.
 */
export class RemoteJwks {
  private cached?: { jwks: Jwks; at: number };
  private lastAttempt?: number;
  private lastError?: string;
  private inflight?: Promise<Jwks>;

  constructor(
    readonly uri: string,
    private readonly opts: { maxAgeMs?: number; minRefreshMs?: number; timeoutMs?: number; now?: () => number } = {},
  ) {}

  /** The key for a token header; throws JwtError when the key set could never be fetched. */
  async key(header: { alg: string; kid?: string }, allowSingleWithoutKid: boolean): Promise<KeyObject | undefined> {
    const now = (this.opts.now ?? Date.now)();
    const maxAge = this.opts.maxAgeMs ?? 10 * 60_000;
    if ((!this.cached || now - this.cached.at > maxAge) && this.mayFetch(now)) await this.refresh(now);
    if (!this.cached) throw new JwtError(`could not fetch the key set${this.lastError ? `: ${this.lastError}` : ''}`);
    let key = selectKey(this.cached.jwks, header, allowSingleWithoutKid);
    if (!key && this.mayFetch(now)) {
      await this.refresh(now);
      key = selectKey(this.cached.jwks, header, allowSingleWithoutKid);
    }
    return key;
  }

  private mayFetch(now: number): boolean {
    return this.lastAttempt === undefined || now - this.lastAttempt >= (this.opts.minRefreshMs ?? 10_000);
  }

  /** Never throws: on failure the last good key set (if any) stays in use. */
  private async refresh(now: number): Promise<void> {
    this.lastAttempt = now;
    this.inflight ??= this.fetchJwks().finally(() => (this.inflight = undefined));
    try {
      this.cached = { jwks: await this.inflight, at: now };
      this.lastError = undefined;
    } catch (e) {
      this.lastError = (e as Error).message;
    }
  }

  private async fetchJwks(): Promise<Jwks> {
    assertFetchableUrl(this.uri);
    const res = await fetch(this.uri, {
      headers: { accept: 'application/json' },
      redirect: 'error',
      signal: AbortSignal.timeout(this.opts.timeoutMs ?? 5000),
    });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const text = await res.text();
    if (text.length > MAX_BYTES) throw new Error('key set too large');
    const body: unknown = JSON.parse(text);
    if (!isJwks(body)) throw new Error('response is not a JWKS ({"keys": [...]})');
    return body;
  }
}
