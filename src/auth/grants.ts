import { createHash, randomBytes } from 'node:crypto';
import type { Db } from 'mongodb';
import { FlowRows, type CodeDoc, type RefreshDoc } from '../storage/state/auth';

/**
 * The state of the authorization code flow, all in MongoDB so that any instance can carry on a
 * sign-in another one started: pending authorization requests, codes, grants (one per consent,
 * the family of every token issued from it), refresh tokens, EHR launch contexts and revoked
 * access token ids. Codes, refresh tokens and launch values are stored only as SHA-256 hashes.
 */

export type { AuthRequestDoc, CodeDoc, GrantDoc, LaunchDoc, RefreshDoc, RevokedDoc } from '../storage/state/auth';

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

/** The flow's single-use tokens by hash, revocations, and the sweep of what expired. */
export class GrantStore {
  readonly rows: FlowRows;

  constructor(db: Db) {
    this.rows = new FlowRows(db);
  }

  init(): Promise<void> {
    return this.rows.ensureIndexes();
  }

  /** Takes a code exactly once; the second taker learns that it was used before. */
  takeCode(code: string): Promise<{ doc?: CodeDoc; reused: boolean }> {
    return this.rows.takeCode(sha256(code));
  }

  async newRefreshToken(grantId: string, expiresAt: Date): Promise<string> {
    const token = randomToken();
    await this.rows.addRefresh({ _id: sha256(token), grantId, used: false, expiresAt });
    return token;
  }

  /** Rotation: the token is spent on use; a spent one shown again gives away its family. */
  takeRefreshToken(token: string): Promise<{ doc?: RefreshDoc; reused: boolean }> {
    return this.rows.takeRefresh(sha256(token));
  }

  revokeGrant(grantId: string, now: Date): Promise<void> {
    return this.rows.revokeGrant(grantId, now);
  }

  revokeJti(jti: string, exp: Date): Promise<void> {
    return this.rows.revokeJti(jti, exp);
  }

  /** Grants revoked recently enough that access tokens issued from them may still be alive. */
  recentlyRevokedGrantIds(now: Date, tokenLifetimeMs: number): Promise<Set<string>> {
    return this.rows.grantsRevokedSince(new Date(now.getTime() - tokenLifetimeMs - 60_000));
  }

  revokedJtis(now: Date): Promise<Set<string>> {
    return this.rows.revokedJtis(now);
  }

  private lastSweep = -Infinity;

  /** Expired state goes, about once a minute, driven by sign-ins (FerretDB has no TTL indexes). */
  async maybeSweep(now: Date): Promise<void> {
    if (now.getTime() - this.lastSweep < 60_000) return;
    this.lastSweep = now.getTime();
    await this.sweep(now);
  }

  sweep(now: Date): Promise<void> {
    return this.rows.sweep(now);
  }
}
