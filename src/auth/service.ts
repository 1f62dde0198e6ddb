import express from 'express';
import type { CapabilityStatementRestSecurity } from 'fhir/r4';
import type { Db } from 'mongodb';
import type pino from 'pino';
import type { Config } from '../config';
import { Errors } from '../errors';
import { ACCESS_TOKEN_LIFETIME_SEC, AccessTokenVerifier, type VerifiedToken } from './access-tokens';
import { AuthorizationFlow, DEFAULT_LOGIN_RATES, type LoginRates, type PatientDirectory } from './authorize';
import { launchRouter } from './launch';
import { pageRouter } from './page-routes';
import { readClientsFile } from './clients';
import { authUrls, capabilitySecurity, smartConfiguration, type AuthUrls } from './discovery';
import { JwtError } from './jwt';
import { KeyRing } from './keys';
import { OAuthError } from './oauth-error';
import { ScopePolicy } from './policy';
import { parseScope, type ResourceScope } from './scopes';
import { TokenEndpoint, type FormParams } from './token-endpoint';
import type { CriteriaPort, Principal } from './types';
import { readUsersFile, UserStore } from './users';

export interface AuthDeps {
  db: Db;
  config: Config;
  logger: pino.Logger;
  criteria: CriteriaPort;
  /** Injected clock, for tests. */
  now?: () => Date;
  /** Token endpoint rate limit per client (default 10 at once, then 1 every 5 s). */
  tokenRate?: { capacity: number; perSec: number };
  /** Patients for the sign-in pages (picker, labels). */
  patients?: PatientDirectory;
  /** Failed-login limits (tests lower them). */
  loginRates?: LoginRates;
}

const NO_PATIENTS: PatientDirectory = { find: async () => [], get: async () => undefined };

/** Body-parser failures (bad encoding, too many parameters) are the client's mistake. */
function isClientError(err: unknown): boolean {
  const status = (err as { status?: unknown }).status;
  return typeof status === 'number' && status >= 400 && status < 500;
}

/** Malformed scopes in a token we otherwise trust grant nothing rather than failing the request. */
function parseTokenScopes(scopes: string[]): ResourceScope[] {
  const out: ResourceScope[] = [];
  for (const s of scopes) {
    try {
      const p = parseScope(s);
      if (p) out.push(p);
    } catch {
      /* dropped: less access, never more */
    }
  }
  return out;
}

/**
 * The SMART on FHIR authorization of the server: the built-in authorization server (token,
 * JWKS, introspection, discovery) and the verification of bearer tokens into Principals.
 */
export class AuthService {
  readonly urls: AuthUrls;
  private readonly verifier: AccessTokenVerifier;
  private readonly endpoint: TokenEndpoint;
  private readonly policies = new Map<string, ScopePolicy>();
  private disabled: { ids: Set<string>; at: number } = { ids: new Set(), at: 0 };
  private disabledUsers: { ids: Set<string>; at: number } = { ids: new Set(), at: -Infinity };
  /** Revoked grants and access token ids; reloaded every 5 s, updated at once by local revocations. */
  private revoked: { grants: Set<string>; jtis: Set<string>; at: number } = { grants: new Set(), jtis: new Set(), at: -Infinity };
  readonly users: UserStore;
  readonly flow: AuthorizationFlow;

  private constructor(
    private readonly deps: AuthDeps,
    private readonly keys: KeyRing,
    private readonly now: () => Date,
  ) {
    this.urls = authUrls(deps.config.baseUrl);
    this.verifier = new AccessTokenVerifier(keys, this.urls.issuer, this.urls.fhirBase, deps.config.externalIssuers, now);
    this.users = new UserStore(deps.db);
    this.endpoint = new TokenEndpoint(deps.db, this.urls, keys, this.verifier, deps.criteria, now, deps.tokenRate, {
      users: this.users,
      styleUrl: deps.config.smartStyleUrl ?? this.urls.style,
      onRevoke: (gid) => this.revokedHere('grants', gid),
      onRevokeJti: (jti) => this.revokedHere('jtis', jti),
      isActive: (v) => this.isActive(v),
    });
    this.flow = new AuthorizationFlow(
      this.urls,
      this.endpoint.clientAuth.clients,
      this.users,
      this.endpoint.grants,
      deps.patients ?? NO_PATIENTS,
      now,
      this.urls.fhirBase.startsWith('https:'),
      deps.loginRates ?? DEFAULT_LOGIN_RATES,
    );
  }

