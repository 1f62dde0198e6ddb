import type { Collection, Db } from 'mongodb';

interface UsedJtiDoc {
  _id: string;
  /** When the assertion expires; after that the entry is useless (the assertion is refused anyway). */
  expiresAt: Date;
}

export const JTI_COLLECTION = 'auth_jti';

/**
 * Remembers the `jti` of every accepted client assertion until it expires, in MongoDB so that all
 * server instances agree: the unique `_id` makes a second use collide even when two instances
 * see it at the same moment. MongoDB drops expired entries through a TTL index; FerretDB has no
 * TTL indexes, so expired entries are also swept from time to time.
 */
export class JtiReplayGuard {
  private readonly col: Collection<UsedJtiDoc>;
  private lastSweep = 0;

  constructor(
    db: Db,
    private readonly now: () => Date,
    private readonly sweepEveryMs = 60_000,
  ) {
    this.col = db.collection<UsedJtiDoc>(JTI_COLLECTION);
  }

  async init(): Promise<void> {
    try {
      await this.col.createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0, name: 'ttl' });
    } catch {
      await this.col.createIndex({ expiresAt: 1 }, { name: 'expiresAt' });
    }
  }

  /** Records the jti; false when it was used before (a replay). */
  async use(clientId: string, jti: string, expiresAt: Date): Promise<boolean> {
    await this.maybeSweep();
    try {
      await this.col.insertOne({ _id: `${clientId}\u0000${jti}`, expiresAt });
      return true;
    } catch (e) {
      if ((e as { code?: number }).code === 11000) return false;
      throw e;
    }
  }

  private async maybeSweep(): Promise<void> {
    const t = this.now().getTime();
    if (t - this.lastSweep < this.sweepEveryMs) return;
    this.lastSweep = t;
    // A minute of slack so clock skew between instances never frees a jti that is still acceptable.
    await this.col.deleteMany({ expiresAt: { $lt: new Date(t - 60_000) } });
  }
}
