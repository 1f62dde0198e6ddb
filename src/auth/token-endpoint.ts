import type { Db } from 'mongodb';
import { isFhirError } from '../errors';
import { ACCESS_TOKEN_LIFETIME_SEC, AccessTokenVerifier, signAccessToken } from './access-tokens';
import { ClientAuthenticator, type ClientAuthParams } from './client-auth';
import { CodeGrants, type CodeGrantDeps, type UserTokenResponse } from './code-grant';
import { GrantStore } from './grants';
import type { AuthUrls } from './discovery';
import { JwtError } from './jwt';
import type { KeyRing } from './keys';
import { OAuthError } from './oauth-error';
import { ScopePolicy } from './policy';
import { RateLimiter } from './rate-limit';
import { grantScopes, parseResourceScopes, ScopeSyntaxError, splitScopes } from './scopes';
import type { CriteriaPort } from './types';

/** A form-encoded request, as the router hands it over: repeated parameters arrive as arrays. */
export type FormParams = Record<string, string | string[] | undefined>;

export interface TokenResponse {
  access_token: string;
  token_type: 'bearer';
  expires_in: number;
  scope: string;
  patient?: string;
}

export type IntrospectionResponse =
  | { active: false }
  | {
      active: true;
      scope: string;
      client_id: string;
      sub?: string;
      exp: number;
      iat?: number;
      iss: string;
      aud: string | string[];
      token_type: 'Bearer' | 'refresh_token';
      patient?: string;
      fhirUser?: string;
    };

/** RFC 6749 3.2: request parameters must not be repeated. */
function single(params: FormParams, name: string): string | undefined {
  const v = params[name];
  if (Array.isArray(v)) throw new OAuthError(400, 'invalid_request', `parameter ${name} given more than once`);
  return v;
}

function clientParams(params: FormParams): ClientAuthParams {
  return {
    client_id: single(params, 'client_id'),
    client_assertion_type: single(params, 'client_assertion_type'),
    client_assertion: single(params, 'client_assertion'),
    client_secret: single(params, 'client_secret'),
  };
}

/** The OAuth endpoints of the built-in authorization server, free of HTTP framework types. */
export class TokenEndpoint {
  readonly clientAuth: ClientAuthenticator;
  readonly grants: GrantStore;
  readonly codeGrants: CodeGrants;
  /** 10 requests at once, then one every 5 s, per client and instance. */
  private readonly limiter: RateLimiter;

  constructor(
    db: Db,
    private readonly urls: AuthUrls,
    private readonly keys: KeyRing,
    private readonly verifier: AccessTokenVerifier,
    private readonly criteria: CriteriaPort,
    private readonly now: () => Date,
    rate: { capacity: number; perSec: number } = { capacity: 10, perSec: 0.2 },
    user: Pick<CodeGrantDeps, 'users' | 'styleUrl' | 'onRevoke' | 'onRevokeJti'> & { isActive: (v: Awaited<ReturnType<AccessTokenVerifier['verify']>>) => Promise<boolean> },
  ) {
    this.clientAuth = new ClientAuthenticator(db, [urls.token, urls.introspect, urls.revoke], now);
    this.grants = new GrantStore(db);
    this.isActive = user.isActive;
    this.codeGrants = new CodeGrants({
      urls,
      keys,
      grants: this.grants,
      clientAuth: this.clientAuth,
      verifier,
      now,
      users: user.users,
      styleUrl: user.styleUrl,
      onRevoke: user.onRevoke,
      onRevokeJti: user.onRevokeJti,
    });
    this.limiter = new RateLimiter(rate.capacity, rate.perSec, () => now().getTime());
  }

  private readonly isActive: (v: Awaited<ReturnType<AccessTokenVerifier['verify']>>) => Promise<boolean>;

