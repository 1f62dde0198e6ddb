import { generateKeyPairSync, randomUUID, type JsonWebKey, type KeyObject } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import jwt from 'jsonwebtoken';

export interface TestKey {
  kid: string;
  alg: 'RS384' | 'ES384' | 'RS256';
  privateKey: KeyObject;
  publicKey: KeyObject;
  jwk: JsonWebKey;
}

/** A fresh key pair as a client (or an external IdP) would generate it, with its public JWK. */
export function makeKey(alg: 'RS384' | 'ES384' | 'RS256', kid: string): TestKey {
  const pair =
    alg === 'ES384'
      ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
      : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { kid, alg, ...pair, jwk: { ...pair.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' } };
}

/** A SMART Backend Services client assertion; every claim can be overridden (or removed with undefined). */
export function assertion(
  key: TestKey,
  clientId: string,
  aud: string,
  over: Record<string, unknown> = {},
  header: { kid?: string; alg?: string } = {},
): string {
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = { iss: clientId, sub: clientId, aud, exp: now + 240, jti: randomUUID(), ...over };
  for (const k of Object.keys(claims)) if (claims[k] === undefined) delete claims[k];
  return jwt.sign(claims, key.privateKey, {
    algorithm: (header.alg ?? key.alg) as jwt.Algorithm,
    ...(header.kid === '' ? {} : { keyid: header.kid ?? key.kid }),
  });
}

export function b64url(o: object): string {
  return Buffer.from(JSON.stringify(o)).toString('base64url');
}

/** A tiny HTTP server publishing a JWKS (a client's jwks_uri or an external issuer's), on loopback. */
export async function serveJwks(keys: JsonWebKey[]): Promise<{ url: string; close(): Promise<void>; hits(): number }> {
  let hits = 0;
  const srv = http.createServer((_req, res) => {
    hits++;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys }));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/jwks.json`,
    hits: () => hits,
    close: () => new Promise<void>((r) => srv.close(() => r())),
  };
}

export function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

export const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
export const VITALS = 'category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs';
