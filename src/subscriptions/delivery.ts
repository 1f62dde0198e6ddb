import { randomUUID } from 'node:crypto';
import type pino from 'pino';
import type { ResourceRepository } from '../storage';
import type { HeldLease, LeaseChain } from '../storage/lease-chain';
import type { NotificationRow, RuntimeDoc, StateDoc, SubscriptionState } from '../storage/state/subscriptions';
import type { SubscriptionStatusCode } from './constants';
import { DeliveryRun, LeaseLost, canPush, freshRuntime, handshakeDue, isDue, type RunContext } from './delivery-run';
import type { NotificationLog } from './numbering';
import { Notifier } from './notifier';
import type { SubscriptionOptions } from './options';
import type { StateCache } from './state-cache';
import type { WebSocketHub } from './websocket';

export interface DeliveryContext {
  state: SubscriptionState;
  /** Stored Subscription states, in memory while the outbox lease is held (state-cache.ts). */
  states: StateCache;
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

/** A delivery lease this process keeps between turns, with the runtime only its holder writes. */
interface Held {
  lease: HeldLease;
  rt: RuntimeDoc;
  idleSince: number;
  /** Kept from an earlier turn that delivered events (until idle for `holdMs`). */
  kept: boolean;
}

/** Subscriptions looked at together (one wave of reads and lease claims). */
const WAVE = 64;

/**
 * Delivery workers. A subscription is worked on by whoever holds its delivery lease (a
 * LeaseChain per subscription, src/storage/lease-chain.ts). A rest-hook subscription's lease is
 * kept after a turn that delivered events (released after `holdMs` idle, or before it would
 * need renewing idle), and with it the runtime document, which only the holder writes: a stream
 * of notifications to one subscription costs no lease claim and no runtime read per event. Due
 * marks and pending notification rows stay the work list, so nothing depends on one process's
 * memory; rows handed in memory (`kick` with rows, after they were recorded) only save the read.
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
  private held = new Map<string, Held>();
  /** Rows recorded by this process and not yet delivered, by subscription (a hint: rows are the truth). */
  private handed = new Map<string, NotificationRow[]>();
  private draining?: Promise<void>;
  private sweeping?: Promise<void>;
  /**
   * Due-mark deletes in flight beside a send, by subscription. A new mark waits for them: one
   * written before such a delete landed would be deleted with it (an insert beside an existing
   * mark is a no-op), and rows recorded after a crash there would then have no mark.
   */
  private clearing = new Map<string, Promise<unknown>>();

  constructor(private readonly ctx: DeliveryContext) {
    this.leases = ctx.state.deliveryLeases(randomUUID(), ctx.opts.leaseMs, () => ctx.now().getTime());
    this.notifier = new Notifier({ repository: ctx.repository, log: ctx.log, hub: ctx.hub, baseUrl: ctx.baseUrl, deliveryTimeoutMs: ctx.opts.deliveryTimeoutMs, now: ctx.now });
    this.run = { ...ctx, notifier: this.notifier, stopped: () => this.stopped };
  }

  /** How long an idle lease is kept for the next event. */
  private get holdMs(): number {
    return Math.min(this.ctx.opts.leaseMs / 4, 5000);
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
    // A turn ends within a send's timeout plus its few writes; past that, stop anyway rather than
    // hang the shutdown (its rows and marks are durable, its lease lapses for the next holder).
    const giveUpAt = Date.now() + this.ctx.opts.deliveryTimeoutMs + 5000;
    while (this.running > 0 && Date.now() < giveUpAt) await new Promise((r) => setTimeout(r, 10));
    if (this.running > 0) this.ctx.logger.warn({ turns: this.running }, 'delivery stopped with turns still running');
    await this.releaseIdle(() => true);
  }

  /**
   * Work has just been recorded for these subscriptions (their marks are written): try them now
   * rather than at the next sweep. `rows`, when given, are the rows just recorded, in order.
   */
  kick(ids: Iterable<string>, rows?: ReadonlyMap<string, NotificationRow[]>): void {
    if (this.stopped) return;
    for (const [id, r] of rows ?? []) this.handed.set(id, [...(this.handed.get(id) ?? []), ...r]);
    for (const id of ids) this.kicked.add(id);
    if (!this.draining) this.draining = this.drainKicked().finally(() => (this.draining = undefined));
  }

