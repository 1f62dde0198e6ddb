import type { ClientStore } from './clients';
import type { AuthUrls } from './discovery';
import { AUTH_REQUEST_TTL_MS, CODE_TTL_MS, randomToken, sha256, type AuthRequestDoc, type GrantStore } from './grants';
import { consentPage, errorPage, loginPage, patientPickPage } from './pages';
import { RateLimiter } from './rate-limit';
import { grantScopes, parseScope, ScopeSyntaxError, splitScopes } from './scopes';
import { fhirUserParts, type UserStore } from './users';

/** What the sign-in pages need to know about patients (the FHIR store, seen from here). */
export interface PatientDirectory {
  find(name: string): Promise<{ id: string; label: string }[]>;
  get(id: string): Promise<{ id: string; label: string } | undefined>;
}

/** A framework-free answer: a page (with the origins its forms may lead to) or a redirect. */
export type Outcome =
  | { kind: 'page'; status: number; html: string; formTargets?: string[]; cookie?: string }
  | { kind: 'redirect'; location: string; cookie?: string };

export type Params = Record<string, string | string[] | undefined>;

export const BROWSER_COOKIE = 'vigil_auth';
const CHALLENGE_RE = /^[A-Za-z0-9_-]{43}$/;
const RID_RE = /^[A-Za-z0-9_-]{20,64}$/;

/** Failed sign-ins: 5 per account then one per minute; 20 per address then one every 10 s. */
export interface LoginRates {
  account: { capacity: number; perSec: number };
  address: { capacity: number; perSec: number };
}
export const DEFAULT_LOGIN_RATES: LoginRates = { account: { capacity: 5, perSec: 1 / 60 }, address: { capacity: 20, perSec: 0.1 } };

function one(p: Params, name: string): string | undefined {
  const v = p[name];
  return Array.isArray(v) ? undefined : v;
}

function many(p: Params, name: string): string[] {
  const v = p[name];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

function oauthRedirect(uri: string, params: Record<string, string | undefined>): Outcome {
  const u = new URL(uri);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) u.searchParams.set(k, v);
  return { kind: 'redirect', location: u.toString() };
}

/**
 * The authorization endpoint and the pages behind it: request checks, sign-in, the patient
 * picker, consent, and the code. Every step re-checks that the request is alive, belongs to
 * this browser (cookie) and carries the page's CSRF token.
 */
export class AuthorizationFlow {
  private readonly accountLimiter: RateLimiter;
  private readonly addressLimiter: RateLimiter;
  /** Sign-ins started per address (each stores a pending request): 120 at once, then 1 per second. */
  private readonly startLimiter: RateLimiter;

  constructor(
    private readonly urls: AuthUrls,
    private readonly clients: ClientStore,
    private readonly users: UserStore,
    private readonly grants: GrantStore,
    private readonly patients: PatientDirectory,
    private readonly now: () => Date,
    private readonly secureCookie: boolean,
    rates: LoginRates = DEFAULT_LOGIN_RATES,
  ) {
    this.accountLimiter = new RateLimiter(rates.account.capacity, rates.account.perSec, () => now().getTime());
    this.addressLimiter = new RateLimiter(rates.address.capacity, rates.address.perSec, () => now().getTime());
    this.startLimiter = new RateLimiter(120, 1, () => now().getTime());
  }

