import type { Db } from 'mongodb';
import { ClientStore, type ClientDoc } from './clients';
import { RemoteJwks, selectKey } from './jwks';
import { CLIENT_ASSERTION_ALGS, JwtError, assertAlgAllowed, decodeJwt, verifyJwt } from './jwt';
import { OAuthError } from './oauth-error';
import { JtiReplayGuard } from './replay';
import { verifySecret } from './secrets';

export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** SMART Backend Services: an assertion may live at most five minutes. */
const MAX_ASSERTION_LIFETIME_SEC = 300;
const CLOCK_SKEW_SEC = 30;

/** Form parameters relevant to client authentication. */
export interface ClientAuthParams {
  client_id?: string;
  client_assertion_type?: string;
  client_assertion?: string;
  client_secret?: string;
}

export interface AuthenticatedClient {
  client: ClientDoc;
  method: 'private_key_jwt' | 'client_secret_basic';
}

/** Parses `Authorization: Basic` per RFC 6749 2.3.1 (id and secret form-encoded, then base64). */
export function parseBasic(header: string | undefined): { id: string; secret: string } | undefined {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (!m) return undefined;
  const text = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon < 0) return undefined;
  try {
    const dec = (s: string) => decodeURIComponent(s.replace(/\+/g, ' '));
    return { id: dec(text.slice(0, colon)), secret: dec(text.slice(colon + 1)) };
  } catch {
    return undefined;
  }
}

/**
 * Authenticates a client at the token (and introspection) endpoint: `private_key_jwt` assertions
 * per SMART Backend Services, or `client_secret_basic`. Every failure is `invalid_client` (401)
 * with a reason that helps an honest client and tells an attacker nothing about other clients.
 */
export class ClientAuthenticator {
  readonly clients: ClientStore;
  readonly replay: JtiReplayGuard;
  private readonly remote = new Map<string, RemoteJwks>();

  constructor(
    db: Db,
    /** Accepted `aud` values of assertions; the first is the token endpoint URL. */
    private readonly audiences: string[],
    private readonly now: () => Date,
  ) {
    this.clients = new ClientStore(db);
    this.replay = new JtiReplayGuard(db, now);
  }

  /** Which client the request claims to be, before any verification (for rate limiting). */
  claimedClientId(params: ClientAuthParams, authorization: string | undefined): string | undefined {
    const basic = parseBasic(authorization);
    if (basic) return basic.id;
    if (params.client_assertion) {
      try {
        const iss = decodeJwt(params.client_assertion).payload.iss;
        if (typeof iss === 'string') return iss;
      } catch {
        /* malformed: the request is refused later with a proper reason */
      }
    }
    return params.client_id;
  }

  async authenticate(params: ClientAuthParams, authorization: string | undefined): Promise<AuthenticatedClient> {
    const usesBasic = /^Basic\s/i.test(authorization ?? '');
    const usesAssertion = params.client_assertion !== undefined || params.client_assertion_type !== undefined;
    if (usesBasic && usesAssertion) {
      throw new OAuthError(400, 'invalid_request', 'use exactly one client authentication method');
    }
    if (params.client_secret !== undefined) {
      throw new OAuthError(401, 'invalid_client', 'client_secret_post is not supported; use HTTP Basic (client_secret_basic)');
    }
    if (usesBasic) return { client: await this.basic(authorization, params.client_id), method: 'client_secret_basic' };
    if (usesAssertion) return { client: await this.assertion(params), method: 'private_key_jwt' };
    throw new OAuthError(401, 'invalid_client', 'client authentication required (private_key_jwt or client_secret_basic)');
  }

  private async basic(authorization: string | undefined, clientIdParam: string | undefined): Promise<ClientDoc> {
    const creds = parseBasic(authorization);
    if (!creds) throw new OAuthError(401, 'invalid_client', 'malformed HTTP Basic credentials', true);
    if (clientIdParam !== undefined && clientIdParam !== creds.id) {
      throw new OAuthError(400, 'invalid_request', 'client_id does not match the HTTP Basic credentials');
    }
    const client = await this.clients.get(creds.id);
    // Always pay for one scrypt, so response time does not reveal which client ids exist.
    const ok = await verifySecret(creds.secret, client?.secretHash);
    if (!client || !ok) throw new OAuthError(401, 'invalid_client', 'unknown client or wrong secret', true);
    if (client.disabled) throw new OAuthError(401, 'invalid_client', 'client is disabled', true);
    return client;
  }

  private async assertion(params: ClientAuthParams): Promise<ClientDoc> {
    if (params.client_assertion_type !== JWT_BEARER_ASSERTION) {
      throw new OAuthError(401, 'invalid_client', `client_assertion_type must be ${JWT_BEARER_ASSERTION}`);
    }
    const token = params.client_assertion;
    if (!token) throw new OAuthError(401, 'invalid_client', 'client_assertion is missing');
    try {
      const { header, payload } = decodeJwt(token);
      assertAlgAllowed(header.alg, CLIENT_ASSERTION_ALGS);
      if (!header.kid) throw new JwtError('the assertion header must name the signing key (kid)');
      const iss = payload.iss;
      if (typeof iss !== 'string' || payload.sub !== iss) throw new JwtError('iss and sub must both be the client_id');
      if (params.client_id !== undefined && params.client_id !== iss) throw new JwtError('client_id does not match the assertion');
      const client = await this.clients.get(iss);
      if (!client || (!client.jwks && !client.jwks_uri)) throw new JwtError('unknown client or client without registered keys');
      if (client.disabled) throw new JwtError('client is disabled');
      const key = client.jwks
        ? selectKey(client.jwks, header, false)
        : await this.remoteJwks(client.jwks_uri as string).key(header, false);
      if (!key) throw new JwtError(`no registered key with kid "${header.kid}" for alg ${header.alg}`);
      const now = this.now();
      const claims = verifyJwt(token, key, header.alg, {
        algorithms: CLIENT_ASSERTION_ALGS,
        issuer: iss,
        clockToleranceSec: CLOCK_SKEW_SEC,
        now,
      });
      const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
      if (!aud.some((a) => typeof a === 'string' && this.audiences.includes(a))) {
        throw new JwtError(`wrong audience: aud must be ${this.audiences[0]}`);
      }
      const nowSec = Math.floor(now.getTime() / 1000);
      if ((claims.exp as number) > nowSec + MAX_ASSERTION_LIFETIME_SEC + CLOCK_SKEW_SEC) {
        throw new JwtError('exp must be at most five minutes in the future');
      }
      if (typeof claims.iat === 'number' && claims.iat > nowSec + CLOCK_SKEW_SEC) throw new JwtError('iat is in the future');
      if (typeof claims.jti !== 'string' || !claims.jti || claims.jti.length > 256) throw new JwtError('jti is missing');
      // Recorded only after the signature checked out, so nobody can burn another client's jtis.
      const fresh = await this.replay.use(client._id, claims.jti, new Date(((claims.exp as number) + CLOCK_SKEW_SEC) * 1000));
      if (!fresh) throw new JwtError('jti has been used before (replayed assertion)');
      return client;
    } catch (e) {
      if (e instanceof JwtError) throw new OAuthError(401, 'invalid_client', `client assertion refused: ${e.message}`);
      throw e;
    }
  }

  private remoteJwks(uri: string): RemoteJwks {
    let r = this.remote.get(uri);
    if (!r) {
      r = new RemoteJwks(uri, { now: () => this.now().getTime() });
      this.remote.set(uri, r);
    }
    return r;
  }
}
