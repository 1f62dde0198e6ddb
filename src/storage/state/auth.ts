import type { JsonWebKey } from 'node:crypto';
import type { Collection, Db } from 'mongodb';
import { insertUnique, upsertById } from '../upsert';

/**
 * The authorization server's own state behind the storage wall: its collections, the stored
 * shapes and the reads and writes src/auth needs, as named functions. Everything rests on `_id`
 * point reads and unique `_id` inserts (which both engines make atomic); single use (codes,
 * refresh tokens, assertion ids) is a unique insert, never a compare-and-set.
 */
export const AUTH_COLLECTIONS = {
  clients: 'auth_clients',
  users: 'auth_users',
  keys: 'auth_keys',
  jti: 'auth_jti',
  requests: 'auth_requests',
  codes: 'auth_codes',
  grants: 'auth_grants',
  refresh: 'auth_refresh',
  launches: 'auth_launches',
  revoked: 'auth_revoked',
  /** One marker per spent code or refresh token: its unique insert is the single use. */
  spent: 'auth_spent',
} as const;

// ------------------------------------------------------------------ stored shapes

/** A registered client. Secrets only as scrypt hashes. */
export interface ClientDoc {
  _id: string;
  name: string;
  /** Space-separated scopes the client may be granted. */
  scope: string;
  jwks?: { keys: JsonWebKey[] };
  jwks_uri?: string;
  secretHash?: string;
  /** Fixed patient id (device or app bound to one patient). */
  patient?: string;
  /** Exact redirect URIs for the authorization code flow (SMART App Launch). */
  redirectUris?: string[];
  /** A public app (no credential): it proves itself with PKCE alone. */
  public?: boolean;
  /** Writes per second this client may make (back-pressure answers 429 beyond); unset: no limit. */
  rateLimit?: number;
  disabled: boolean;
  source: 'file' | 'admin';
  createdAt: Date;
  updatedAt: Date;
}

/** A person who signs in at the authorization endpoint. Passwords only as scrypt hashes. */
export interface UserDoc {
  /** The username typed on the login page. */
  _id: string;
  /** `Patient/<id>` or `Practitioner/<id>`: who the person is in FHIR terms. */
  fhirUser: string;
  passwordHash: string;
  /** Display name for the pages (not PHI beyond what the person typed in). */
  name?: string;
  disabled: boolean;
  source: 'file' | 'admin';
  createdAt: Date;
  updatedAt: Date;
}

export interface SigningKeyDoc {
  _id: string; // kid
  alg: 'RS384';
  /** PKCS#8 PEM. */
  privatePem: string;
  publicJwk: JsonWebKey;
  createdAt: Date;
}

export interface UsedJtiDoc {
  _id: string;
  /** When the assertion expires; after that the entry is useless (the assertion is refused anyway). */
  expiresAt: Date;
}

/** Who is signing in, to what, and how far they got. */
export interface AuthRequestDoc {
  _id: string;
  clientId: string;
  redirectUri: string;
  state?: string;
  /** Requested scopes (as sent). */
  scopes: string[];
  codeChallenge: string;
  nonce?: string;
  /** EHR launch context, resolved from the `launch` parameter. */
  launch?: { patient: string; encounter?: string };
  /** Binds the request to the browser that started it (hash of the cookie value). */
  browserHash: string;
  csrf: string;
  /** Set after a successful login. */
  user?: string;
  fhirUser?: string;
  /** Patient context chosen (Practitioner) or implied (Patient user, EHR launch). */
  patient?: string;
  expiresAt: Date;
}

export interface CodeDoc {
  _id: string; // sha256(code)
  grantId: string;
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  /** Informational: the spent marker decides. */
  used: boolean;
  expiresAt: Date;
}

/** One consent: every token issued from one code belongs to its grant and dies with it. */
export interface GrantDoc {
  _id: string;
  clientId: string;
  user: string;
  fhirUser: string;
  scope: string;
  patient?: string;
  encounter?: string;
  needPatientBanner: boolean;
  nonce?: string;
  revoked: boolean;
  revokedAt?: Date;
  /** Refresh tokens (if any) stop working at this time (offline: long; online: short). */
  refreshUntil?: Date;
  createdAt: Date;
}

