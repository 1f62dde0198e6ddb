import type { Collection, Db } from 'mongodb';
import { insertUnique } from '../upsert';

/**
 * The authorization code flow's state behind the storage wall (split from auth.ts): requests,
 * launches, codes, grants, refresh tokens and revoked token ids. Single use of codes and refresh
 * tokens is a unique insert of a spent marker, never a compare-and-set (FerretDB's
 * findOneAndUpdate is not atomic).
 */
export const FLOW_COLLECTIONS = {
  requests: 'auth_requests',
  codes: 'auth_codes',
  grants: 'auth_grants',
  refresh: 'auth_refresh',
  launches: 'auth_launches',
  revoked: 'auth_revoked',
  /** One marker per spent code or refresh token: its unique insert is the single use. */
  spent: 'auth_spent',
} as const;

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
    this.requests = db.collection(FLOW_COLLECTIONS.requests);
    this.codes = db.collection(FLOW_COLLECTIONS.codes);
    this.grants = db.collection(FLOW_COLLECTIONS.grants);
    this.refresh = db.collection(FLOW_COLLECTIONS.refresh);
    this.launches = db.collection(FLOW_COLLECTIONS.launches);
    this.revoked = db.collection(FLOW_COLLECTIONS.revoked);
    this.spent = db.collection(FLOW_COLLECTIONS.spent);
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
