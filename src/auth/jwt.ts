import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import jwt, { type Algorithm, type JwtPayload } from 'jsonwebtoken';

/** Why a JWT was refused; the message is safe to show to the caller (no token contents). */
export class JwtError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JwtError';
  }
}

export interface JwtHeaderFields {
  alg: string;
  kid?: string;
  typ?: string;
}

export interface DecodedJwt {
  header: JwtHeaderFields;
  payload: JwtPayload;
}

/** Asymmetric algorithms only: `none` and HS* are never acceptable (HS* with a public key is a known forgery). */
export const ASYMMETRIC_ALGS: readonly Algorithm[] = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
];
/** What SMART Backend Services clients may sign assertions with. */
export const CLIENT_ASSERTION_ALGS: readonly Algorithm[] = ['RS384', 'ES384'];

const B64URL = /^[A-Za-z0-9_-]+$/;

function b64json(part: string, what: string): Record<string, unknown> {
  if (!B64URL.test(part)) throw new JwtError(`malformed token: ${what} is not base64url`);
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    throw new JwtError(`malformed token: ${what} is not JSON`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new JwtError(`malformed token: ${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

/** Reads header and payload without trusting them; only to choose the key and the checks. */
export function decodeJwt(token: string): DecodedJwt {
  if (token.length > 16384) throw new JwtError('token too long');
  const parts = token.split('.');
  if (parts.length !== 3) throw new JwtError('malformed token: expected three dot-separated parts');
  const header = b64json(parts[0], 'header');
  const payload = b64json(parts[1], 'payload');
  if (typeof header.alg !== 'string') throw new JwtError('malformed token: header has no alg');
  if (header.kid !== undefined && typeof header.kid !== 'string') throw new JwtError('malformed token: kid is not a string');
  return {
    header: { alg: header.alg, kid: header.kid as string | undefined, typ: header.typ as string | undefined },
    payload: payload as JwtPayload,
  };
}

/** Refuses algorithms outside the allow-list before any key is looked at. */
export function assertAlgAllowed(alg: string, allowed: readonly Algorithm[]): Algorithm {
  if (alg.toLowerCase() === 'none') throw new JwtError('unsigned tokens (alg none) are not accepted');
  if (!allowed.includes(alg as Algorithm)) {
    throw new JwtError(`signing algorithm ${alg} is not accepted (accepted: ${allowed.join(', ')})`);
  }
  return alg as Algorithm;
}

const CURVES: Record<string, string> = { ES256: 'prime256v1', ES384: 'secp384r1', ES512: 'secp521r1' };

/** Whether a key can be used with an algorithm (RSA for RS/PS, the matching curve for ES). */
export function keyFitsAlg(key: KeyObject, alg: string): boolean {
  if (key.type !== 'public') return false;
  if (alg.startsWith('RS')) return key.asymmetricKeyType === 'rsa';
  if (alg.startsWith('PS')) return key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss';
  if (alg.startsWith('ES')) {
    return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === CURVES[alg];
  }
  return false;
}

/** A public key from a JWK; refuses private or symmetric keys so none can be registered by mistake. */
export function publicKeyFromJwk(jwk: JsonWebKey): KeyObject {
  if (jwk.kty !== 'RSA' && jwk.kty !== 'EC') throw new JwtError(`key type ${String(jwk.kty)} is not supported (RSA or EC)`);
  if (jwk.d !== undefined) throw new JwtError('a JWKS must hold public keys only (found a private "d" member)');
  try {
    return createPublicKey({ key: jwk, format: 'jwk' });
  } catch (e) {
    throw new JwtError(`unusable JWK: ${(e as Error).message}`);
  }
}

export interface VerifyOptions {
  algorithms: readonly Algorithm[];
  issuer?: string;
  audience?: string;
  /** Seconds of clock skew tolerated on exp, nbf and iat. */
  clockToleranceSec: number;
  now: Date;
}

/**
 * Verifies signature, issuer, audience, exp (required) and nbf with jsonwebtoken, after our own
 * checks that the algorithm is allowed and that the key fits it.
 */
export function verifyJwt(token: string, key: KeyObject, alg: string, opts: VerifyOptions): JwtPayload {
  const algorithm = assertAlgAllowed(alg, opts.algorithms);
  if (!keyFitsAlg(key, algorithm)) throw new JwtError(`the key does not fit algorithm ${algorithm}`);
  let payload: string | JwtPayload;
  try {
    payload = jwt.verify(token, key, {
      algorithms: [algorithm],
      issuer: opts.issuer,
      audience: opts.audience,
      clockTolerance: opts.clockToleranceSec,
      clockTimestamp: Math.floor(opts.now.getTime() / 1000),
    });
  } catch (e) {
    throw new JwtError(describeJwtFailure(e as Error));
  }
  if (typeof payload === 'string') throw new JwtError('malformed token: payload is not a JSON object');
  if (typeof payload.exp !== 'number') throw new JwtError('token has no exp');
  return payload;
}

function describeJwtFailure(e: Error): string {
  switch (e.name) {
    case 'TokenExpiredError':
      return 'token expired';
    case 'NotBeforeError':
      return 'token not yet valid (nbf)';
    default:
      if (/audience/.test(e.message)) return 'wrong audience';
      if (/issuer/.test(e.message)) return 'wrong issuer';
      if (/signature/.test(e.message)) return 'invalid signature';
      return `invalid token (${e.message})`;
  }
}