export interface RefreshDoc {
  _id: string; // sha256(token)
  grantId: string;
  /** Informational (introspection): the spent marker decides. */
  used: boolean;
  expiresAt: Date;
}

export interface LaunchDoc {
  _id: string; // sha256(launch)
  patient: string;
  encounter?: string;
  clientId: string;
  expiresAt: Date;
}

export interface RevokedDoc {
  _id: string; // jti
  exp: Date;
}

interface SpentDoc {
  _id: string; // "code:<id>" or "refresh:<id>"
  expiresAt: Date;
}

// ------------------------------------------------------------------ handles

/** Registrations that come from a file: the file's fields, what it leaves out, and first-insert defaults. */
export interface FileRegistration<T> {
  set: Partial<T>;
  unset?: readonly string[];
  onInsert: Partial<T>;
}

/** Clients by id. */
export class ClientRows {
  private readonly col: Collection<ClientDoc>;
  constructor(db: Db) {
    this.col = db.collection<ClientDoc>(AUTH_COLLECTIONS.clients);
  }
  async ensureIndexes(): Promise<void> {
    await this.col.createIndex({ disabled: 1 });
  }
  async get(id: string): Promise<ClientDoc | undefined> {
    return (await this.col.findOne({ _id: id })) ?? undefined;
  }
  list(): Promise<ClientDoc[]> {
    return this.col.find({}).sort({ _id: 1 }).toArray();
  }
  /** False when the id is taken. */
  insert(doc: ClientDoc): Promise<boolean> {
    return insertUnique(this.col, doc);
  }
  /** Creates or updates a file client (safe when instances start together). */
  saveFromFile(id: string, reg: FileRegistration<ClientDoc>): Promise<void> {
    return upsertById(this.col, id, reg);
  }
  async setDisabled(id: string, disabled: boolean, now: Date): Promise<boolean> {
    return (await this.col.updateOne({ _id: id }, { $set: { disabled, updatedAt: now } })).matchedCount === 1;
  }
  async disabledIds(): Promise<Set<string>> {
    const docs = await this.col.find({ disabled: true }, { projection: { _id: 1 } }).toArray();
    return new Set(docs.map((d) => d._id));
  }
  /** The clients with a write rate limit, by id. */
  async rateLimits(): Promise<Map<string, number>> {
    const docs = await this.col.find({ rateLimit: { $gt: 0 } }, { projection: { rateLimit: 1 } }).toArray();
    return new Map(docs.map((d) => [d._id, d.rateLimit!]));
  }
}

/** Users by username. */
export class UserRows {
  private readonly col: Collection<UserDoc>;
  constructor(db: Db) {
    this.col = db.collection<UserDoc>(AUTH_COLLECTIONS.users);
  }
  async ensureIndexes(): Promise<void> {
    await this.col.createIndex({ disabled: 1 });
  }
  async get(username: string): Promise<UserDoc | undefined> {
    return (await this.col.findOne({ _id: username })) ?? undefined;
  }
  list(): Promise<UserDoc[]> {
    return this.col.find({}).sort({ _id: 1 }).toArray();
  }
  /** False when the username is taken. */
  insert(doc: UserDoc): Promise<boolean> {
    return insertUnique(this.col, doc);
  }
  saveFromFile(username: string, reg: FileRegistration<UserDoc>): Promise<void> {
    return upsertById(this.col, username, reg);
  }
  /** Sets fields of an existing user; false when there is none. */
  async change(username: string, set: Partial<Pick<UserDoc, 'disabled' | 'passwordHash' | 'updatedAt'>>): Promise<boolean> {
    return (await this.col.updateOne({ _id: username }, { $set: set })).matchedCount === 1;
  }
  async disabledIds(): Promise<Set<string>> {
    const docs = await this.col.find({ disabled: true }, { projection: { _id: 1 } }).toArray();
    return new Set(docs.map((d) => d._id));
  }
}

