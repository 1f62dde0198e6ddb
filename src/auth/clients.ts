import type { Db } from 'mongodb';
import { AUTH_COLLECTIONS, ClientRows, type ClientDoc } from '../storage/state/auth';
import { assertFetchableUrl, isJwks, type Jwks } from './jwks';
import { publicKeyFromJwk } from './jwt';
import { parseScope, splitScopes } from './scopes';
import { hashSecret, isSecretHash } from './secrets';
import { readRegistrationFile } from './registration-file';

/** A registered client as stored (collection `auth_clients`, src/storage/state/auth.ts). */
export type { ClientDoc } from '../storage/state/auth';

/** One entry of SMART_CLIENTS_FILE, or what `admin clients add` receives. */
export interface ClientRegistration {
  client_id: string;
  name: string;
  scope: string;
  jwks?: Jwks;
  jwks_uri?: string;
  /** Plain secret (hashed before storing). Prefer client_secret_hash in files. */
  client_secret?: string;
  /** A hash produced by `admin secret-hash`, so files need not hold the secret itself. */
  client_secret_hash?: string;
  patient?: string;
  /** Where the authorization endpoint may send the browser back, compared exactly. */
  redirect_uris?: string[];
  /** "none" registers a public app (PKCE only, no credential); otherwise one credential is required. */
  token_endpoint_auth_method?: 'none';
  /** Writes per second (see ClientDoc.rateLimit). */
  rate_limit?: number;
  disabled?: boolean;
}

export const CLIENTS_COLLECTION = AUTH_COLLECTIONS.clients;

const ID_RE = /^[A-Za-z0-9._~:-]{1,128}$/;
const PATIENT_RE = /^[A-Za-z0-9\-.]{1,64}$/;

/** Checks one registration and says exactly what is wrong with it. */
export function validateRegistration(input: unknown, where: string): ClientRegistration {
  const fail = (msg: string): never => {
    throw new Error(`${where}: ${msg}`);
  };
  if (!input || typeof input !== 'object' || Array.isArray(input)) fail('a client must be a JSON object');
  const r = input as Record<string, unknown>;
  const known = [
    'client_id', 'name', 'scope', 'jwks', 'jwks_uri', 'client_secret', 'client_secret_hash', 'patient', 'rate_limit', 'disabled',
    'redirect_uris', 'token_endpoint_auth_method',
  ];
  for (const k of Object.keys(r)) if (!known.includes(k)) fail(`unknown field "${k}" (known: ${known.join(', ')})`);
  if (typeof r.client_id !== 'string' || !ID_RE.test(r.client_id)) fail('client_id must be 1-128 URL-safe characters');
  if (typeof r.name !== 'string' || !r.name.trim()) fail('name must be a non-empty string');
  if (typeof r.scope !== 'string' || !r.scope.trim()) fail('scope must be a non-empty space-separated string');
  for (const s of splitScopes(r.scope as string)) {
    try {
      parseScope(s);
    } catch (e) {
      fail((e as Error).message);
    }
  }
  const methods = ['jwks', 'jwks_uri', 'client_secret', 'client_secret_hash'].filter((k) => r[k] !== undefined);
  if (r.token_endpoint_auth_method !== undefined && r.token_endpoint_auth_method !== 'none') {
    fail('token_endpoint_auth_method may only be "none" (a public app); confidential clients are known by their credential');
  }
  if (r.token_endpoint_auth_method === 'none') {
    if (methods.length !== 0) fail('a public client (token_endpoint_auth_method "none") has no jwks, jwks_uri or secret');
    if (r.redirect_uris === undefined) fail('a public client needs redirect_uris');
    if (splitScopes(r.scope as string).some((s) => s.startsWith('system/'))) fail('a public client cannot hold system/ scopes');
  } else if (methods.length !== 1) {
    fail(`exactly one of jwks, jwks_uri, client_secret, client_secret_hash is required (got ${methods.length})`);
  }
  if (r.redirect_uris !== undefined) {
    if (!Array.isArray(r.redirect_uris) || r.redirect_uris.length === 0) fail('redirect_uris must be a non-empty array');
    for (const u of r.redirect_uris as unknown[]) {
      const why = typeof u === 'string' ? redirectUriProblem(u) : 'must be a string';
      if (why) fail(`redirect_uri ${JSON.stringify(u)}: ${why}`);
    }
  }
  if (r.jwks !== undefined) {
    if (!isJwks(r.jwks) || r.jwks.keys.length === 0) fail('jwks must be {"keys": [...]} with at least one key');
    for (const k of (r.jwks as Jwks).keys) {
      if (typeof k.kid !== 'string' || !k.kid) fail('every key in jwks needs a kid');
      try {
        publicKeyFromJwk(k);
      } catch (e) {
        fail(`key ${String(k.kid)}: ${(e as Error).message}`);
      }
    }
  }
  if (r.jwks_uri !== undefined) {
    if (typeof r.jwks_uri !== 'string') fail('jwks_uri must be a string');
    try {
      assertFetchableUrl(r.jwks_uri as string);
    } catch (e) {
      fail((e as Error).message);
    }
  }
  if (r.client_secret !== undefined && (typeof r.client_secret !== 'string' || r.client_secret.length < 16)) {
    fail('client_secret must be a string of at least 16 characters');
  }
  if (r.client_secret_hash !== undefined && (typeof r.client_secret_hash !== 'string' || !isSecretHash(r.client_secret_hash))) {
    fail('client_secret_hash must be a hash printed by `admin secret-hash`');
  }
  if (r.patient !== undefined && (typeof r.patient !== 'string' || !PATIENT_RE.test(r.patient))) fail('patient must be a FHIR id');
  if (r.disabled !== undefined && typeof r.disabled !== 'boolean') fail('disabled must be true or false');
  if (r.rate_limit !== undefined && (typeof r.rate_limit !== 'number' || !(r.rate_limit > 0) || r.rate_limit > 100_000)) {
    fail('rate_limit must be a number of writes per second between 0 and 100000');
  }
  return r as unknown as ClientRegistration;
}

