import type { Db } from 'mongodb';
import { AUTH_COLLECTIONS, JtiRows } from '../storage/state/auth';

export const JTI_COLLECTION = AUTH_COLLECTIONS.jti;

/**
 * Remembers the `jti` of every accepted client assertion until it expires, in the database so
 * that all server instances agree: the unique `_id` makes a second use collide even when two
 * instances see it at the same moment. MongoDB drops expired entries through a TTL index;
 * FerretDB has no TTL indexes, so expired entries are also swept from time to time.
 */
export class JtiReplayGuard {
  private readonly rows: JtiRows;
  private lastSweep = 0;

  constructor(
    db: Db,
    private readonly now: () => Date,
    private readonly sweepEveryMs = 60_000,
  ) {
    this.rows = new JtiRows(db);
  }

  init(): Promise<void> {
    return this.rows.ensureIndexes();
  }

  /** Records the jti; false when it was used before (a replay). */
  async use(clientId: string, jti: string, expiresAt: Date): Promise<boolean> {
    await this.maybeSweep();
    return this.rows.use(`${clientId}\u0000${jti}`, expiresAt);
  }

  private async maybeSweep(): Promise<void> {
    const t = this.now().getTime();
    if (t - this.lastSweep < this.sweepEveryMs) return;
    this.lastSweep = t;
    // A minute of slack so clock skew between instances never frees a jti that is still acceptable.
    await this.rows.sweep(new Date(t - 60_000));
  }
}
