import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { AlertDeadlineDoc, AlertingState } from '../storage/state/alerting';

export type DeadlineDoc = AlertDeadlineDoc;
export type DeadlineHandler = (d: DeadlineDoc) => Promise<void>;

/** A claim this old belongs to an instance that died while firing; the deadline may be taken over. */
const CLAIM_STALE_MS = 30_000;
/** How long fired claims are kept. */
const CLAIM_KEEP_MS = 3_600_000;

/** A deadline (or its new position) to store. */
export function deadlineDoc(id: string, due: Date, data: Record<string, string> = {}): DeadlineDoc {
  return { _id: id, due, token: randomUUID(), data };
}

/**
 * Deadlines kept in the database, so they survive restarts and crashes: an overdue deadline
 * fires as soon as the instance holding the outbox lease polls (`active`), the same instance
 * whose consumer moves them, so quiet periods and silent devices are judged from its memory.
 *
 * Firing a deadline is a one-shot transition, not a held lease: the claim `<id>|<token>` names
 * one version of one deadline, is inserted once (a unique `_id`), never renewed, and kept an hour
 * so an instance that read the same version late still loses. Across a lease hand-over two
 * instances may both try; the claim lets one through. A claim left by an instance that died
 * mid-way is taken over by a second unique insert after 30 s, and the handler is idempotent
 * (episode keys), so nothing fires twice. A lease chain would add renewals and a hint read to
 * every deadline for nothing: nobody holds a deadline over time.
 */
export class DeadlineWorker {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = true;

  constructor(
    private readonly st: AlertingState,
    private readonly handler: DeadlineHandler,
    private readonly logger: Logger,
    private readonly now: () => Date,
    private readonly pollMs: number,
    private readonly active: () => boolean = () => true,
  ) {}

  /** Sets (or moves) a deadline now (outside a batch). */
  async schedule(id: string, due: Date, data: Record<string, string> = {}): Promise<void> {
    await this.st.putDeadlines([deadlineDoc(id, due, data)]);
  }

  async cancel(id: string): Promise<void> {
    await this.st.deleteDeadline(id);
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
      this.running = (this.active() ? this.fireDue() : Promise.resolve(0))
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
    const due = await this.st.dueDeadlines(now, 100);
    let fired = 0;
    for (const d of due) {
      if (!(await this.claim(d, now))) continue;
      await this.handler(d);
      await this.st.deleteDeadlineIfToken(d._id, d.token);
      fired++;
    }
    // Claims stay a while (a slower instance that read the same deadline must still lose), then go.
    if (fired > 0) await this.st.sweepClaims(new Date(now.getTime() - CLAIM_KEEP_MS));
    return fired;
  }

  private async claim(d: DeadlineDoc, now: Date): Promise<boolean> {
    const id = `${d._id}|${d.token}`;
    if (await this.st.insertClaim(id, now)) return true;
    const c = await this.st.claim(id);
    if (!c || now.getTime() - c.at.getTime() < CLAIM_STALE_MS) return false;
    // The claimer died mid-way: take over under a second, also unique, claim.
    return this.st.insertClaim(`${id}|takeover|${Math.floor(c.at.getTime() / CLAIM_STALE_MS)}`, now);
  }
}