/** The signing keys. */
export class KeyRows {
  private readonly col: Collection<SigningKeyDoc>;
  constructor(db: Db) {
    this.col = db.collection<SigningKeyDoc>(AUTH_COLLECTIONS.keys);
  }
  /** Newest first. */
  all(): Promise<SigningKeyDoc[]> {
    return this.col.find({}).sort({ createdAt: -1, _id: -1 }).toArray();
  }
  /** False when the kid is taken (of instances creating the first key at once, one wins). */
  insert(doc: SigningKeyDoc): Promise<boolean> {
    return insertUnique(this.col, doc);
  }
  count(): Promise<number> {
    return this.col.countDocuments({});
  }
  async remove(kid: string): Promise<boolean> {
    return (await this.col.deleteOne({ _id: kid })).deletedCount === 1;
  }
}

/** Client assertion ids seen, until they expire. */
export class JtiRows {
  private readonly col: Collection<UsedJtiDoc>;
  constructor(db: Db) {
    this.col = db.collection<UsedJtiDoc>(AUTH_COLLECTIONS.jti);
  }
  /** MongoDB drops expired entries through a TTL index; FerretDB has none (see `sweep`). */
  async ensureIndexes(): Promise<void> {
    try {
      await this.col.createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0, name: 'ttl' });
    } catch {
      await this.col.createIndex({ expiresAt: 1 }, { name: 'expiresAt' });
    }
  }
  /** False when the id was used before (a replay), also when two instances see it at once. */
  use(id: string, expiresAt: Date): Promise<boolean> {
    return insertUnique(this.col, { _id: id, expiresAt });
  }
  async sweep(before: Date): Promise<void> {
    await this.col.deleteMany({ expiresAt: { $lt: before } });
  }
}

/** The authorization code flow: requests, launches, codes, grants, refresh tokens, revoked token ids. */
export class FlowRows {
  private readonly requests: Collection<AuthRequestDoc>;
  private readonly codes: Collection<CodeDoc>;
  private readonly grants: Collection<GrantDoc>;
  private readonly refresh: Collection<RefreshDoc>;
  private readonly launches: Collection<LaunchDoc>;
  private readonly revoked: Collection<RevokedDoc>;
  private readonly spent: Collection<SpentDoc>;

  constructor(db: Db) {
    this.requests = db.collection(AUTH_COLLECTIONS.requests);
    this.codes = db.collection(AUTH_COLLECTIONS.codes);
    this.grants = db.collection(AUTH_COLLECTIONS.grants);
    this.refresh = db.collection(AUTH_COLLECTIONS.refresh);
    this.launches = db.collection(AUTH_COLLECTIONS.launches);
    this.revoked = db.collection(AUTH_COLLECTIONS.revoked);
    this.spent = db.collection(AUTH_COLLECTIONS.spent);
  }

  async ensureIndexes(): Promise<void> {
    await this.refresh.createIndex({ grantId: 1 });
    await this.codes.createIndex({ grantId: 1 });
    await this.grants.createIndex({ revokedAt: 1 });
  }

  async addRequest(doc: AuthRequestDoc): Promise<void> {
    await this.requests.insertOne(doc);
  }
  async request(id: string): Promise<AuthRequestDoc | undefined> {
    return (await this.requests.findOne({ _id: id })) ?? undefined;
  }
  async updateRequest(id: string, set: Partial<Pick<AuthRequestDoc, 'user' | 'fhirUser' | 'patient'>>): Promise<void> {
    await this.requests.updateOne({ _id: id }, { $set: set });
  }
  async dropRequest(id: string): Promise<void> {
    await this.requests.deleteOne({ _id: id });
  }

  async addLaunch(doc: LaunchDoc): Promise<void> {
    await this.launches.insertOne(doc);
  }
  async launch(id: string): Promise<LaunchDoc | undefined> {
    return (await this.launches.findOne({ _id: id })) ?? undefined;
  }

  async addGrant(doc: GrantDoc): Promise<void> {
    await this.grants.insertOne(doc);
  }
  async grant(id: string): Promise<GrantDoc | undefined> {
    return (await this.grants.findOne({ _id: id })) ?? undefined;
  }
  async setRefreshUntil(grantId: string, refreshUntil: Date): Promise<void> {
    await this.grants.updateOne({ _id: grantId }, { $set: { refreshUntil } });
  }
  /** Idempotent: a grant revoked already keeps its first revocation time. */
  async revokeGrant(grantId: string, now: Date): Promise<void> {
    await this.grants.updateOne({ _id: grantId, revoked: false }, { $set: { revoked: true, revokedAt: now } });
  }
  async grantsRevokedSince(since: Date): Promise<Set<string>> {
    const docs = await this.grants.find({ revoked: true, revokedAt: { $gt: since } }, { projection: { _id: 1 } }).toArray();
    return new Set(docs.map((d) => d._id));
  }

