import type { JsonWebKey } from 'node:crypto';
import type { Collection, Db } from 'mongodb';
import { insertUnique, upsertById } from '../upsert';
import { FLOW_COLLECTIONS, FlowRows } from './auth-flow';

export * from './auth-flow';

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
  ...FLOW_COLLECTIONS,
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
