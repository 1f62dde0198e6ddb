import type { Resource } from 'fhir/r4';
import type { Collection, Filter } from 'mongodb';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { ResourceStore } from './store';
import type { HistoryDoc, WriteMethod } from './types';

/** One committed version, as post-commit consumers (subscriptions) see it. */
export interface CommittedEvent {
  historyId: string;
  type: string;
  id: string;
  vid: number;
  ts: Date;
  method: WriteMethod;
  resource?: Resource;
  previous(): Promise<Resource | undefined>;
}

export type CommitConsumer = (events: CommittedEvent[]) => Promise<void>;

interface Lease {
  _id: string;
  owner: string;
  until: Date;
}

const LEASE_MS = 15_000;
const BATCH = 200;

/**
 * The outbox: history documents carry `pending` from their commit until post-commit work is
 * done. One instance at a time (a lease in MongoDB) takes pending versions in commit order,
 * makes sure the current document reflects them (repairing a write interrupted by a crash),
 * hands them to the consumers, then clears the flag. Nothing lives only in memory.
 */
export class Outbox {
  private readonly leases: Collection<Lease>;
  private readonly owner = randomUUID();
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private again = false;
  private stopped = true;
  private readonly consumers: CommitConsumer[] = [];

  constructor(
    private readonly store: ResourceStore,
    private readonly logger: Logger,
    private readonly pollMs = 250,
  ) {
    this.leases = store.deps.db.collection<Lease>('leases');
  }

  addConsumer(c: CommitConsumer): void {
    this.consumers.push(c);
  }

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    await this.leases.deleteOne({ _id: 'outbox', owner: this.owner }).catch(() => undefined);
  }

  /** A commit happened: process soon rather than at the next poll. */
  nudge(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.drain()
        .catch((e: unknown) => this.logger.error({ err: e }, 'outbox processing failed; will retry'))
        .finally(() => {
          this.running = undefined;
          const soon = this.again;
          this.again = false;
          this.schedule(soon ? 0 : this.pollMs);
        });
    }, ms);
    this.timer.unref?.();
  }

  private async holdLease(): Promise<boolean> {
    const now = new Date();
    const until = new Date(now.getTime() + LEASE_MS);
    try {
      const r = await this.leases.updateOne(
        { _id: 'outbox', $or: [{ owner: this.owner }, { until: { $lt: now } }] },
        { $set: { owner: this.owner, until } },
        { upsert: true },
      );
      return r.matchedCount + r.upsertedCount > 0;
    } catch (e) {
      if ((e as { code?: number }).code === 11000) return false; // another instance holds it
      throw e;
    }
  }

  /** Processes pending versions until none are left (or the lease is lost). */
  async drain(): Promise<void> {
    while (!this.stopped || this.draining) {
      if (!(await this.holdLease())) return;
      const n = await this.processBatch();
      if (n < BATCH) return;
    }
  }

  /** Set by drainNow so a stopped outbox can still be flushed explicitly (tests, shutdown). */
  private draining = false;

  async drainNow(): Promise<void> {
    await this.running;
    this.draining = true;
    try {
      await this.drain();
    } finally {
      this.draining = false;
    }
  }

  private async processBatch(): Promise<number> {
    const batch = await this.store.history
      .find({ pending: true, txp: { $ne: true } } as Filter<HistoryDoc>)
      .sort({ ts: 1, _id: 1 })
      .limit(BATCH)
      .toArray();
    if (batch.length === 0) return 0;
    await this.repairCurrent(batch);
    const events = batch.map((h) => this.eventOf(h));
    for (const c of this.consumers) await c(events);
    await this.store.history.updateMany({ _id: { $in: batch.map((h) => h._id) } }, { $unset: { pending: '' } });
    return batch.length;
  }

  /** Applies versions whose writer died between the commit point and the current update. */
  private async repairCurrent(batch: HistoryDoc[]): Promise<void> {
    const byType = new Map<string, HistoryDoc[]>();
    for (const h of batch) byType.set(h.type, [...(byType.get(h.type) ?? []), h]);
    for (const [type, hs] of byType) {
      const cur = await this.store
        .current(type)
        .find({ _id: { $in: hs.map((h) => h.id) } }, { projection: { vid: 1 } })
        .toArray();
      const vids = new Map(cur.map((c) => [c._id, c.vid]));
      for (const h of hs) {
        if ((vids.get(h.id) ?? 0) >= h.vid) continue;
        this.logger.warn({ resource: `${h.type}/${h.id}`, vid: h.vid }, 'repairing a write interrupted before its current version was stored');
        await this.store.applyFromHistory(h.type, h.id);
        vids.set(h.id, h.vid);
      }
    }
  }

  private eventOf(h: HistoryDoc): CommittedEvent {
    const store = this.store;
    return {
      historyId: h._id,
      type: h.type,
      id: h.id,
      vid: h.vid,
      ts: h.ts,
      method: h.method,
      resource: h.res,
      async previous() {
        if (h.vid <= 1) return undefined;
        const p = await store.history.findOne({ _id: `${h.type}/${h.id}/${h.vid - 1}` });
        return p?.res;
      },
    };
  }
}
