import type { Resource } from 'fhir/r4';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { type HeldLease, LeaseChain } from './lease-chain';
import { findByIds } from './lookup';
import { OutboxJobs, isJob } from './outbox-jobs';
import type { HistoryDoc, OutboxDoc, WriteMethod } from './types';
import type { DecimalText } from '../json';
import type { Versions } from './versions';

/** An outbox intent without its history version this old belongs to a writer that died. */
export const STALE_INTENT_MS = 10_000;

/** One committed version, as post-commit consumers (subscriptions) see it. */
export interface CommittedEvent {
  historyId: string;
  type: string;
  id: string;
  vid: number;
  ts: Date;
  method: WriteMethod;
  resource?: Resource;
  /** The version's stored decimal texts and big-body key (HistoryDoc.dec, .body). */
  dec?: DecimalText[];
  body?: string;
  previous(): Promise<Resource | undefined>;
}

/**
 * What a consumer knows about the batch it is handed: `epoch` numbers the unbroken holding of the
 * outbox lease it came under (a new number each time this instance acquires the lease anew, not
 * at renewals). A consumer that keeps state in memory reloads it when the epoch changes: while one
 * epoch lasts, no other instance consumed anything.
 */
export interface BatchInfo {
  epoch: number;
}

export type CommitConsumer = (events: CommittedEvent[], batch: BatchInfo) => Promise<void>;

const LEASE_MS = 15_000;
const LEASE_NAME = 'outbox';
/** Each consumer gets a batch only with this much lease left, so it ends before anyone can take over. */
const FENCE_MS = LEASE_MS / 3;
const BATCH = 200;
/** Batches whose finishers (and intent deletes) may still run while later batches are consumed. */
const MAX_TAILS = 4;

/** A batch handed to every in-turn consumer, its finishers and intent delete still to come. */
interface Tail {
  done: Promise<void>;
}

/**
 * The outbox: every write inserts an intent (`outbox` collection, `_id` = history id) just
 * before its commit point, and the intent stays until post-commit work is done. One instance
 * at a time (the lease chain `outbox`, see lease-chain.ts) takes intents in order, makes sure the current document
 * reflects each committed version (repairing a write interrupted by a crash), hands the
 * versions to the consumers, then deletes the intents. The collection stays small, so this
 * costs no scan of history; nothing lives only in memory.
 */
export class Outbox {
  private readonly chain: LeaseChain;
  private timer?: NodeJS.Timeout;
  /** The one drain loop of this process, while it runs. */
  private running?: Promise<void>;
  /** A drain was asked for while one ran: the loop runs exactly one more pass. */
  private again = false;
  private stopped = true;
  /** drainNow callers in progress (they drain a stopped outbox too). */
  private flushing = 0;
  /** Bumped each time the lease is acquired anew (see BatchInfo). */
  private epoch = 0;
  private readonly consumers: CommitConsumer[] = [];
  /** Run after every consumer (storage's own durable entries, which no notification waits for). */
  private readonly finishers: CommitConsumer[] = [];
  /**
   * Batches past their in-turn consumers, oldest first. Finishers run one batch at a time in
   * this order, beside the next batches' consumers: a notification never waits for the previous
   * batch's search entries to be stored. Their intents stay until their finishers are done.
   */
  private tails: Tail[] = [];
  /** Intents of `tails`: the next batch skips them (they are consumed already). */
  private readonly inFlight = new Set<string>();
  private readonly failedTails = new WeakSet<Promise<void>>();
  /** Work only the lease holder may do, asked for by any process (outbox-jobs.ts). */
  readonly jobs: OutboxJobs;

  constructor(
    private readonly versions: Versions,
    private readonly logger: Logger,
    private readonly pollMs = 250,
  ) {
    // The owner names the process, so an operator (or a test) can tell who holds the lease.
    const owner = `${hostname()}:${process.pid}:${randomUUID()}`;
    this.chain = new LeaseChain(versions.cols.leases, versions.cols.leaseTops, owner, LEASE_MS);
    // A running outbox takes a job at its next pass (waiting for the drain loop instead would wait
    // for as long as writes keep coming); a stopped one (the admin CLI) drains now if it can.
    this.jobs = new OutboxJobs(versions.cols, () => (this.stopped ? this.drainNow() : Promise.resolve(this.nudge())));
  }

  private get cols() {
    return this.versions.cols;
  }