  static async create(deps: AuthDeps): Promise<AuthService> {
    const now = deps.now ?? (() => new Date());
    const keys = new KeyRing(deps.db, now);
    await keys.init();
    const svc = new AuthService(deps, keys, now);
    await svc.endpoint.clientAuth.replay.init();
    await svc.endpoint.clientAuth.clients.ensureIndexes();
    if (deps.config.smartClientsFile) {
      const regs = readClientsFile(deps.config.smartClientsFile);
      await svc.endpoint.clientAuth.clients.loadFileClients(regs, now());
      const plain = regs.filter((r) => r.client_secret !== undefined).map((r) => r.client_id);
      if (plain.length) {
        deps.logger.warn({ clients: plain }, 'SMART_CLIENTS_FILE holds plain client secrets; prefer client_secret_hash (admin secret-hash)');
      }
      deps.logger.info({ count: regs.length }, 'SMART clients loaded from file');
    }
    await svc.endpoint.grants.init();
    await svc.users.ensureIndexes();
    if (deps.config.smartUsersFile) {
      const users = readUsersFile(deps.config.smartUsersFile);
      await svc.users.loadFileUsers(users, now());
      if (users.some((u) => u.password !== undefined)) {
        deps.logger.warn('SMART_USERS_FILE holds plain passwords; prefer password_hash (admin secret-hash)');
      }
      deps.logger.info({ count: users.length }, 'SMART users loaded from file');
    }
    return svc;
  }

  router(): express.Router {
    const r = express.Router();
    const form = express.urlencoded({ extended: false, limit: '64kb', parameterLimit: 50 });
    const noStore = (res: express.Response) => res.set({ 'Cache-Control': 'no-store', Pragma: 'no-cache' });
    const requireForm = (req: express.Request) => {
      if (!req.is('application/x-www-form-urlencoded')) {
        throw new OAuthError(400, 'invalid_request', 'the request body must be application/x-www-form-urlencoded');
      }
    };

    r.get(this.urls.smartConfigPath, (_req, res) => {
      res.type('application/json').json(smartConfiguration(this.urls));
    });
    r.get('/auth/jwks', (_req, res, next) => {
      this.keys
        .jwks()
        .then((jwks) => res.set('Cache-Control', 'public, max-age=300').type('application/json').json(jwks))
        .catch(next);
    });
    r.post('/auth/token', form, (req, res, next) => {
      noStore(res);
      Promise.resolve()
        .then(() => requireForm(req))
        .then(() => this.endpoint.token(req.body as FormParams, req.headers.authorization, req.ip))
        .then((body) => res.status(200).json(body))
        .catch(next);
    });
    r.post('/auth/revoke', form, (req, res, next) => {
      noStore(res);
      Promise.resolve()
        .then(() => requireForm(req))
        .then(() => this.endpoint.revoke(req.body as FormParams, req.headers.authorization))
        .then(() => res.status(200).end())
        .catch(next);
    });
    r.use(pageRouter(this.flow, this.urls));
    r.use(launchRouter({ urls: this.urls, grants: this.endpoint.grants, patients: this.deps.patients ?? NO_PATIENTS, authenticate: (h) => this.authenticate(h), now: this.now }));
    r.post('/auth/introspect', form, (req, res, next) => {
      noStore(res);
      Promise.resolve()
        .then(() => requireForm(req))
        .then(() => this.endpoint.introspect(req.body as FormParams, req.headers.authorization))
        .then((body) => res.status(200).json(body))
        .catch(next);
    });
    // OAuth endpoints answer OAuth errors, not OperationOutcomes.
    r.use(['/auth/token', '/auth/introspect', '/auth/revoke'], (err: unknown, _req: express.Request, res: express.Response, next: express.NextFunction) => {
      if (res.headersSent) return next(err);
      noStore(res);
      let e: OAuthError;
      if (err instanceof OAuthError) e = err;
      else if ((err as { type?: string }).type === 'entity.too.large') e = new OAuthError(400, 'invalid_request', 'request body too large');
      else if (isClientError(err)) e = new OAuthError(400, 'invalid_request', 'malformed request body');
      else {
        this.deps.logger.error({ err }, 'token endpoint failure');
        res.status(500).json({ error: 'server_error', error_description: 'internal error' });
        return;
      }
      if (e.status === 401 && e.basicChallenge) res.set('WWW-Authenticate', 'Basic realm="vigil"');
      if (e.retryAfterSec) res.set('Retry-After', String(e.retryAfterSec));
      if (e.status !== 400) this.deps.logger.info({ error: e.error, reason: e.description }, 'token request refused');
      res.status(e.status).json(e.body());
    });
    return r;
  }