  private async drainKicked(): Promise<void> {
    while (this.kicked.size > 0 && !this.stopped) {
      const ids = [...this.kicked];
      this.kicked.clear();
      await this.workOn(ids, new Set(ids));
    }
  }

  /** Finds subscriptions with something due (including other instances' leftovers) and works on them. */
  private sweep(): void {
    if (this.stopped || this.sweeping) return;
    this.sweeping = (async () => {
      const now = this.ctx.now().getTime();
      await this.releaseIdle((h) => now - h.idleSince >= this.holdMs || h.lease.until - now <= this.ctx.opts.leaseMs / 2);
      const marked = new Set(await this.ctx.state.dueIds());
      await this.workOn([...new Set([...marked, ...this.ctx.heartbeatIds()])], marked);
    })()
      .catch((e: unknown) => this.ctx.logger.warn({ err: e }, 'subscription sweep failed'))
      .finally(() => (this.sweeping = undefined));
  }

  /** Leaves a mark so that this subscription is looked at again (by any instance). */
  async mark(ids: string[]): Promise<void> {
    await Promise.all(ids.map((id) => this.clearing.get(id)));
    await this.ctx.state.markDue(ids, this.ctx.now());
  }

  /** Deletes marks without waiting (see `clearing`); the caller awaits the result when it suits it. */
  private clearBeside(ids: string[]): Promise<void> {
    const deleted = this.ctx.state.clearDueMany(ids);
    const settled = deleted.catch(() => undefined);
    for (const id of ids) this.clearing.set(id, settled);
    void settled.then(() => {
      for (const id of ids) if (this.clearing.get(id) === settled) this.clearing.delete(id);
    });
    return deleted;
  }

  /** Works on subscriptions in waves; `marked` ones have (or had) work recorded. */
  private async workOn(ids: string[], marked: ReadonlySet<string>): Promise<void> {
    const free: string[] = [];
    for (const id of ids) {
      // Held by this process already: look again right after, instead of waiting for the next sweep.
      if (this.busy.has(id)) this.again.add(id);
      else free.push(id);
    }
    for (let i = 0; i < free.length && !this.stopped; i += WAVE) {
      const wave = free.slice(i, i + WAVE);
      for (const id of wave) this.busy.add(id);
      try {
        await this.wave(wave, marked);
      } catch (e) {
        this.ctx.logger.warn({ err: e }, 'delivery failed');
      } finally {
        for (const id of wave) this.busy.delete(id);
      }
    }
    const again = free.filter((id) => this.again.delete(id));
    if (again.length && !this.stopped) await this.workOn(again, new Set(again));
  }

  /** One wave: states, leases claimed together, then each subscription's turn at once. */
  private async wave(ids: string[], marked: ReadonlySet<string>): Promise<void> {
    const now = this.ctx.now();
    const states = await this.ctx.states.getMany(ids);
    const gone = ids.filter((id) => !live(states.get(id)));
    const todo = ids.filter((id) => live(states.get(id)));
    await this.ctx.state.clearDueMany(gone);
    await this.releaseIdle((_h, id) => gone.includes(id));
    // Unheld: read the runtime first, to claim only what is due (not one backing off).
    const claim: string[] = [];
    const ready: string[] = [];
    await Promise.all(
      todo.map(async (id) => {
        const s = states.get(id)!;
        const h = await this.usable(id);
        if (h) {
          if (mayBeDue(this.ctx.hub, s, h.rt, now, marked.has(id))) ready.push(id);
          return;
        }
        const rt = (await this.ctx.state.runtime(id)) ?? freshRuntime(id);
        // Rows handed on in memory exist: no need to read one to know.
        const due = this.handed.has(id) ? mayBeDue(this.ctx.hub, s, rt, now, true) : await isDue(this.ctx, s, rt);
        if (due) claim.push(id);
      }),
    );
    const claimed = (await Promise.all(claim.map(async (id) => [id, await this.leases.acquire(id)] as const))).filter((c): c is [string, HeldLease] => c[1] !== undefined);
    // Unmark before looking: work recorded from now on leaves a new mark, so none is missed. Rows
    // handed in memory need no look: their marks go beside the send, not before it (a delete
    // queued behind other writes would hold the notification back), and new marks wait for that.
    const working = [...ready, ...claimed.map(([id]) => id)];
    const handedOnly = working.filter((id) => this.handed.has(id));
    await this.ctx.state.clearDueMany(working.filter((id) => !this.handed.has(id)));
    const unmarked = this.clearBeside(handedOnly);
    // Re-read after taking the lease: the previous holder may have progressed meanwhile.
    await Promise.all(
      claimed.map(async ([id, lease]) => {
        this.held.set(id, { lease, rt: (await this.ctx.state.runtime(id)) ?? freshRuntime(id), idleSince: now.getTime(), kept: false });
      }),
    );
    for (const id of ids) if (!working.includes(id)) this.handed.delete(id);
    // Every turn ends before the wave does (the wave's subscriptions are busy until then): a
    // failed delete of marks must not end the wave early, or a second turn could start beside one.
    const [cleared] = await Promise.allSettled([unmarked, ...working.map((id) => this.turn(states.get(id)!, this.held.get(id)!))]);
    if (cleared.status === 'rejected') this.ctx.logger.warn({ err: cleared.reason }, 'due marks not deleted; they make a later look find nothing');
  }