  /** GET /auth/authorize */
  async start(q: Params, browser: string | undefined, ip?: string): Promise<Outcome> {
    const wait = this.startLimiter.take(`ip:${ip ?? '?'}`);
    if (wait > 0) return this.fail(429, 'Too many sign-ins', `Too many sign-ins were started from your address. Try again in ${wait} seconds.`);
    for (const [k, v] of Object.entries(q)) {
      if (Array.isArray(v)) return this.fail(400, 'Invalid request', `The parameter ${k} is given more than once.`);
    }
    const clientId = one(q, 'client_id');
    const client = clientId ? await this.clients.get(clientId) : undefined;
    if (!client || client.disabled) return this.fail(400, 'Unknown app', 'This app is not registered here (or has been disabled).');
    const redirectUri = one(q, 'redirect_uri');
    if (!redirectUri || !(client.redirectUris ?? []).includes(redirectUri)) {
      return this.fail(400, 'Invalid redirect', 'The app asked to return to an address it has not registered.');
    }
    const aud = one(q, 'aud');
    if (!aud || aud.replace(/\/+$/, '') !== this.urls.fhirBase) {
      return this.fail(400, 'Wrong server', `The app asked for access to another FHIR server (aud must be ${this.urls.fhirBase}).`);
    }
    const state = one(q, 'state');
    const err = (error: string, description: string) => oauthRedirect(redirectUri, { error, error_description: description, state });
    if (one(q, 'response_type') !== 'code') return err('unsupported_response_type', 'response_type must be code');
    if (!state || state.length > 512) return err('invalid_request', 'state is required (an unguessable value of at most 512 characters)');
    if (one(q, 'code_challenge_method') !== 'S256') return err('invalid_request', 'PKCE is required with code_challenge_method=S256 (plain is not accepted)');
    const challenge = one(q, 'code_challenge') ?? '';
    if (!CHALLENGE_RE.test(challenge)) return err('invalid_request', 'code_challenge must be the base64url SHA-256 of the code_verifier (43 characters)');
    const scopes = splitScopes(one(q, 'scope'));
    if (scopes.length === 0) return err('invalid_scope', 'scope is required');
    try {
      scopes.forEach(parseScope);
    } catch (e) {
      if (e instanceof ScopeSyntaxError) return err('invalid_scope', e.message);
      throw e;
    }
    let launch: AuthRequestDoc['launch'];
    const launchValue = one(q, 'launch');
    if (launchValue !== undefined) {
      const doc = await this.grants.rows.launch(sha256(launchValue));
      if (!doc || doc.expiresAt <= this.now()) return err('invalid_request', 'the launch value is unknown or expired');
      launch = doc.encounter ? { patient: doc.patient, encounter: doc.encounter } : { patient: doc.patient };
    }
    await this.grants.maybeSweep(this.now());
    const browserValue = browser && /^[A-Za-z0-9_-]{43}$/.test(browser) ? browser : randomToken();
    const rid = randomToken(24);
    const nonce = one(q, 'nonce');
    await this.grants.rows.addRequest({
      _id: rid,
      clientId: client._id,
      redirectUri,
      ...(state !== undefined ? { state } : {}),
      scopes,
      codeChallenge: challenge,
      ...(nonce ? { nonce: nonce.slice(0, 256) } : {}),
      ...(launch ? { launch } : {}),
      browserHash: sha256(browserValue),
      csrf: randomToken(),
      expiresAt: new Date(this.now().getTime() + AUTH_REQUEST_TTL_MS),
    });
    return { kind: 'redirect', location: `/auth/login?rid=${rid}`, cookie: this.cookie(browserValue) };
  }

  /** GET /auth/login */
  async loginForm(q: Params, browser: string | undefined): Promise<Outcome> {
    const r = await this.request(one(q, 'rid'), browser);
    if (!r) return this.expired();
    return this.page(200, loginPage({ rid: r._id, csrf: r.csrf, clientName: await this.clientName(r) }), [new URL(r.redirectUri).origin]);
  }

