import { createHash } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { ACCESS_TOKEN_LIFETIME_SEC, signAccessToken, type AccessTokenVerifier } from './access-tokens';
import type { ClientAuthenticator, ClientAuthParams } from './client-auth';
import type { ClientDoc } from './clients';
import type { AuthUrls } from './discovery';
import { OFFLINE_REFRESH_TTL_MS, ONLINE_REFRESH_TTL_MS, sha256, type GrantDoc, type GrantStore } from './grants';
import { JwtError } from './jwt';
import type { KeyRing } from './keys';
import { OAuthError } from './oauth-error';
import { splitScopes } from './scopes';
import type { UserStore } from './users';

const VERIFIER_RE = /^[A-Za-z0-9\-._~]{43,128}$/;
const ID_TOKEN_LIFETIME_SEC = 300;

export interface UserTokenResponse {
  access_token: string;
  token_type: 'bearer';
  expires_in: number;
  scope: string;
  refresh_token?: string;
  id_token?: string;
  patient?: string;
  encounter?: string;
  need_patient_banner: boolean;
  smart_style_url: string;
}

/** What is needed to answer the grant types of SMART App Launch. */
export interface CodeGrantDeps {
  urls: AuthUrls;
  keys: KeyRing;
  grants: GrantStore;
  users: UserStore;
  clientAuth: ClientAuthenticator;
  verifier: AccessTokenVerifier;
  styleUrl: string;
  now: () => Date;
  /** Called when a grant is revoked here, so this instance stops its tokens at once. */
  onRevoke: (grantId: string) => void;
  onRevokeJti: (jti: string) => void;
}

/**
 * authorization_code and refresh_token grants, revocation (RFC 7009) and refresh-token
 * introspection. A grant is one consent: reusing its code or a spent refresh token revokes it,
 * and with it every token it issued.
 */
export class CodeGrants {
  constructor(private readonly d: CodeGrantDeps) {}

  /** Public apps name themselves with client_id; confidential ones must authenticate. */
  async client(cp: ClientAuthParams, authorization: string | undefined): Promise<ClientDoc> {
    const authenticates = /^Basic\s/i.test(authorization ?? '') || cp.client_assertion !== undefined || cp.client_assertion_type !== undefined;
    if (authenticates || cp.client_secret !== undefined) return (await this.d.clientAuth.authenticate(cp, authorization)).client;
    if (!cp.client_id) throw new OAuthError(401, 'invalid_client', 'client_id is required (or client authentication)');
    const c = await this.d.clientAuth.clients.get(cp.client_id);
    if (!c || c.disabled) throw new OAuthError(401, 'invalid_client', 'unknown or disabled client');
    if (!c.public) throw new OAuthError(401, 'invalid_client', 'this client must authenticate (client_secret_basic or private_key_jwt)');
    return c;
  }

  async exchangeCode(client: ClientDoc, p: { code?: string; redirect_uri?: string; code_verifier?: string }): Promise<UserTokenResponse> {
    if (!p.code) throw new OAuthError(400, 'invalid_request', 'code is required');
    if (!p.redirect_uri) throw new OAuthError(400, 'invalid_request', 'redirect_uri is required');
    if (!p.code_verifier) throw new OAuthError(400, 'invalid_grant', 'code_verifier is required (PKCE)');
    const { doc, reused } = await this.d.grants.takeCode(p.code);
    if (reused && doc) {
      await this.revoke(doc.grantId);
      throw new OAuthError(400, 'invalid_grant', 'the code was already used; the tokens issued from it are revoked');
    }
    if (!doc) throw new OAuthError(400, 'invalid_grant', 'unknown code');
    if (doc.expiresAt <= this.d.now()) throw new OAuthError(400, 'invalid_grant', 'the code has expired');
    if (doc.clientId !== client._id) throw new OAuthError(400, 'invalid_grant', 'the code was issued to another client');
    if (doc.redirectUri !== p.redirect_uri) throw new OAuthError(400, 'invalid_grant', 'redirect_uri does not match the authorization request');
    const challenge = createHash('sha256').update(p.code_verifier).digest('base64url');
    if (!VERIFIER_RE.test(p.code_verifier) || challenge !== doc.codeChallenge) {
      throw new OAuthError(400, 'invalid_grant', 'code_verifier does not match the code_challenge');
    }
    const grant = await this.liveGrant(doc.grantId, client);
    const scopes = splitScopes(grant.scope);
    const refreshTtl = scopes.includes('offline_access') ? OFFLINE_REFRESH_TTL_MS : scopes.includes('online_access') ? ONLINE_REFRESH_TTL_MS : 0;
    if (refreshTtl) {
      const refreshUntil = new Date(this.d.now().getTime() + refreshTtl);
      await this.d.grants.rows.setRefreshUntil(grant._id, refreshUntil);
      grant.refreshUntil = refreshUntil;
    }
    return this.issue(grant, scopes, true);
  }

