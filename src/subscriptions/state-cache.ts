import type { StateDoc, SubscriptionState } from '../storage/state/subscriptions';

/**
 * Subscription states in memory while this instance holds the outbox lease. Only the outbox
 * consumer writes `sub_state` (state-sync.ts), so while one lease epoch lasts no other instance
 * changes it: a state this process wrote or read during the epoch is the stored one. Entries are
 * trusted only while `leaseEpoch()` still names the epoch they were taken in; otherwise every
 * read goes to the database, as before. (The same rule as alerting's memory, src/alerting/README.md.)
 */
export class StateCache {
  private docs = new Map<string, StateDoc | null>();
  private epoch?: number;
  /** Bumped by every remember/forget: a read that overlapped one is not remembered (it may be older). */
  private writes = 0;

  constructor(
    private readonly state: SubscriptionState,
    private readonly leaseEpoch: () => number | undefined,
  ) {}

  /** The current epoch if held, with the cache emptied when it changed. */
  private held(): number | undefined {
    const e = this.leaseEpoch();
    if (e !== this.epoch) {
      this.docs.clear();
      this.epoch = e;
    }
    return e;
  }

  /** After the consumer stored `doc` (or learnt a Subscription is gone: null). */
  remember(id: string, doc: StateDoc | null): void {
    this.writes++;
    if (this.held() !== undefined) this.docs.set(id, doc);
  }

  forget(id: string): void {
    this.writes++;
    this.docs.delete(id);
  }

  async get(id: string): Promise<StateDoc | null> {
    return (await this.getMany([id])).get(id) ?? null;
  }

  /** States by id: from memory while the epoch lasts, else by point reads (remembered when held throughout). */
  async getMany(ids: readonly string[]): Promise<Map<string, StateDoc | null>> {
    const epoch = this.held();
    const writes = this.writes;
    const out = new Map<string, StateDoc | null>();
    const missing: string[] = [];
    for (const id of ids) {
      const hit = epoch !== undefined ? this.docs.get(id) : undefined;
      // A copy: delivery runs change their state's status as they go.
      if (hit !== undefined) out.set(id, hit && { ...hit });
      else missing.push(id);
    }
    const read = await Promise.all(missing.map((id) => this.state.state(id)));
    // Remembered only when the epoch held from before the reads to after them.
    const keep = epoch !== undefined && this.held() === epoch && this.writes === writes;
    missing.forEach((id, i) => {
      out.set(id, read[i]);
      if (keep) this.docs.set(id, read[i] && { ...read[i]! });
    });
    return out;
  }
}
