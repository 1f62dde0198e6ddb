import { randomUUID } from 'node:crypto';
import jwt, { type JwtPayload } from 'jsonwebtoken';
import type { ExternalIssuer } from '../config';
import { RemoteJwks } from './jwks';
import { ASYMMETRIC_ALGS, JwtError, decodeJwt, verifyJwt } from './jwt';
import type { KeyRing } from './keys';

/** SMART Backend Services recommends access tokens of at most five minutes. */
export const ACCESS_TOKEN_LIFETIME_SEC = 300;
const CLOCK_SKEW_SEC = 30;

export interface AccessTokenClaims {
  iss: string;
  aud: string;
  sub: string;
  client_id: string;
  scope: string;
  patient?: string;
  /** SMART App Launch tokens: the grant (consent) they come from, and the signed-in user. */
  gid?: string;
  fhirUser?: string;
  jti: string;
  iat: number;
  exp: number;
}

/** What a verified token says, whoever issued it. */
export interface VerifiedToken {
  issuer: string;
  clientId: string;
  scopes: string[];
  patient?: string;
  jti?: string;
  /** Grant id (own tokens issued through the authorization code flow). */
  gid?: string;
  fhirUser?: string;
  exp: number;
  iat?: number;
  aud: string | string[];
  sub?: string;
  /** True for tokens of our own authorization server (the client registry applies). */
  own: boolean;
}

export async function signAccessToken(
  keys: KeyRing,
  c: {
    issuer: string;
    audience: string;
    clientId: string;
    scope: string;
    patient?: string;
    now: Date;
    /** User tokens: sub is the user, plus the grant and fhirUser. */
    user?: { sub: string; gid: string; fhirUser: string };
  },
): Promise<{ token: string; claims: AccessTokenClaims }> {
  const key = await keys.signingKey();
  const iat = Math.floor(c.now.getTime() / 1000);
  const claims: AccessTokenClaims = {
    iss: c.issuer,
    aud: c.audience,
    sub: c.user?.sub ?? c.clientId,
    client_id: c.clientId,
    scope: c.scope,
    ...(c.patient ? { patient: c.patient } : {}),
    ...(c.user ? { gid: c.user.gid, fhirUser: c.user.fhirUser } : {}),
    jti: randomUUID(),
    iat,
    exp: iat + ACCESS_TOKEN_LIFETIME_SEC,
  };
  const token = jwt.sign(claims, key.privateKey, { algorithm: key.alg, keyid: key.kid, header: { alg: key.alg, typ: 'at+jwt' } });
  return { token, claims };
}

function scopesOf(p: JwtPayload): string[] {
  const raw: unknown = p.scope ?? p.scp;
  if (typeof raw === 'string') return raw.split(/\s+/).filter(Boolean);
  if (Array.isArray(raw)) return raw.filter((s): s is string => typeof s === 'string');
  return [];
}

/**
 * Verifies bearer tokens from our authorization server (our key ring, RS384 only) and from the
 * configured external issuers (their JWKS, asymmetric algorithms only). The issuer claim only
 * chooses where the key comes from; the signature, issuer, audience, exp and nbf are then all
 * checked against that choice.
 */
export class AccessTokenVerifier {
  private readonly externals: { cfg: ExternalIssuer; jwks: RemoteJwks }[];

  constructor(
    private readonly keys: KeyRing,
    private readonly issuer: string,
    private readonly audience: string,
    externals: ExternalIssuer[],
    private readonly now: () => Date,
  ) {
    this.externals = externals.map((cfg) => ({ cfg, jwks: new RemoteJwks(cfg.jwksUri, { now: () => now().getTime() }) }));
  }

  /** Throws JwtError with a reason safe to return to the caller. */
  async verify(token: string): Promise<VerifiedToken> {
    const { header, payload } = decodeJwt(token);
    if (typeof payload.iss !== 'string') throw new JwtError('token has no issuer');
    const now = this.now();
    if (payload.iss === this.issuer) {
      if (!header.kid) throw new JwtError('token header has no kid');
      const key = await this.keys.verificationKey(header.kid);
      if (!key) throw new JwtError(`unknown signing key "${header.kid}"`);
      const claims = verifyJwt(token, key.publicKey, header.alg, {
        algorithms: [key.alg],
        issuer: this.issuer,
        audience: this.audience,
        clockToleranceSec: CLOCK_SKEW_SEC,
        now,
      });
      return this.toVerified(claims, true);
    }
    const ext = this.externals.find((e) => e.cfg.issuer === payload.iss);
    if (!ext) throw new JwtError('token issuer is not trusted');
    const key = await ext.jwks.key(header, true);
    if (!key) throw new JwtError(`no key of issuer ${ext.cfg.issuer} matches the token's kid`);
    const claims = verifyJwt(token, key, header.alg, {
      algorithms: ASYMMETRIC_ALGS,
      issuer: ext.cfg.issuer,
      audience: ext.cfg.audience,
      clockToleranceSec: CLOCK_SKEW_SEC,
      now,
    });
    return this.toVerified(claims, false);
  }

  private toVerified(p: JwtPayload, own: boolean): VerifiedToken {
    const clientId = [p.client_id, p.azp, p.sub].find((v): v is string => typeof v === 'string' && v !== '');
    if (!clientId) throw new JwtError('token names no client (client_id, azp or sub)');
    return {
      issuer: p.iss as string,
      clientId,
      scopes: scopesOf(p),
      ...(typeof p.patient === 'string' && p.patient ? { patient: p.patient } : {}),
      ...(typeof p.jti === 'string' ? { jti: p.jti } : {}),
      ...(own && typeof p.gid === 'string' ? { gid: p.gid } : {}),
      ...(typeof p.fhirUser === 'string' ? { fhirUser: p.fhirUser } : {}),
      exp: p.exp as number,
      ...(typeof p.iat === 'number' ? { iat: p.iat } : {}),
      aud: p.aud as string | string[],
      ...(typeof p.sub === 'string' ? { sub: p.sub } : {}),
      own,
    };
  }
}