  /**
   * Registered by the modules that own post-commit work (search entries, subscriptions); they run
   * in the order registered, those added with `last` after all others.
   */
  addConsumer(c: CommitConsumer, order: 'in-turn' | 'last' = 'in-turn'): void {
    (order === 'last' ? this.finishers : this.consumers).push(c);
  }

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    await this.settleTails();
    const l = this.lease;
    this.lease = undefined;
    if (l) await this.chain.release(l).catch(() => undefined);
  }

  /** Committed versions whose post-commit work is still pending (e.g. after a crash). */
  async pendingCommitted(): Promise<HistoryDoc[]> {
    const intents = await this.cols.outbox.find({}, { projection: { _id: 1 } }).toArray();
    return this.versions.committedByIds(intents.map((i) => i._id));
  }

  /** Of these history ids, those whose intents are still there (`$in` scans, but this collection stays small). */
  async openIntents(historyIds: readonly string[]): Promise<ReadonlySet<string>> {
    if (historyIds.length === 0) return new Set();
    const found = await this.cols.outbox.find({ _id: { $in: [...historyIds] } }, { projection: { _id: 1 } }).toArray();
    return new Set(found.map((i) => i._id));
  }

  /** When the oldest pending intent was written (outbox lag, for metrics and back-pressure). */
  async oldestPendingAt(): Promise<Date | undefined> {
    const [oldest] = await this.cols.outbox.find({}, { projection: { at: 1 } }).sort({ at: 1 }).limit(1).toArray();
    return oldest?.at;
  }

  /** A commit happened: process now rather than at the next poll. */
  nudge(): void {
    if (this.stopped) return;
    void this.run();
  }

  /**
   * The one way a drain starts in this process: a drain at a time; a request while one runs
   * makes the loop run exactly one more pass when it ends (however many requests came). The
   * promise settles when the loop ends, so a caller's request has been served by then.
   */
  private run(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    if (this.timer) clearTimeout(this.timer);
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.drain().catch((e: unknown) => this.logger.error({ err: e }, 'outbox processing failed; will retry'));
        } while (this.again && (!this.stopped || this.flushing > 0));
      } finally {
        this.running = undefined;
        this.schedule(this.pollMs);
      }
    })();
    return this.running;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.run(), ms);
    this.timer.unref?.();
  }

  /** The lease epoch while this instance holds the outbox lease now (undefined otherwise). */
  heldEpoch(): number | undefined {
    const l = this.lease;
    return l && l.until - Date.now() > FENCE_MS ? this.epoch : undefined;
  }

  /** The outbox lease this instance holds, if any (renewed at half time, by the next link). */
  private lease?: HeldLease;

  private async holdLease(): Promise<boolean> {
    const l = this.lease;
    if (l && l.until - Date.now() > LEASE_MS / 2) return true;
    const renewed = l ? await this.chain.renew(l) : undefined;
    this.lease = renewed ?? (await this.chain.acquire(LEASE_NAME));
    if (this.lease && !renewed) this.epoch++;
    return this.lease !== undefined;
  }

  /**
   * Processes pending versions until none are left (or the lease is lost). A batch whose
   * consumers committed derived versions (a Flag, a NEWS2 Observation) nudged the outbox while it
   * ran: those are taken at once, in the same wake-up, not a poll later.
   */
  private async drain(): Promise<void> {
    while (!this.stopped || this.flushing > 0) {
      if (!(await this.holdLease())) return;
      this.again = false;
      const n = await this.processBatch();
      if (n < BATCH && !this.again) return;
    }
  }

  /**
   * Drains now, also when the outbox is stopped (tests, shutdown). Never beside another drain
   * of this process: during one, it waits for the extra pass that request schedules.
   */
  async drainNow(): Promise<void> {
    this.flushing++;
    try {
      // Until nothing is pending here: a tail that failed leaves its intents for another pass.
      for (let pass = 0; pass < 3; pass++) {
        await this.run();
        const failed = await this.settleTails();
        if (!failed) break;
      }
    } finally {
      this.flushing--;
    }
  }

  /** Waits for every tail; whether one failed. */
  private async settleTails(): Promise<boolean> {
    let failed = false;
    while (this.tails.length > 0) {
      const t = this.tails[0];
      await t.done.catch(() => (failed = true));
      if (this.tails[0] === t) this.tails.shift();
    }
    return failed;
  }

  /**
   * Takes the oldest intents, keeps those whose version is committed (in per-resource order:
   * a resource whose earlier version is still in flight waits), drops intents of writers
   * that died before their commit point, and hands the committed versions on.
   */
  private async processBatch(): Promise<number> {
    while (this.tails.length >= MAX_TAILS) await this.tails[0].done.catch(() => undefined);
    const skip = this.inFlight.size;
    const taken = (await this.cols.outbox.find({}).sort({ at: 1, _id: 1 }).limit(BATCH + skip).toArray()).filter((i) => !this.inFlight.has(i._id)).slice(0, BATCH);
    if (taken.length === 0) return 0;
    const jobs = taken.filter(isJob);
    const intents = taken.filter((i) => !isJob(i));
    const versions = await findByIds(this.cols.history, intents.map((i) => i._id));
    const byId = new Map(versions.map((h) => [h._id, h]));
    const now = Date.now();
    const ready: HistoryDoc[] = [];
    const abandoned: string[] = [];
    const waiting = new Set<string>();
    const uncommitted = intents.some((i) => i.tx) ? await this.versions.uncommittedTransactions() : new Set<string>();
    for (const intent of intents) {
      const h = byId.get(intent._id);
      const key = intent._id.slice(0, intent._id.lastIndexOf('/'));
      if (h && !(h.tx && uncommitted.has(h.tx)) && !waiting.has(key)) {
        ready.push(h);
      } else if (!h && now - intent.at.getTime() > STALE_INTENT_MS && !intent.tx) {
        abandoned.push(intent._id);
      } else {
        waiting.add(key);
      }
    }
    if (!(await this.fenced())) return 0;
    const info: BatchInfo = { epoch: this.epoch };
    const events = ready.map((h) => this.eventOf(h));
    if (ready.length > 0) {
      await this.repairCurrent(ready);
      for (const c of this.consumers) {
        // Checked against the database above; between consumers the lease's own time is the fence
        // (only our link can follow ours before it expires), which saves a read per consumer.
        if (!this.heldLocally()) return 0;
        await c(events, info);
      }
    }
    const done = [...ready.map((h) => h._id), ...abandoned];
    if (done.length || jobs.length) this.finish(done, events, info, jobs);
    if (abandoned.length) this.logger.warn({ count: abandoned.length }, 'dropped outbox intents of writes that never committed');
    // A full batch of which nothing could be done yet is not progress: wait for the next poll.
    return done.length + jobs.length === 0 ? 0 : taken.length;
  }

  /**
   * The rest of a batch, queued behind the tails before it: its finishers, its jobs (after the
   * finishers, so a job sees the search entries of every version before it stored), then one
   * delete of its intents ($in: the outbox collection is small). A tail after a failed one does nothing either
   * (their intents are offered again from the oldest, as after a crash), and none runs once the
   * lease is gone or was taken anew (the epoch it was consumed in is over).
   */
  private finish(versionIds: string[], events: CommittedEvent[], info: BatchInfo, jobs: OutboxDoc[]): void {
    const prev = this.tails.at(-1)?.done ?? Promise.resolve();
    const ids = [...versionIds, ...jobs.map((j) => j._id)];
    for (const id of ids) this.inFlight.add(id);
    const done = prev.then(async () => {
      for (const c of this.finishers) {
        this.assertStillHeld(info);
        if (events.length) await c(events, info);
      }
      for (const job of jobs) {
        this.assertStillHeld(info);
        await this.jobs.execute(job);
      }
      this.assertStillHeld(info);
      await this.cols.outbox.deleteMany({ _id: { $in: ids } });
    });
    const tail: Tail = { done };
    this.tails.push(tail);
    void done
      .catch((e: unknown) => {
        // Only the first of a run of failures says why: the tails after it fail with it.
        if (!this.failedTails.has(prev)) this.logger.error({ err: e }, 'outbox processing failed; will retry');
        this.failedTails.add(done);
      })
      .finally(() => {
        for (const id of ids) this.inFlight.delete(id);
        this.tails = this.tails.filter((t) => t !== tail);
      });
  }

  /**
   * The fence before each step of side effects: our link is still the newest, with time to spare
   * (a paused or slow holder whose lease lapsed stops here; the next holder re-reads the intents,
   * which are deleted only after every consumer has had the batch).
   */
  private async fenced(): Promise<boolean> {
    return this.lease !== undefined && (await this.chain.stillHeld(this.lease, FENCE_MS));
  }

  /** A tail's fence before each finisher and its delete: the lease is held still, in the batch's epoch. */
  private assertStillHeld(info: BatchInfo): void {
    if (!this.heldLocally() || this.epoch !== info.epoch) throw new Error('the outbox lease was lost before the batch was finished');
  }

  /** The lease has time to spare by this instance's clock (the fence between consumers of one batch). */
  private heldLocally(): boolean {
    return this.lease !== undefined && this.lease.until - Date.now() > FENCE_MS;
  }

  /** Applies versions whose writer died between the commit point and the current update. */
  private async repairCurrent(batch: HistoryDoc[]): Promise<void> {
    const byType = new Map<string, HistoryDoc[]>();
    for (const h of batch) byType.set(h.type, [...(byType.get(h.type) ?? []), h]);
    for (const [type, hs] of byType) {
      const cur = await findByIds(this.cols.current(type), hs.map((h) => h.id), { projection: { vid: 1 } });
      const vids = new Map(cur.map((c) => [c._id, c.vid]));
      for (const h of hs) {
        if ((vids.get(h.id) ?? 0) >= h.vid) continue;
        this.logger.warn({ resource: `${h.type}/${h.id}`, vid: h.vid }, 'repairing a write interrupted before its current version was stored');
        await this.versions.applyFromHistory(h.type, h.id);
        vids.set(h.id, h.vid);
      }
    }
  }

  private eventOf(h: HistoryDoc): CommittedEvent {
    const versions = this.versions;
    return {
      historyId: h._id,
      type: h.type,
      id: h.id,
      vid: h.vid,
      ts: h.ts,
      method: h.method,
      resource: h.res,
      ...(h.dec ? { dec: h.dec } : {}),
      ...(h.body ? { body: h.body } : {}),
      async previous() {
        if (h.vid <= 1) return undefined;
        return (await versions.committed(h.type, h.id, h.vid - 1))?.res;
      },
    };
  }
}