  async addCode(doc: CodeDoc): Promise<void> {
    await this.codes.insertOne(doc);
  }
  /** Takes a code exactly once (a unique insert); the second taker learns that it was used before. */
  takeCode(id: string): Promise<{ doc?: CodeDoc; reused: boolean }> {
    return this.take(this.codes, 'code', id);
  }

  async addRefresh(doc: RefreshDoc): Promise<void> {
    await this.refresh.insertOne(doc);
  }
  async refreshToken(id: string): Promise<RefreshDoc | undefined> {
    return (await this.refresh.findOne({ _id: id })) ?? undefined;
  }
  takeRefresh(id: string): Promise<{ doc?: RefreshDoc; reused: boolean }> {
    return this.take(this.refresh, 'refresh', id);
  }

  /** Revoking twice (or on two instances at once) is the same as once. */
  async revokeJti(jti: string, exp: Date): Promise<void> {
    await insertUnique(this.revoked, { _id: jti, exp });
  }
  async isJtiRevoked(jti: string): Promise<boolean> {
    return (await this.revoked.findOne({ _id: jti })) !== null;
  }
  async revokedJtis(now: Date): Promise<Set<string>> {
    const docs = await this.revoked.find({ exp: { $gt: now } }, { projection: { _id: 1 } }).toArray();
    return new Set(docs.map((d) => d._id));
  }

  /** Expired state goes (FerretDB has no TTL indexes). */
  async sweep(now: Date): Promise<void> {
    const dayAgo = new Date(now.getTime() - 24 * 3600_000);
    await Promise.all([
      this.requests.deleteMany({ expiresAt: { $lte: now } }),
      this.codes.deleteMany({ expiresAt: { $lte: dayAgo } }),
      this.refresh.deleteMany({ expiresAt: { $lte: now } }),
      this.launches.deleteMany({ expiresAt: { $lte: now } }),
      this.revoked.deleteMany({ exp: { $lte: now } }),
      // A marker outlives what it spent by a day, so a replay within that day is still seen as one.
      this.spent.deleteMany({ expiresAt: { $lte: dayAgo } }),
      // A grant outlives its last refresh token, or (without one) its codes' reuse window.
      this.grants.deleteMany({ refreshUntil: { $lte: new Date(now.getTime() - 3600_000) } }),
      this.grants.deleteMany({ refreshUntil: { $exists: false }, createdAt: { $lte: new Date(now.getTime() - 2 * 24 * 3600_000) } }),
    ]);
  }

  /** Single use by a unique insert of the spent marker (FerretDB's findOneAndUpdate is not atomic). */
  private async take<T extends { _id: string; used: boolean; expiresAt: Date }>(
    col: Collection<T>,
    kind: 'code' | 'refresh',
    id: string,
  ): Promise<{ doc?: T; reused: boolean }> {
    const doc = ((await col.findOne({ _id: id } as never)) as T | null) ?? undefined;
    if (!doc) return { reused: false };
    // Spent before markers existed (or by the winner of a race that already flagged it).
    if (doc.used) return { doc, reused: true };
    if (!(await insertUnique(this.spent, { _id: `${kind}:${id}`, expiresAt: doc.expiresAt }))) return { doc, reused: true };
    await col.updateOne({ _id: id } as never, { $set: { used: true } } as never);
    return { doc: { ...doc, used: true }, reused: false };
  }
}

/** All of auth's state on one database. */
export interface AuthState {
  clients: ClientRows;
  users: UserRows;
  keys: KeyRows;
  jtis: JtiRows;
  flow: FlowRows;
}

export function authState(db: Db): AuthState {
  return { clients: new ClientRows(db), users: new UserRows(db), keys: new KeyRows(db), jtis: new JtiRows(db), flow: new FlowRows(db) };
}
