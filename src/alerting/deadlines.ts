import type { Collection, Db } from 'mongodb';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { isDuplicateKey } from '../storage';
import { putById } from './db';

/** A durable deadline: `_id` names what it is about (e.g. `silent|Device/7`); `token` changes at each reschedule. */
export interface DeadlineDoc {
  _id: string;
  due: Date;
  token: string;
  data: Record<string, string>;
}
interface ClaimDoc {
  _id: string;
  at: Date;
}

export type DeadlineHandler = (d: DeadlineDoc) => Promise<void>;

/** A claim this old belongs to an instance that died while firing; the deadline may be taken over. */
const CLAIM_STALE_MS = 30_000;
/** How long fired claims are kept. */
const CLAIM_KEEP_MS = 3_600_000;

/**
 * Deadlines kept in the database, so they survive restarts and crashes: an overdue deadline
 * fires as soon as any instance polls. Firing is claimed by inserting `<id>|<token>` (only one
 * instance can); the handler's effects are idempotent (episode keys), so a claim taken over
 * after a crash completes the work instead of doing it twice. A fired deadline is deleted only
 * if it has not been rescheduled meanwhile (same token).
 */
export class DeadlineWorker {
  private readonly deadlines: Collection<DeadlineDoc>;
  private readonly claims: Collection<ClaimDoc>;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = true;

  constructor(
    db: Db,
    private readonly handler: DeadlineHandler,
    private readonly logger: Logger,
    private readonly now: () => Date,
    private readonly pollMs: number,
  ) {
    this.deadlines = db.collection('alert_deadlines');
    this.claims = db.collection('alert_claims');
  }

  async ensureIndexes(): Promise<void> {
    await this.deadlines.createIndex({ due: 1 });
  }

  /** Sets (or moves) a deadline. */
  async schedule(id: string, due: Date, data: Record<string, string> = {}): Promise<void> {
    await putById(this.deadlines, id, { due, token: randomUUID(), data });
  }

  async cancel(id: string): Promise<void> {
    await this.deadlines.deleteOne({ _id: id });
  }

  start(): void {
    this.stopped = false;
    this.tick(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  private tick(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.fireDue()
        .then(() => undefined)
        .catch((e: unknown) => this.logger.warn({ err: e }, 'alert deadlines: firing failed; will retry'))
        .finally(() => {
          this.running = undefined;
          this.tick(this.pollMs);
        });
    }, ms);
    this.timer.unref?.();
  }

  /** Fires every overdue deadline once; returns how many this instance fired. */
  async fireDue(): Promise<number> {
    const now = this.now();
    const due = await this.deadlines.find({ due: { $lte: now } }).sort({ due: 1 }).limit(100).toArray();
    let fired = 0;
    for (const d of due) {
      if (!(await this.claim(d, now))) continue;
      await this.handler(d);
      await this.deadlines.deleteOne({ _id: d._id, token: d.token });
      fired++;
    }
    // Claims stay a while (a slower instance that read the same deadline must still lose), then go.
    if (fired > 0) await this.claims.deleteMany({ at: { $lt: new Date(now.getTime() - CLAIM_KEEP_MS) } });
    return fired;
  }

  private async claim(d: DeadlineDoc, now: Date): Promise<boolean> {
    const id = `${d._id}|${d.token}`;
    try {
      await this.claims.insertOne({ _id: id, at: now });
      return true;
    } catch (e) {
      if (!isDuplicateKey(e)) throw e;
    }
    const c = await this.claims.findOne({ _id: id });
    if (!c || now.getTime() - c.at.getTime() < CLAIM_STALE_MS) return false;
    // The claimer died mid-way: take over under a second, also unique, claim.
    try {
      await this.claims.insertOne({ _id: `${id}|takeover|${Math.floor(c.at.getTime() / CLAIM_STALE_MS)}`, at: now });
      return true;
    } catch (e) {
      if (isDuplicateKey(e)) return false;
      throw e;
    }
  }
}