  async token(params: FormParams, authorization: string | undefined, ip: string | undefined): Promise<TokenResponse | UserTokenResponse> {
    const cp = clientParams(params);
    const grantType = single(params, 'grant_type');
    // Codes and refresh tokens are unguessable and one public app serves many people: only
    // client_credentials (and malformed requests) count against the per-client limit.
    if (grantType !== 'authorization_code' && grantType !== 'refresh_token') {
      const claimed = this.clientAuth.claimedClientId(cp, authorization);
      const wait = this.limiter.take(claimed ? `client:${claimed}` : `ip:${ip ?? '?'}`);
      if (wait > 0) throw new OAuthError(429, 'invalid_request', `too many token requests; retry in ${wait} s`, false, wait);
    }
    if (!grantType) throw new OAuthError(400, 'invalid_request', 'grant_type is required');
    if (grantType === 'authorization_code' || grantType === 'refresh_token') {
      const client = await this.codeGrants.client(cp, authorization);
      if (grantType === 'refresh_token') {
        return this.codeGrants.refresh(client, { refresh_token: single(params, 'refresh_token'), scope: single(params, 'scope') });
      }
      return this.codeGrants.exchangeCode(client, {
        code: single(params, 'code'),
        redirect_uri: single(params, 'redirect_uri'),
        code_verifier: single(params, 'code_verifier'),
      });
    }
    if (grantType !== 'client_credentials') {
      throw new OAuthError(400, 'unsupported_grant_type', `grant_type ${grantType} is not supported (client_credentials, authorization_code, refresh_token)`);
    }
    const { client } = await this.clientAuth.authenticate(cp, authorization);

    const requested = splitScopes(single(params, 'scope'));
    if (requested.length === 0) throw new OAuthError(400, 'invalid_scope', 'scope is required');
    let grant;
    try {
      parseResourceScopes(requested);
      grant = grantScopes(requested, splitScopes(client.scope), client.patient !== undefined);
    } catch (e) {
      if (e instanceof ScopeSyntaxError) throw new OAuthError(400, 'invalid_scope', e.message);
      throw e;
    }
    if (grant.granted.length === 0) {
      throw new OAuthError(400, 'invalid_scope', `none of the requested scopes is allowed for client ${client._id}: ${grant.refused.join(' ')}`);
    }
    try {
      // Restrictions are compiled by the search engine now, so a bad one is the client's error here, not a 500 later.
      new ScopePolicy(parseResourceScopes(grant.granted), client.patient, this.criteria, { strict: true });
    } catch (e) {
      if (isFhirError(e)) throw new OAuthError(400, 'invalid_scope', `scope restriction refused: ${e.message}`);
      throw e;
    }
    const scope = grant.granted.join(' ');
    const { token } = await signAccessToken(this.keys, {
      issuer: this.urls.issuer,
      audience: this.urls.fhirBase,
      clientId: client._id,
      scope,
      patient: client.patient,
      now: this.now(),
    });
    return {
      access_token: token,
      token_type: 'bearer',
      expires_in: ACCESS_TOKEN_LIFETIME_SEC,
      scope,
      ...(client.patient ? { patient: client.patient } : {}),
    };
  }

  /** RFC 7009: always 200 for an authenticated client, whether or not the token meant anything. */
  async revoke(params: FormParams, authorization: string | undefined): Promise<void> {
    const client = await this.codeGrants.client(clientParams(params), authorization);
    const token = single(params, 'token');
    if (!token) throw new OAuthError(400, 'invalid_request', 'token is required');
    await this.codeGrants.revokeToken(client, token);
  }

  /**
   * RFC 7662. The caller authenticates as a registered client (as at the token endpoint) or
   * presents a valid bearer token of its own; any token we would not accept is `active: false`.
   */
  async introspect(params: FormParams, authorization: string | undefined): Promise<IntrospectionResponse> {
    if (/^Bearer\s/i.test(authorization ?? '')) {
      try {
        await this.verifier.verify((authorization as string).replace(/^Bearer\s+/i, '').trim());
      } catch (e) {
        if (e instanceof JwtError) throw new OAuthError(401, 'invalid_client', `caller's bearer token refused: ${e.message}`);
        throw e;
      }
    } else {
      await this.clientAuth.authenticate(clientParams(params), authorization);
    }
    const token = single(params, 'token');
    if (!token) throw new OAuthError(400, 'invalid_request', 'token is required');
    if (!token.includes('.')) return ((await this.codeGrants.introspectRefresh(token)) ?? { active: false }) as IntrospectionResponse;
    try {
      const v = await this.verifier.verify(token);
      if (v.own && (await this.clientAuth.clients.get(v.clientId))?.disabled !== false) return { active: false };
      if (!(await this.isActive(v))) return { active: false };
      return {
        active: true,
        scope: v.scopes.join(' '),
        client_id: v.clientId,
        ...(v.sub ? { sub: v.sub } : {}),
        exp: v.exp,
        ...(v.iat !== undefined ? { iat: v.iat } : {}),
        iss: v.issuer,
        aud: v.aud,
        token_type: 'Bearer',
        ...(v.patient ? { patient: v.patient } : {}),
        ...(v.fhirUser ? { fhirUser: v.fhirUser } : {}),
      };
    } catch (e) {
      if (e instanceof JwtError) return { active: false };
      throw e;
    }
  }
}
