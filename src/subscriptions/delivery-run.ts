import type pino from 'pino';
import type { NotificationRow, RuntimeDoc, StateDoc, SubscriptionState } from '../storage/state/subscriptions';
import { backoffDelay } from './backoff';
import { EPOCH, type SubscriptionStatusCode } from './constants';
import type { NotificationLog } from './numbering';
import { isR4Update, isWebsocket, type Notifier } from './notifier';
import type { SubscriptionOptions } from './options';
import type { WebSocketHub } from './websocket';

/** What a delivery run needs from the worker around it. */
export interface RunContext {
  state: SubscriptionState;
  log: NotificationLog;
  hub: WebSocketHub;
  notifier: Notifier;
  logger: pino.Logger;
  opts: SubscriptionOptions;
  /** Changes Subscription.status through the store (a new version), e.g. active/error. */
  setStatus(s: StateDoc, status: SubscriptionStatusCode, reason?: string): Promise<void>;
  now(): Date;
  /** Metrics hook: one notification attempt, and the commit times of the events it delivered. */
  onAttempt?(channel: string, ok: boolean, committedAt: Date[], now: Date): void;
  stopped(): boolean;
}

/** The delivery lease was lost mid-run (another instance took over): stop without writing progress. */
export class LeaseLost extends Error {
  constructor(sub: string) {
    super(`delivery lease of Subscription/${sub} lost`);
  }
}

/** Runtime of a subscription nobody has delivered for yet. */
export function freshRuntime(id: string): RuntimeDoc {
  return { _id: id, failures: 0, nextAttemptAt: EPOCH, handshakeDoneVid: 0, handshakeTriedVid: 0, delivered: 0, expired: 0 };
}

export function canPush(hub: WebSocketHub, s: StateDoc): boolean {
  return s.spec.channelType === 'rest-hook' || hub.isBound(s._id);
}

export function handshakeDue(s: StateDoc, rt: RuntimeDoc, now: Date): boolean {
  return s.handshakeVid > rt.handshakeDoneVid && (rt.handshakeTriedVid !== s.handshakeVid || rt.nextAttemptAt <= now);
}

/** Whether anything is due for this subscription (handshake, heartbeat, pending rows), by key reads only. */
export async function isDue(ctx: Pick<RunContext, 'hub' | 'log' | 'now'>, s: StateDoc, rt: RuntimeDoc): Promise<boolean> {
  const now = ctx.now();
  if (handshakeDue(s, rt, now)) return true;
  if (!canPush(ctx.hub, s)) return false;
  if (s.spec.heartbeatSeconds && (rt.nextHeartbeatAt ?? EPOCH) <= now) return true;
  return rt.nextAttemptAt <= now && (await ctx.log.readFrom(s._id, rt.delivered + 1, 1)).length > 0;
}

/**
 * One holder's turn at one subscription: handshake, pending notifications in event-number order,
 * heartbeat. Progress goes to the runtime document, which only the lease holder writes; every
 * write of it passes the lease fence first (`fence` renews the lease as it runs low and throws
 * LeaseLost once another instance could have taken over), so a paused holder never overwrites
 * its successor's progress.
 */
export class DeliveryRun {
  constructor(
    private readonly ctx: RunContext,
    private readonly s: StateDoc,
    private readonly rt: RuntimeDoc,
    private readonly fence: () => Promise<void>,
    /** Rows this process recorded just now (in order), to send without reading them back. */
    private handed: NotificationRow[] = [],
  ) {}

  /** Does what is due; false when something failed and must be tried again later. */
  async work(): Promise<boolean> {
    const { s, rt } = this;
    if (handshakeDue(s, rt, this.ctx.now()) && !(await this.handshake())) return false;
    if (rt.nextAttemptAt > this.ctx.now()) return false; // backing off: keep the mark
    if (!canPush(this.ctx.hub, s)) return true; // websocket without a client here: $events has it all
    if (!(await this.deliverPending())) return false;
    if (s.spec.heartbeatSeconds) {
      if (!rt.nextHeartbeatAt) {
        rt.nextHeartbeatAt = new Date(this.ctx.now().getTime() + s.spec.heartbeatSeconds * 1000);
        await this.save();
      } else if (rt.nextHeartbeatAt <= this.ctx.now()) await this.heartbeat();
    }
    return true;
  }

  private async save(): Promise<void> {
    await this.fence();
    await this.ctx.state.saveRuntime(this.rt);
  }

  private async handshake(): Promise<boolean> {
    const { s, rt } = this;
    rt.handshakeTriedVid = s.handshakeVid;
    // A websocket has no endpoint to probe: the handshake goes to each client when it binds.
    if (!isWebsocket(s) && !isR4Update(s)) {
      await this.fence();
      const r = await this.ctx.notifier.post(s, 'handshake', []);
      if (!r.ok) {
        await this.failed(r.error, []);
        return false;
      }
    }
    rt.handshakeDoneVid = s.handshakeVid;
    rt.failures = 0;
    delete rt.lastError;
    await this.save();
    await this.ctx.setStatus(s, 'active');
    s.status = 'active';
    return true;
  }