  async refresh(client: ClientDoc, p: { refresh_token?: string; scope?: string }): Promise<UserTokenResponse> {
    if (!p.refresh_token) throw new OAuthError(400, 'invalid_request', 'refresh_token is required');
    const { doc, reused } = await this.d.grants.takeRefreshToken(p.refresh_token);
    if (reused && doc) {
      await this.revoke(doc.grantId);
      throw new OAuthError(400, 'invalid_grant', 'the refresh token was already used; its whole family is revoked');
    }
    if (!doc) throw new OAuthError(400, 'invalid_grant', 'unknown refresh token');
    if (doc.expiresAt <= this.d.now()) throw new OAuthError(400, 'invalid_grant', 'the refresh token has expired');
    const grant = await this.liveGrant(doc.grantId, client);
    let scopes = splitScopes(grant.scope);
    if (p.scope !== undefined) {
      const asked = splitScopes(p.scope);
      const extra = asked.filter((s) => !scopes.includes(s));
      if (extra.length) throw new OAuthError(400, 'invalid_scope', `a refresh cannot widen the grant: ${extra.join(' ')}`);
      scopes = asked;
    }
    return this.issue(grant, scopes, false);
  }

  /** RFC 7009: a refresh token or an access token; answers nothing about tokens of other clients. */
  async revokeToken(client: ClientDoc, token: string): Promise<void> {
    const rt = await this.d.grants.rows.refreshToken(sha256(token));
    if (rt) {
      const grant = await this.d.grants.rows.grant(rt.grantId);
      if (grant?.clientId === client._id) await this.revoke(grant._id);
      return;
    }
    try {
      const v = await this.d.verifier.verify(token);
      if (!v.own || v.clientId !== client._id) return;
      if (v.gid) await this.revoke(v.gid);
      else if (v.jti) {
        await this.d.grants.revokeJti(v.jti, new Date(v.exp * 1000));
        this.d.onRevokeJti(v.jti);
      }
    } catch (e) {
      if (!(e instanceof JwtError)) throw e; // an invalid token is already as good as revoked
    }
  }

  /** Introspection of an opaque refresh token; undefined when the token is not one of ours. */
  async introspectRefresh(token: string): Promise<Record<string, unknown> | undefined> {
    const rt = await this.d.grants.rows.refreshToken(sha256(token));
    if (!rt) return undefined;
    const grant = await this.d.grants.rows.grant(rt.grantId);
    if (!grant || rt.used || rt.expiresAt <= this.d.now() || !(await this.usable(grant))) return { active: false };
    return {
      active: true,
      scope: grant.scope,
      client_id: grant.clientId,
      sub: grant.user,
      fhirUser: this.fhirUserUrl(grant),
      exp: Math.floor(rt.expiresAt.getTime() / 1000),
      iss: this.d.urls.issuer,
      token_type: 'refresh_token',
      ...(grant.patient ? { patient: grant.patient } : {}),
    };
  }

  /** Whether a grant may still be used: not revoked, its client and user enabled. */
  async usable(grant: GrantDoc): Promise<boolean> {
    if (grant.revoked) return false;
    const [client, user] = await Promise.all([this.d.clientAuth.clients.get(grant.clientId), this.d.users.get(grant.user)]);
    return Boolean(client && !client.disabled && user && !user.disabled);
  }

  private async liveGrant(grantId: string, client: ClientDoc): Promise<GrantDoc> {
    const grant = await this.d.grants.rows.grant(grantId);
    if (!grant || grant.clientId !== client._id) throw new OAuthError(400, 'invalid_grant', 'unknown grant');
    if (!(await this.usable(grant))) throw new OAuthError(400, 'invalid_grant', 'the grant was revoked, or its user or client disabled');
    return grant;
  }

  private async revoke(grantId: string): Promise<void> {
    await this.d.grants.revokeGrant(grantId, this.d.now());
    this.d.onRevoke(grantId);
  }

  private fhirUserUrl(grant: GrantDoc): string {
    return `${this.d.urls.fhirBase}/${grant.fhirUser}`;
  }

  private async issue(grant: GrantDoc, scopes: string[], first: boolean): Promise<UserTokenResponse> {
    const now = this.d.now();
    const scope = scopes.join(' ');
    const { token } = await signAccessToken(this.d.keys, {
      issuer: this.d.urls.issuer,
      audience: this.d.urls.fhirBase,
      clientId: grant.clientId,
      scope,
      patient: grant.patient,
      now,
      user: { sub: grant.user, gid: grant._id, fhirUser: this.fhirUserUrl(grant) },
    });
    const out: UserTokenResponse = {
      access_token: token,
      token_type: 'bearer',
      expires_in: ACCESS_TOKEN_LIFETIME_SEC,
      scope,
      ...(grant.patient ? { patient: grant.patient } : {}),
      ...(grant.encounter ? { encounter: grant.encounter } : {}),
      need_patient_banner: grant.needPatientBanner,
      smart_style_url: this.d.styleUrl,
    };
    if (grant.refreshUntil && grant.refreshUntil > now) {
      out.refresh_token = await this.d.grants.newRefreshToken(grant._id, grant.refreshUntil);
    }
    if (first && scopes.includes('openid') && scopes.includes('fhirUser')) out.id_token = await this.idToken(grant, now);
    return out;
  }

  /** OpenID Connect id_token, RS256 (the algorithm every OIDC client must accept). */
  private async idToken(grant: GrantDoc, now: Date): Promise<string> {
    const key = await this.d.keys.signingKey();
    const iat = Math.floor(now.getTime() / 1000);
    const claims = {
      iss: this.d.urls.issuer,
      sub: grant.user,
      aud: grant.clientId,
      iat,
      exp: iat + ID_TOKEN_LIFETIME_SEC,
      fhirUser: this.fhirUserUrl(grant),
      ...(grant.nonce ? { nonce: grant.nonce } : {}),
    };
    return jwt.sign(claims, key.privateKey, { algorithm: 'RS256', keyid: key.kid });
  }
}