  /** POST /auth/login: `username`, `password`. */
  async login(f: Params, browser: string | undefined, ip: string | undefined): Promise<Outcome> {
    const r = await this.request(one(f, 'rid'), browser, one(f, 'csrf'));
    if (!r) return this.expired();
    const username = (one(f, 'username') ?? '').trim();
    const password = one(f, 'password') ?? '';
    const clientName = await this.clientName(r);
    const keys = { account: `u:${username.toLowerCase()}`, address: `ip:${ip ?? '?'}` };
    const wait = Math.max(this.accountLimiter.wait(keys.account), this.addressLimiter.wait(keys.address));
    if (wait > 0) {
      const html = loginPage({ rid: r._id, csrf: r.csrf, clientName, username, error: `Too many failed sign-ins. Try again in ${wait} seconds.` });
      return this.page(429, html, [new URL(r.redirectUri).origin]);
    }
    const user = username && password ? await this.users.verify(username, password) : undefined;
    if (!user) {
      this.accountLimiter.take(keys.account);
      this.addressLimiter.take(keys.address);
      const html = loginPage({ rid: r._id, csrf: r.csrf, clientName, username, error: 'Wrong username or password.' });
      return this.page(401, html, [new URL(r.redirectUri).origin]);
    }
    const { type, id } = fhirUserParts(user.fhirUser);
    let patient: string | undefined;
    if (type === 'Patient') {
      // A patient acts only for their own record, whatever a launch says.
      if (r.launch && r.launch.patient !== id) return this.deny(r, 'access_denied', 'this launch is about another patient');
      patient = id;
    } else if (r.launch) {
      patient = r.launch.patient;
    }
    await this.grants.rows.updateRequest(r._id, { user: user._id, fhirUser: user.fhirUser, ...(patient ? { patient } : {}) });
    const pick = type === 'Practitioner' && !patient && r.scopes.includes('launch/patient');
    return { kind: 'redirect', location: `/auth/${pick ? 'patient' : 'consent'}?rid=${r._id}` };
  }

  /** GET /auth/patient: the Practitioner's patient search. */
  async patientForm(q: Params, browser: string | undefined): Promise<Outcome> {
    const r = await this.request(one(q, 'rid'), browser);
    if (!r || !r.user) return this.expired();
    const name = (one(q, 'name') ?? '').trim().slice(0, 100);
    const results = name ? await this.patients.find(name) : [];
    return this.page(200, patientPickPage({ rid: r._id, csrf: r.csrf, query: name, results, searched: name !== '' }), [new URL(r.redirectUri).origin]);
  }

  /** POST /auth/patient: `patient`. */
  async pickPatient(f: Params, browser: string | undefined): Promise<Outcome> {
    const r = await this.request(one(f, 'rid'), browser, one(f, 'csrf'));
    if (!r || !r.user || !r.fhirUser?.startsWith('Practitioner/') || r.launch) return this.expired();
    const p = await this.patients.get(one(f, 'patient') ?? '');
    if (!p) return this.fail(400, 'Unknown patient', 'That patient does not exist.');
    await this.grants.rows.updateRequest(r._id, { patient: p.id });
    return { kind: 'redirect', location: `/auth/consent?rid=${r._id}` };
  }

  /** GET /auth/consent */
  async consentForm(q: Params, browser: string | undefined): Promise<Outcome> {
    const r = await this.request(one(q, 'rid'), browser);
    if (!r || !r.user) return this.expired();
    const offered = await this.offered(r);
    if (offered.length === 0) return this.deny(r, 'invalid_scope', 'none of the requested scopes can be granted to this app and user');
    const user = await this.users.get(r.user);
    const patient = r.patient ? await this.patients.get(r.patient) : undefined;
    const html = consentPage({
      rid: r._id,
      csrf: r.csrf,
      clientName: await this.clientName(r),
      userName: user?.name ?? r.user,
      ...(patient ? { patientLabel: patient.label } : {}),
      scopes: offered,
    });
    return this.page(200, html, [new URL(r.redirectUri).origin]);
  }

