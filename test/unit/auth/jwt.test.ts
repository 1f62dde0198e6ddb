import { createHmac, generateKeyPairSync, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { selectKey } from '../../../src/auth/jwks';
import { decodeJwt, JwtError, keyFitsAlg, publicKeyFromJwk, verifyJwt } from '../../../src/auth/jwt';

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const otherRsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const ec256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });

const NOW = new Date('2026-03-01T12:00:00Z');
const nowSec = Math.floor(NOW.getTime() / 1000);
const opts = { algorithms: ['RS384', 'ES384'] as const, issuer: 'https://as', audience: 'https://fhir', clockToleranceSec: 30, now: NOW };

function b64(o: object): string {
  return Buffer.from(JSON.stringify(o)).toString('base64url');
}
function sign(claims: object, key: KeyObject, alg: 'RS384' | 'ES384' | 'RS256' = 'RS384'): string {
  return jwt.sign({ iss: 'https://as', aud: 'https://fhir', iat: nowSec, exp: nowSec + 300, ...claims }, key, {
    algorithm: alg,
    keyid: 'k1',
  });
}
function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(JwtError);
    return (e as Error).message;
  }
  throw new Error('expected a JwtError');
}

describe('verifyJwt', () => {
  it('accepts RS384 and ES384 tokens with the right key, issuer and audience', () => {
    expect(verifyJwt(sign({ sub: 'a' }, rsa.privateKey), rsa.publicKey, 'RS384', opts).sub).toBe('a');
    expect(verifyJwt(sign({ sub: 'b' }, ec.privateKey, 'ES384'), ec.publicKey, 'ES384', opts).sub).toBe('b');
  });

  it('refuses alg none', () => {
    const token = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: 'https://as', aud: 'https://fhir', exp: nowSec + 60 })}.`;
    expect(reason(() => verifyJwt(token, rsa.publicKey, 'none', opts))).toMatch(/alg none/);
    expect(reason(() => verifyJwt(token, rsa.publicKey, 'NONE', opts))).toMatch(/alg none/);
  });

  it('refuses an HS256 token whose secret is our public key', () => {
    const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const head = b64({ alg: 'HS256', typ: 'JWT', kid: 'k1' });
    const body = b64({ iss: 'https://as', aud: 'https://fhir', exp: nowSec + 60 });
    const sig = createHmac('sha256', pem).update(`${head}.${body}`).digest('base64url');
    expect(reason(() => verifyJwt(`${head}.${body}.${sig}`, rsa.publicKey, 'HS256', opts))).toMatch(/HS256 is not accepted/);
  });

  it('refuses algorithms outside the allow-list even if the signature is fine', () => {
    expect(reason(() => verifyJwt(sign({}, rsa.privateKey, 'RS256'), rsa.publicKey, 'RS256', opts))).toMatch(/RS256 is not accepted/);
  });

  it('refuses a header alg that lies about the signature', () => {
    const t = sign({}, rsa.privateKey, 'RS384');
    expect(reason(() => verifyJwt(t, ec.publicKey, 'ES384', opts))).toMatch(/invalid/);
  });

  it('refuses a key that does not fit the algorithm', () => {
    expect(reason(() => verifyJwt(sign({}, rsa.privateKey), ec.publicKey, 'RS384', opts))).toMatch(/does not fit/);
    expect(keyFitsAlg(ec256.publicKey, 'ES384')).toBe(false);
    expect(keyFitsAlg(ec.publicKey, 'ES384')).toBe(true);
    expect(keyFitsAlg(rsa.privateKey, 'RS384')).toBe(false);
  });

  it('refuses a wrong signature', () => {
    expect(reason(() => verifyJwt(sign({}, otherRsa.privateKey), rsa.publicKey, 'RS384', opts))).toBe('invalid signature');
    const t = sign({ sub: 'a' }, rsa.privateKey).split('.');
    const tampered = `${t[0]}.${b64({ iss: 'https://as', aud: 'https://fhir', exp: nowSec + 60, sub: 'admin' })}.${t[2]}`;
    expect(reason(() => verifyJwt(tampered, rsa.publicKey, 'RS384', opts))).toBe('invalid signature');
  });

  it('refuses expired, not-yet-valid and exp-less tokens', () => {
    expect(reason(() => verifyJwt(sign({ exp: nowSec - 31 }, rsa.privateKey), rsa.publicKey, 'RS384', opts))).toBe('token expired');
    expect(reason(() => verifyJwt(sign({ nbf: nowSec + 120 }, rsa.privateKey), rsa.publicKey, 'RS384', opts))).toBe(
      'token not yet valid (nbf)',
    );
    const noExp = jwt.sign({ iss: 'https://as', aud: 'https://fhir' }, rsa.privateKey, { algorithm: 'RS384' });
    expect(reason(() => verifyJwt(noExp, rsa.publicKey, 'RS384', opts))).toBe('token has no exp');
  });

  it('tolerates small clock skew', () => {
    expect(() => verifyJwt(sign({ exp: nowSec - 10 }, rsa.privateKey), rsa.publicKey, 'RS384', opts)).not.toThrow();
  });

  it('refuses wrong audience and wrong issuer', () => {
    expect(reason(() => verifyJwt(sign({ aud: 'https://elsewhere' }, rsa.privateKey), rsa.publicKey, 'RS384', opts))).toBe(
      'wrong audience',
    );
    expect(reason(() => verifyJwt(sign({ iss: 'https://evil' }, rsa.privateKey), rsa.publicKey, 'RS384', opts))).toBe(
      'wrong issuer',
    );
  });
});

describe('decodeJwt', () => {
  it.each([
    ['', /three/],
    ['abc', /three/],
    ['a.b', /three/],
    ['a.b.c.d', /three/],
    ['!!.e30.x', /not base64url/],
    [`${Buffer.from('not json').toString('base64url')}.e30.x`, /header is not JSON/],
    [`${b64({ typ: 'JWT' })}.e30.x`, /no alg/],
    [`${b64({ alg: 'RS384', kid: 5 })}.e30.x`, /kid is not a string/],
    [`${b64({ alg: 'RS384' })}.${Buffer.from('[1]').toString('base64url')}.x`, /payload is not a JSON object/],
  ])('refuses malformed token %#', (token, re) => {
    expect(reason(() => decodeJwt(token))).toMatch(re);
  });
});

describe('JWKS keys', () => {
  const jwk = { ...rsa.publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'RS384' };
  const ecJwk = { ...ec.publicKey.export({ format: 'jwk' }), kid: 'e1' };

  it('selects by kid and alg', () => {
    const set = { keys: [jwk, ecJwk] };
    expect(selectKey(set, { alg: 'RS384', kid: 'k1' }, false)).toBeDefined();
    expect(selectKey(set, { alg: 'ES384', kid: 'e1' }, false)).toBeDefined();
    expect(selectKey(set, { alg: 'ES384', kid: 'k1' }, false)).toBeUndefined(); // key says RS384
    expect(selectKey(set, { alg: 'RS384', kid: 'nope' }, false)).toBeUndefined();
    expect(selectKey(set, { alg: 'RS384' }, true)).toBeUndefined(); // two candidates, no kid
    expect(selectKey({ keys: [jwk] }, { alg: 'RS384' }, true)).toBeDefined();
    expect(selectKey({ keys: [jwk] }, { alg: 'RS384' }, false)).toBeUndefined();
  });

  it('refuses private and symmetric JWKs', () => {
    const priv = rsa.privateKey.export({ format: 'jwk' });
    expect(() => publicKeyFromJwk(priv)).toThrow(/public keys only/);
    expect(() => publicKeyFromJwk({ kty: 'oct', k: 'c2VjcmV0' })).toThrow(/not supported/);
  });
});
