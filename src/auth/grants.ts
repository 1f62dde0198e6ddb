import { createHash, randomBytes } from 'node:crypto';
import type { Collection, Db } from 'mongodb';

/**
 * The state of the authorization code flow, all in MongoDB so that any instance can carry on a
 * sign-in another one started: pending authorization requests, codes, grants (one per consent,
 * the family of every token issued from it), refresh tokens, EHR launch contexts and revoked
 * access token ids. Codes, refresh tokens and launch values are stored only as SHA-256 hashes.
 */

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

export const AUTH_REQUEST_TTL_MS = 10 * 60_000;
/** SMART: codes live briefly; we allow 60 s. */
export const CODE_TTL_MS = 60_000;
export const LAUNCH_TTL_MS = 5 * 60_000;
export const OFFLINE_REFRESH_TTL_MS = 90 * 24 * 3600_000;
/** online_access: the refresh token lives as long as a working session might (8 hours). */
export const ONLINE_REFRESH_TTL_MS = 8 * 3600_000;

export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

export function sha256(s: string): string {
  return createHash('sha256').update(s).digest('base64url');
}

export class GrantStore {
  readonly requests: Collection<AuthRequestDoc>;
  readonly codes: Collection<CodeDoc>;
  readonly grants: Collection<GrantDoc>;
  readonly refresh: Collection<RefreshDoc>;
  readonly launches: Collection<LaunchDoc>;
  readonly revoked: Collection<RevokedDoc>;

  constructor(db: Db) {
    this.requests = db.collection('auth_requests');
    this.codes = db.collection('auth_codes');
    this.grants = db.collection('auth_grants');
    this.refresh = db.collection('auth_refresh');
    this.launches = db.collection('auth_launches');
    this.revoked = db.collection('auth_revoked');
  }

  async init(): Promise<void> {
    await this.refresh.createIndex({ grantId: 1 });
    await this.codes.createIndex({ grantId: 1 });
    await this.grants.createIndex({ revokedAt: 1 });
  }

  /** Takes a code exactly once; the second taker learns that it was used before. */
  async takeCode(code: string): Promise<{ doc?: CodeDoc; reused: boolean }> {
    const id = sha256(code);
    const doc = await this.codes.findOneAndUpdate({ _id: id, used: false }, { $set: { used: true } });
    if (doc) return { doc, reused: false };
    const seen = await this.codes.findOne({ _id: id });
    return seen ? { doc: seen, reused: true } : { reused: false };
  }

  async newRefreshToken(grantId: string, expiresAt: Date): Promise<string> {
    const token = randomToken();
    await this.refresh.insertOne({ _id: sha256(token), grantId, used: false, expiresAt });
    return token;
  }

  /** Rotation: the token is spent on use; a spent one shown again gives away its family. */
  async takeRefreshToken(token: string): Promise<{ doc?: RefreshDoc; reused: boolean }> {
    const id = sha256(token);
    const doc = await this.refresh.findOneAndUpdate({ _id: id, used: false }, { $set: { used: true } });
    if (doc) return { doc, reused: false };
    const seen = await this.refresh.findOne({ _id: id });
    return seen ? { doc: seen, reused: true } : { reused: false };
  }

  async revokeGrant(grantId: string, now: Date): Promise<void> {
    await this.grants.updateOne({ _id: grantId, revoked: false }, { $set: { revoked: true, revokedAt: now } });
  }

  async revokeJti(jti: string, exp: Date): Promise<void> {
    await this.revoked.updateOne({ _id: jti }, { $setOnInsert: { exp } }, { upsert: true });
  }

  /** Grants revoked recently enough that access tokens issued from them may still be alive. */
  async recentlyRevokedGrantIds(now: Date, tokenLifetimeMs: number): Promise<Set<string>> {
    const since = new Date(now.getTime() - tokenLifetimeMs - 60_000);
    const docs = await this.grants.find({ revoked: true, revokedAt: { $gt: since } }, { projection: { _id: 1 } }).toArray();
    return new Set(docs.map((d) => d._id));
  }

  async revokedJtis(now: Date): Promise<Set<string>> {
    const docs = await this.revoked.find({ exp: { $gt: now } }, { projection: { _id: 1 } }).toArray();
    return new Set(docs.map((d) => d._id));
  }

  private lastSweep = -Infinity;

  /** Expired state goes, about once a minute, driven by sign-ins (FerretDB has no TTL indexes). */
  async maybeSweep(now: Date): Promise<void> {
    if (now.getTime() - this.lastSweep < 60_000) return;
    this.lastSweep = now.getTime();
    await this.sweep(now);
  }

  async sweep(now: Date): Promise<void> {
    await Promise.all([
      this.requests.deleteMany({ expiresAt: { $lte: now } }),
      this.codes.deleteMany({ expiresAt: { $lte: new Date(now.getTime() - 24 * 3600_000) } }),
      this.refresh.deleteMany({ expiresAt: { $lte: now } }),
      this.launches.deleteMany({ expiresAt: { $lte: now } }),
      this.revoked.deleteMany({ exp: { $lte: now } }),
      // A grant outlives its last refresh token, or (without one) its codes' reuse window.
      this.grants.deleteMany({ refreshUntil: { $lte: new Date(now.getTime() - 3600_000) } }),
      this.grants.deleteMany({ refreshUntil: { $exists: false }, createdAt: { $lte: new Date(now.getTime() - 2 * 24 * 3600_000) } }),
    ]);
  }
}