  /** POST /auth/consent: one `scope` per ticked scope, `decision=allow|deny`. */
  async consent(f: Params, browser: string | undefined): Promise<Outcome> {
    const r = await this.request(one(f, 'rid'), browser, one(f, 'csrf'));
    if (!r || !r.user || !r.fhirUser) return this.expired();
    await this.grants.rows.dropRequest(r._id);
    const decision = one(f, 'decision');
    if (decision !== 'allow') return this.deny(r, 'access_denied', 'the user denied access');
    const ticked = new Set(many(f, 'scope'));
    const granted = (await this.offered(r)).filter((s) => ticked.has(s));
    if (granted.length === 0) return this.deny(r, 'access_denied', 'the user granted nothing');
    const now = this.now();
    const grantId = randomToken(16);
    await this.grants.rows.addGrant({
      _id: grantId,
      clientId: r.clientId,
      user: r.user,
      fhirUser: r.fhirUser,
      scope: granted.join(' '),
      ...(r.patient ? { patient: r.patient } : {}),
      ...(r.launch?.encounter ? { encounter: r.launch.encounter } : {}),
      // EHR launches happen inside the EHR, which shows the patient; standalone apps must.
      needPatientBanner: !r.launch,
      ...(r.nonce ? { nonce: r.nonce } : {}),
      revoked: false,
      createdAt: now,
    });
    const code = randomToken();
    await this.grants.rows.addCode({
      _id: sha256(code),
      grantId,
      clientId: r.clientId,
      redirectUri: r.redirectUri,
      codeChallenge: r.codeChallenge,
      used: false,
      expiresAt: new Date(now.getTime() + CODE_TTL_MS),
    });
    return oauthRedirect(r.redirectUri, { code, state: r.state });
  }

  /** requested ∩ allowed for the client ∩ possible for this user and context (before the ticks). */
  private async offered(r: AuthRequestDoc): Promise<string[]> {
    const client = await this.clients.get(r.clientId);
    if (!client || client.disabled) return [];
    const { granted } = grantScopes(r.scopes, splitScopes(client.scope), r.patient !== undefined);
    const isPatient = r.fhirUser?.startsWith('Patient/') ?? false;
    return granted.filter((s) => {
      if (s.startsWith('system/')) return false; // system access never comes from a person
      if (isPatient && s.startsWith('user/')) return false; // a patient's rights are patient/ scopes
      if (s === 'launch' && !r.launch) return false;
      if (s === 'launch/patient' && !r.patient) return false;
      if (s === 'launch/encounter' && !r.launch?.encounter) return false;
      return true;
    });
  }

  private async request(rid: string | undefined, browser: string | undefined, csrf?: string | null): Promise<AuthRequestDoc | undefined> {
    if (!rid || !RID_RE.test(rid) || !browser) return undefined;
    const r = await this.grants.rows.request(rid);
    if (!r || r.expiresAt <= this.now() || r.browserHash !== sha256(browser)) return undefined;
    if (csrf !== undefined && csrf !== r.csrf) return undefined;
    const client = await this.clients.get(r.clientId);
    return client && !client.disabled ? r : undefined;
  }

  private async clientName(r: AuthRequestDoc): Promise<string> {
    return (await this.clients.get(r.clientId))?.name ?? r.clientId;
  }

  private deny(r: AuthRequestDoc, error: string, description: string): Outcome {
    void this.grants.rows.dropRequest(r._id).catch(() => undefined);
    return oauthRedirect(r.redirectUri, { error, error_description: description, state: r.state });
  }

  private expired(): Outcome {
    return this.fail(400, 'Sign-in expired', 'This sign-in has expired or was started in another browser. Go back to the app and start again.');
  }

  private fail(status: number, title: string, message: string): Outcome {
    return this.page(status, errorPage(title, message));
  }

  private page(status: number, html: string, formTargets?: string[]): Outcome {
    return { kind: 'page', status, html, ...(formTargets ? { formTargets } : {}) };
  }

  private cookie(value: string): string {
    return `${BROWSER_COOKIE}=${value}; Path=/auth; HttpOnly; SameSite=Lax; Max-Age=${AUTH_REQUEST_TTL_MS / 1000}${this.secureCookie ? '; Secure' : ''}`;
  }
}