  /** A lease kept from an earlier turn, renewed when it runs low; undefined when none (or it was lost). */
  private async usable(id: string): Promise<Held | undefined> {
    const h = this.held.get(id);
    if (!h) return undefined;
    if (h.lease.until - this.ctx.now().getTime() > this.ctx.opts.leaseMs / 2) return h;
    const next = await this.leases.renew(h.lease).catch(() => undefined);
    if (next) {
      h.lease = next;
      return h;
    }
    this.held.delete(id);
    return undefined;
  }

  private async turn(state: StateDoc, h: Held): Promise<void> {
    const id = state._id;
    const rows = this.handed.get(id);
    this.handed.delete(id);
    this.running++;
    const before = h.rt.delivered;
    let failed = false;
    let keep = false;
    try {
      failed = !(await new DeliveryRun(this.run, state, h.rt, () => this.fence(h), rows).work());
      // Kept while events flow to a rest-hook (a handshake alone or a failure gives it back).
      keep = !failed && state.spec.channelType === 'rest-hook' && (h.rt.delivered > before || h.kept);
    } catch (e) {
      failed = true;
      if (e instanceof LeaseLost) this.ctx.logger.info({ subscription: id }, e.message);
      else this.ctx.logger.error({ err: e, subscription: id }, 'subscription delivery failed unexpectedly');
    } finally {
      this.running--;
      h.idleSince = this.ctx.now().getTime();
      if (failed) await this.mark([id]).catch(() => undefined);
      // A websocket's lease goes back at once: the instance its client is bound to must get it.
      h.kept = keep;
      if (!keep || this.stopped) await this.release(id, h);
    }
  }

  private async release(id: string, h: Held): Promise<void> {
    if (this.held.get(id) === h) this.held.delete(id);
    await this.leases.release(h.lease).catch((e: unknown) => this.ctx.logger.warn({ err: e }, 'lease release failed'));
  }

  /** Gives back kept leases that are idle and match `which`. */
  private async releaseIdle(which: (h: Held, id: string) => boolean): Promise<void> {
    const out = [...this.held].filter(([id, h]) => !this.busy.has(id) && which(h, id));
    await Promise.all(out.map(([id, h]) => this.release(id, h)));
  }

  /**
   * Before each side effect: with more than half the lease left nobody can have taken over (a
   * contender only claims a link after ours expired); below that, renew by claiming the next link,
   * which fails exactly when another instance got there first.
   */
  private async fence(held: Held): Promise<void> {
    if (held.lease.until - this.ctx.now().getTime() > this.ctx.opts.leaseMs / 2) return;
    const next = await this.leases.renew(held.lease);
    if (!next) throw new LeaseLost(held.lease.name);
    held.lease = next;
  }
}

function live(s: StateDoc | null | undefined): s is StateDoc {
  return Boolean(s && !s.deleted && s.status !== 'off');
}

/** From memory, for a lease kept with its runtime: whether a turn could have anything to do. */
function mayBeDue(hub: WebSocketHub, s: StateDoc, rt: RuntimeDoc, now: Date, marked: boolean): boolean {
  if (handshakeDue(s, rt, now)) return true;
  if (!canPush(hub, s)) return false;
  if (s.spec.heartbeatSeconds && (rt.nextHeartbeatAt ?? new Date(0)) <= now) return true;
  return marked && rt.nextAttemptAt <= now;
}