  private async heartbeat(): Promise<void> {
    const { s, rt } = this;
    await this.fence();
    if (isWebsocket(s)) {
      await this.ctx.notifier.bundleToWebsocket(s, 'heartbeat');
    } else if (!isR4Update(s)) {
      const r = await this.ctx.notifier.post(s, 'heartbeat', []);
      if (!r.ok) {
        await this.failed(r.error, []);
        return;
      }
    }
    rt.nextHeartbeatAt = new Date(this.ctx.now().getTime() + (s.spec.heartbeatSeconds ?? 60) * 1000);
    await this.save();
  }

  /** Delivers pending rows in event-number order until none is left or one fails. */
  private async deliverPending(): Promise<boolean> {
    const { s, rt } = this;
    // An R4 update carries one resource: one event per request.
    const batch = isR4Update(s) ? 1 : Math.max(1, Math.min(s.spec.maxCount, this.ctx.opts.maxEventsPerNotification));
    const channel = isWebsocket(s) ? 'websocket' : 'rest-hook';
    for (let round = 0; round < 1000 && !this.ctx.stopped(); round++) {
      const rows = this.takeHanded(batch) ?? (await this.ctx.log.readFrom(s._id, rt.delivered + 1, batch));
      if (rows.length === 0) return true;
      await this.fence();
      const r = isWebsocket(s)
        ? (await this.ctx.notifier.toWebsocket(s, rows)) ? { ok: true as const } : { ok: false as const, error: 'no websocket client took it' }
        : isR4Update(s)
          ? await this.ctx.notifier.putResource(s, rows[0])
          : await this.ctx.notifier.post(s, 'event-notification', rows);
      this.ctx.onAttempt?.(channel, r.ok, r.ok ? rows.map((x) => x.ts) : [], this.ctx.now());
      if (!r.ok) {
        // A websocket whose client went away is not a failing endpoint: $events keeps the rows.
        if (!isWebsocket(s)) await this.failed(r.error, rows);
        return false;
      }
      rt.delivered = rows[rows.length - 1].num;
      await this.succeeded();
    }
    return true;
  }

  /** The next rows from those handed in memory, when they follow on from what was delivered. */
  private takeHanded(batch: number): NotificationRow[] | undefined {
    const next = this.handed.filter((r) => r.num > this.rt.delivered);
    this.handed = [];
    let n = 0;
    while (n < next.length && n < batch && next[n].num === this.rt.delivered + 1 + n) n++;
    return n > 0 ? next.slice(0, n) : undefined;
  }

  private async succeeded(): Promise<void> {
    const { s, rt } = this;
    const now = this.ctx.now();
    const wasFailing = rt.failures > 0 || s.status === 'error';
    rt.lastDeliveredAt = now;
    if (s.spec.heartbeatSeconds) rt.nextHeartbeatAt = new Date(now.getTime() + s.spec.heartbeatSeconds * 1000);
    rt.failures = 0;
    delete rt.lastError;
    rt.nextAttemptAt = EPOCH;
    // Progress is the runtime's `delivered` number: one write per notification.
    await this.save();
    if (wasFailing && s.status === 'error') {
      await this.ctx.setStatus(s, 'active');
      s.status = 'active';
    }
  }

  /**
   * Records a failed attempt: back-off with jitter, `error` status after repeated failures, and
   * rows older than the retry window given up for push (they stay available through $events).
   */
  private async failed(error: string, rows: NotificationRow[]): Promise<void> {
    const { s, rt } = this;
    const now = this.ctx.now();
    rt.failures += 1;
    const delay = backoffDelay(rt.failures, this.ctx.opts.backoffBaseMs, this.ctx.opts.backoffMaxMs);
    // Rows are given up in order from the head, so the expired ones are always a prefix.
    let given = 0;
    while (given < rows.length && now.getTime() - rows[given].createdAt.getTime() >= this.ctx.opts.retryForMs) given++;
    if (given > 0) {
      rt.delivered = rows[given - 1].num;
      rt.expired += given;
      this.ctx.logger.warn({ subscription: s._id, count: given }, 'notifications gave up after the retry window');
    }
    rt.lastError = error;
    rt.nextAttemptAt = new Date(now.getTime() + delay);
    await this.save();
    this.ctx.logger.info({ subscription: s._id, failures: rt.failures, retryInMs: delay, error }, 'notification delivery failed');
    if (rt.failures >= this.ctx.opts.errorAfterFailures && s.status !== 'error') {
      await this.ctx.setStatus(s, 'error', error);
      s.status = 'error';
    }
  }
}