/** Why a redirect URI cannot be registered: absolute, no fragment, https (plain http on loopback only). */
export function redirectUriProblem(u: string): string | undefined {
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    return 'must be an absolute URL';
  }
  if (url.hash || u.includes('#')) return 'must not have a fragment';
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) return 'must be https (plain http only on localhost)';
  return undefined;
}

/** Reads and validates SMART_CLIENTS_FILE. */
export function readClientsFile(file: string): ClientRegistration[] {
  return readRegistrationFile(file, 'SMART_CLIENTS_FILE', validateRegistration, { name: 'client_id', of: (r) => r.client_id });
}

/** Fields of a registration as stored (secret hashed), without bookkeeping. */
async function storedFields(reg: ClientRegistration): Promise<Omit<ClientDoc, '_id' | 'disabled' | 'source' | 'createdAt' | 'updatedAt'>> {
  const secretHash = reg.client_secret_hash ?? (reg.client_secret !== undefined ? await hashSecret(reg.client_secret) : undefined);
  return {
    name: reg.name,
    scope: splitScopes(reg.scope).join(' '),
    ...(reg.jwks ? { jwks: reg.jwks } : {}),
    ...(reg.jwks_uri ? { jwks_uri: reg.jwks_uri } : {}),
    ...(secretHash ? { secretHash } : {}),
    ...(reg.patient ? { patient: reg.patient } : {}),
    ...(reg.redirect_uris ? { redirectUris: [...reg.redirect_uris] } : {}),
    ...(reg.token_endpoint_auth_method === 'none' ? { public: true } : {}),
    ...(reg.rate_limit ? { rateLimit: reg.rate_limit } : {}),
  };
}

/** The clients: file clients are saved at start, admin clients added by the CLI. */
export class ClientStore {
  private readonly rows: ClientRows;

  constructor(db: Db) {
    this.rows = new ClientRows(db);
  }

  ensureIndexes(): Promise<void> {
    return this.rows.ensureIndexes();
  }

  async get(clientId: string): Promise<ClientDoc | undefined> {
    if (!ID_RE.test(clientId)) return undefined;
    return this.rows.get(clientId);
  }

  list(): Promise<ClientDoc[]> {
    return this.rows.list();
  }

  /**
   * The file is the source of truth for its clients' registration; a client disabled by the admin
   * CLI stays disabled across restarts unless the file itself says `disabled: false`.
   */
  async loadFileClients(regs: ClientRegistration[], now: Date): Promise<void> {
    for (const reg of regs) {
      const fields = await storedFields(reg);
      const unset = (['jwks', 'jwks_uri', 'secretHash', 'patient', 'redirectUris', 'public', 'rateLimit'] as const).filter((k) => !(k in fields));
      const set: Partial<ClientDoc> = { ...fields, source: 'file', updatedAt: now };
      if (reg.disabled !== undefined) set.disabled = reg.disabled;
      await this.rows.saveFromFile(reg.client_id, { set, unset, onInsert: reg.disabled === undefined ? { createdAt: now, disabled: false } : { createdAt: now } });
    }
  }

  /** Adds a client; refuses an existing id so a typo cannot overwrite another client's keys. */
  async add(reg: ClientRegistration, now: Date): Promise<ClientDoc> {
    const doc: ClientDoc = {
      _id: reg.client_id,
      ...(await storedFields(reg)),
      disabled: reg.disabled ?? false,
      source: 'admin',
      createdAt: now,
      updatedAt: now,
    };
    if (!(await this.rows.insert(doc))) throw new Error(`client ${reg.client_id} already exists`);
    return doc;
  }

  setDisabled(clientId: string, disabled: boolean, now: Date): Promise<boolean> {
    return this.rows.setDisabled(clientId, disabled, now);
  }

  disabledIds(): Promise<Set<string>> {
    return this.rows.disabledIds();
  }

  /** Write rate limits (per second) by client id. */
  rateLimits(): Promise<Map<string, number>> {
    return this.rows.rateLimits();
  }
}