  async authenticate(authorizationHeader: string | undefined): Promise<Principal> {
    if (!authorizationHeader) {
      throw Errors.unauthorized('Authentication required: send an access token as "Authorization: Bearer <token>"', 'MSG_AUTH_REQUIRED', true);
    }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorizationHeader);
    if (!m) throw Errors.unauthorized('The Authorization header must be "Bearer <access token>"', 'MSG_AUTH_MALFORMED');
    let v;
    try {
      v = await this.verifier.verify(m[1]);
    } catch (e) {
      if (e instanceof JwtError) throw Errors.unauthorized(`Invalid access token: ${e.message}`, 'MSG_AUTH_INVALID_TOKEN');
      throw e;
    }
    if (v.own && (await this.disabledClients()).has(v.clientId)) {
      throw Errors.unauthorized('Invalid access token: the client has been disabled', 'MSG_AUTH_INVALID_TOKEN');
    }
    if (v.own) await this.assertNotRevoked(v);
    return {
      clientId: v.clientId,
      ...(v.gid && v.sub ? { user: v.sub } : {}),
      ...(v.fhirUser ? { fhirUser: v.fhirUser } : {}),
      scopes: v.scopes,
      ...(v.patient ? { patient: v.patient } : {}),
      policy: this.policyFor(v.scopes, v.patient),
      issuer: v.issuer,
      ...(v.jti ? { tokenId: v.jti } : {}),
      expiresAt: new Date(v.exp * 1000),
    };
  }

  /** Builds (and caches: tokens of one client repeat the same scopes) the policy of a scope set. */
  policyFor(scopes: string[], patient: string | undefined): ScopePolicy {
    const key = `${patient ?? ''}\u0000${scopes.join(' ')}`;
    let p = this.policies.get(key);
    if (!p) {
      p = new ScopePolicy(parseTokenScopes(scopes), patient, this.deps.criteria);
      if (this.policies.size >= 1000) this.policies.delete(this.policies.keys().next().value as string);
      this.policies.set(key, p);
    }
    return p;
  }

  /** Revocations made here count at once, and survive a reload that read the database just before them. */
  private readonly recentLocal: { kind: 'grants' | 'jtis'; id: string; at: number }[] = [];
  private revokedHere(kind: 'grants' | 'jtis', id: string): void {
    this.revoked[kind].add(id);
    this.recentLocal.push({ kind, id, at: this.now().getTime() });
  }

  /** Revoked grants and tokens, and tokens of disabled users, end within 5 s (30 s for users) on every instance. */
  private async assertNotRevoked(v: VerifiedToken): Promise<void> {
    const t = this.now().getTime();
    if (t - this.revoked.at > 5_000) {
      const grants = this.endpoint.grants;
      const [g, j] = await Promise.all([grants.recentlyRevokedGrantIds(this.now(), ACCESS_TOKEN_LIFETIME_SEC * 1000), grants.revokedJtis(this.now())]);
      const fresh = { grants: g, jtis: j, at: t };
      while (this.recentLocal.length && t - this.recentLocal[0].at > 60_000) this.recentLocal.shift();
      for (const r of this.recentLocal) fresh[r.kind].add(r.id);
      this.revoked = fresh;
    }
    if ((v.gid && this.revoked.grants.has(v.gid)) || (v.jti && this.revoked.jtis.has(v.jti))) {
      throw Errors.unauthorized('Invalid access token: it has been revoked', 'MSG_AUTH_INVALID_TOKEN');
    }
    if (v.gid && v.sub) {
      if (t - this.disabledUsers.at > 30_000) this.disabledUsers = { ids: await this.users.disabledIds(), at: t };
      if (this.disabledUsers.ids.has(v.sub)) throw Errors.unauthorized('Invalid access token: the user has been disabled', 'MSG_AUTH_INVALID_TOKEN');
    }
  }

  /** For introspection: the database, not the caches, decides. */
  private async isActive(v: VerifiedToken): Promise<boolean> {
    if (!v.own) return true;
    const grants = this.endpoint.grants;
    if (v.jti && (await grants.rows.isJtiRevoked(v.jti))) return false;
    if (!v.gid) return true;
    const grant = await grants.rows.grant(v.gid);
    return Boolean(grant && (await this.endpoint.codeGrants.usable(grant)));
  }

  /** Disabling a client ends its tokens within 30 s on every instance. */
  private async disabledClients(): Promise<Set<string>> {
    const t = this.now().getTime();
    if (t - this.disabled.at > 30_000) {
      this.disabled = { ids: await this.endpoint.clientAuth.clients.disabledIds(), at: t };
    }
    return this.disabled.ids;
  }

  /** The write rate (per second) a client's registration sets, if any; re-read every 30 s. */
  async clientRateLimit(clientId: string): Promise<number | undefined> {
    const t = this.now().getTime();
    if (!this.rates || t - this.rates.at > 30_000) {
      this.rates = { byId: await this.endpoint.clientAuth.clients.rateLimits(), at: t };
    }
    return this.rates.byId.get(clientId);
  }

  private rates?: { byId: Map<string, number>; at: number };

  capabilitySecurity(): CapabilityStatementRestSecurity {
    return capabilitySecurity(this.urls);
  }

  async close(): Promise<void> {
    this.policies.clear();
  }
}
