import { randomUUID } from 'node:crypto';
import type pino from 'pino';
import type { ResourceRepository } from '../storage';
import type { HeldLease, LeaseChain } from '../storage/lease-chain';
import type { StateDoc, SubscriptionState } from '../storage/state/subscriptions';
import type { SubscriptionStatusCode } from './constants';
import { DeliveryRun, LeaseLost, freshRuntime, isDue, type RunContext } from './delivery-run';
import type { NotificationLog } from './numbering';
import { Notifier } from './notifier';
import type { SubscriptionOptions } from './options';
import type { WebSocketHub } from './websocket';

export interface DeliveryContext {
  state: SubscriptionState;
  repository: ResourceRepository;
  log: NotificationLog;
  hub: WebSocketHub;
  logger: pino.Logger;
  opts: SubscriptionOptions;
  baseUrl: string;
  /** Changes Subscription.status through the store (a new version), e.g. active/error. */
  setStatus(s: StateDoc, status: SubscriptionStatusCode, reason?: string): Promise<void>;
  /** Subscriptions with a heartbeat period (from the active index). */
  heartbeatIds(): string[];
  now(): Date;
  /** Metrics hook: one notification attempt, and the commit times of the events it delivered. */
  onAttempt?(channel: string, ok: boolean, committedAt: Date[], now: Date): void;
}

/**
 * Delivery workers. A subscription is worked on by whoever holds its delivery lease (a
 * LeaseChain per subscription, src/storage/lease-chain.ts); the holder runs what is due
 * (DeliveryRun) and releases. Due marks and pending notification rows are the work list, so
 * nothing depends on a flag or on one process's memory.
 */
export class DeliveryWorker {
  private readonly leases: LeaseChain;
  readonly notifier: Notifier;
  private readonly run: RunContext;
  private timer?: NodeJS.Timeout;
  private running = 0;
  private stopped = true;
  private kicked = new Set<string>();
  /** Subscriptions this process is working on, and those that got new work meanwhile. */
  private busy = new Set<string>();
  private again = new Set<string>();
  private draining?: Promise<void>;
  private sweeping?: Promise<void>;

  constructor(private readonly ctx: DeliveryContext) {
    this.leases = ctx.state.deliveryLeases(randomUUID(), ctx.opts.leaseMs, () => ctx.now().getTime());
    this.notifier = new Notifier({ repository: ctx.repository, log: ctx.log, hub: ctx.hub, baseUrl: ctx.baseUrl, deliveryTimeoutMs: ctx.opts.deliveryTimeoutMs, now: ctx.now });
    this.run = { ...ctx, notifier: this.notifier, stopped: () => this.stopped };
  }

  start(): void {
    this.stopped = false;
    this.timer = setInterval(() => this.sweep(), this.ctx.opts.pollMs);
    this.timer.unref();
    this.sweep();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await Promise.all([this.draining, this.sweeping]);
    while (this.running > 0) await new Promise((r) => setTimeout(r, 10));
  }

  /** Work has just been recorded for these subscriptions: try them now rather than at the next sweep. */
  kick(ids: Iterable<string>): void {
    if (this.stopped) return;
    for (const id of ids) this.kicked.add(id);
    if (!this.draining) this.draining = this.drainKicked().finally(() => (this.draining = undefined));
  }

  private async drainKicked(): Promise<void> {
    while (this.kicked.size > 0 && !this.stopped) {
      const ids = [...this.kicked];
      this.kicked.clear();
      await Promise.all(ids.map((id) => this.tryWork(id).catch((e: unknown) => this.ctx.logger.warn({ err: e, subscription: id }, 'delivery failed'))));
    }
  }

  /** Finds subscriptions with something due (including other instances' leftovers) and works on them. */
  private sweep(): void {
    if (this.stopped || this.sweeping) return;
    this.sweeping = (async () => {
      const ids = [...new Set<string>([...(await this.ctx.state.dueIds()), ...this.ctx.heartbeatIds()])];
      for (let i = 0; i < ids.length && !this.stopped; i += 16) {
        await Promise.all(ids.slice(i, i + 16).map((id) => this.tryWork(id)));
      }
    })()
      .catch((e: unknown) => this.ctx.logger.warn({ err: e }, 'subscription sweep failed'))
      .finally(() => (this.sweeping = undefined));
  }

  /** Leaves a mark so that this subscription is looked at again (by any instance). */
  mark(ids: string[]): Promise<void> {
    return this.ctx.state.markDue(ids, this.ctx.now());
  }

  /** Takes the lease if free, does what is due, releases. */
  private async tryWork(id: string): Promise<void> {
    if (this.busy.has(id)) {
      // We hold it already: look again right after, instead of waiting for the next sweep.
      this.again.add(id);
      return;
    }
    this.busy.add(id);
    try {
      await this.tryWorkOnce(id);
    } finally {
      this.busy.delete(id);
    }
    if (this.again.delete(id) && !this.stopped) await this.tryWork(id);
  }

  private async tryWorkOnce(id: string): Promise<void> {
    const state = await this.ctx.state.state(id);
    if (!state || state.deleted || state.status === 'off') {
      await this.ctx.state.clearDue(id);
      return;
    }
    const rt = (await this.ctx.state.runtime(id)) ?? freshRuntime(id);
    if (!(await isDue(this.ctx, state, rt))) return;
    const first = await this.leases.acquire(id);
    if (!first) return;
    this.running++;
    const held = { lease: first };
    let failed = false;
    try {
      failed = !(await this.workHolding(state, held));
    } catch (e) {
      failed = true;
      if (e instanceof LeaseLost) this.ctx.logger.info({ subscription: id }, e.message);
      else this.ctx.logger.error({ err: e, subscription: id }, 'subscription delivery failed unexpectedly');
    } finally {
      this.running--;
      if (failed) await this.mark([id]).catch(() => undefined);
      await this.leases.release(held.lease).catch((e: unknown) => this.ctx.logger.warn({ err: e }, 'lease release failed'));
    }
  }

  private async workHolding(state: StateDoc, held: { lease: HeldLease }): Promise<boolean> {
    // Unmark before looking: work recorded from now on leaves a new mark, so none is missed.
    await this.ctx.state.clearDue(state._id);
    // Re-read after taking the lease: the previous holder may have progressed meanwhile.
    const rt = (await this.ctx.state.runtime(state._id)) ?? freshRuntime(state._id);
    return new DeliveryRun(this.run, state, rt, () => this.fence(held)).work();
  }

  /**
   * Before each side effect: with more than half the lease left nobody can have taken over (a
   * contender only claims a link after ours expired); below that, renew by claiming the next link,
   * which fails exactly when another instance got there first.
   */
  private async fence(held: { lease: HeldLease }): Promise<void> {
    if (held.lease.until - this.ctx.now().getTime() > this.ctx.opts.leaseMs / 2) return;
    const next = await this.leases.renew(held.lease);
    if (!next) throw new LeaseLost(held.lease.name);
    held.lease = next;
  }
}
