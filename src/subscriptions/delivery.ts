import { randomUUID } from 'node:crypto';
import type { Resource } from 'fhir/r4';
import type { Db } from 'mongodb';
import type pino from 'pino';
import type { HistoryDoc } from '../resources/types';
import { backoffDelay } from './backoff';
import { notificationBundle, type EventForBundle } from './bundle';
import { EPOCH, isDuplicateKey, type Collections, type LeaseDoc, type NotificationRow, type RuntimeDoc, type StateDoc } from './collections';
import type { NotificationType, SubscriptionStatusCode } from './constants';
import type { NotificationLog } from './numbering';
import type { SubscriptionOptions } from './options';
import { sendHook, type HookMethod, type Outcome } from './hook-request';
import type { WebSocketHub } from './websocket';
import { stringifyJson } from '../json';
import { restoreDecimals } from '../json';

export interface DeliveryContext {
  db: Db;
  c: Collections;
  log: NotificationLog;
  hub: WebSocketHub;
  logger: pino.Logger;
  opts: SubscriptionOptions;
  baseUrl: string;
  /** Changes Subscription.status through the store (a new version), e.g. active/error. */
  setStatus(id: string, status: SubscriptionStatusCode, reason?: string): Promise<void>;
  /** Subscriptions with a heartbeat period (from the active index). */
  heartbeatIds(): string[];
  now(): Date;
  /** Metrics hook: one notification attempt, and the commit times of the events it delivered. */
  onAttempt?(channel: string, ok: boolean, committedAt: Date[], now: Date): void;
}

/** Runtime of a subscription nobody has delivered for yet. */
function freshRuntime(id: string): RuntimeDoc {
  return { _id: id, failures: 0, nextAttemptAt: EPOCH, handshakeDoneVid: 0, handshakeTriedVid: 0, delivered: 0, expired: 0 };
}

interface Lease {
  sub: string;
  n: number;
}

/**
 * Delivery workers. A subscription is worked on by whoever holds its lease (see LeaseDoc); the
 * holder does what is due (handshake, pending notifications in event-number order, heartbeat)
 * and records progress in the subscription's runtime document, which only it writes. Pending
 * notification rows are the work list, so nothing depends on a flag or on one process's memory.
 */
export class DeliveryWorker {
  private readonly owner = randomUUID();
  private timer?: NodeJS.Timeout;
  private running = 0;
  private stopped = true;
  private kicked = new Set<string>();
  /** Subscriptions this process is working on, and those that got new work meanwhile. */
  private busy = new Set<string>();
  private again = new Set<string>();
  private draining?: Promise<void>;
  private sweeping?: Promise<void>;

  constructor(private readonly ctx: DeliveryContext) {}

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
      const marked = await this.ctx.c.due.find({}, { projection: { _id: 1 } }).toArray();
      const ids = [...new Set<string>([...marked.map((m) => m._id), ...this.ctx.heartbeatIds()])];
      for (let i = 0; i < ids.length && !this.stopped; i += 16) {
        await Promise.all(ids.slice(i, i + 16).map((id) => this.tryWork(id)));
      }
    })()
      .catch((e: unknown) => this.ctx.logger.warn({ err: e }, 'subscription sweep failed'))
      .finally(() => (this.sweeping = undefined));
  }

  /** Leaves a mark so that this subscription is looked at again (by any instance). */
  async mark(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    const at = this.ctx.now();
    await this.ctx.c.due.insertMany(ids.map((_id) => ({ _id, at })), { ordered: false }).catch((e: unknown) => {
      if (!isDuplicateKey(e)) throw e;
    });
  }

  /** Newest link of the subscription's lease chain, found by key from the hint (no scans). */
  private async topLink(sub: string): Promise<LeaseDoc | null> {
    const hint = (await this.ctx.c.leaseTops.findOne({ _id: sub }))?.n ?? 0;
    let top: LeaseDoc | null = hint > 0 ? await this.ctx.c.leases.findOne({ _id: `${sub}:${hint}` }) : null;
    for (let n = hint + 1; ; n++) {
      const next = await this.ctx.c.leases.findOne({ _id: `${sub}:${n}` });
      if (!next) return top;
      top = next;
    }
  }

  private async acquire(sub: string): Promise<Lease | undefined> {
    const top = await this.topLink(sub);
    const now = this.ctx.now();
    if (top && !top.released && top.until > now) return undefined;
    const n = (top?.n ?? (await this.ctx.c.leaseTops.findOne({ _id: sub }))?.n ?? 0) + 1;
    try {
      await this.ctx.c.leases.insertOne({ _id: `${sub}:${n}`, sub, n, owner: this.owner, until: new Date(now.getTime() + this.ctx.opts.leaseMs) });
    } catch (e) {
      if (isDuplicateKey(e)) return undefined; // someone else took link n
      throw e;
    }
    await this.ctx.c.leaseTops.replaceOne({ _id: sub }, { n }, { upsert: true });
    // Old links are only clutter; remove them now and then, never the recent ones.
    if (n % 500 === 0) {
      const old = new Date(now.getTime() - 3600_000);
      void this.ctx.c.leases.deleteMany({ sub, n: { $lt: n - 100 }, until: { $lt: old } }).catch(() => undefined);
    }
    return { sub, n };
  }

  /** Whether our link is still the newest (a slow holder whose lease expired must stop). */
  private async stillMine(l: Lease): Promise<boolean> {
    const next = await this.ctx.c.leases.findOne({ _id: `${l.sub}:${l.n + 1}` });
    const mine = await this.ctx.c.leases.findOne({ _id: `${l.sub}:${l.n}` });
    return !next && Boolean(mine && mine.until > this.ctx.now());
  }

  private async release(l: Lease): Promise<void> {
    await this.ctx.c.leases.updateOne({ _id: `${l.sub}:${l.n}` }, { $set: { released: true } }).catch((e: unknown) => this.ctx.logger.warn({ err: e }, 'lease release failed'));
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
    const state = await this.ctx.c.state.findOne({ _id: id });
    if (!state || state.deleted || state.status === 'off') {
      await this.ctx.c.due.deleteOne({ _id: id });
      return;
    }
    const rt = (await this.ctx.c.runtime.findOne({ _id: id })) ?? freshRuntime(id);
    if (!(await this.isDue(state, rt))) return;
    const lease = await this.acquire(id);
    if (!lease) return;
    this.running++;
    let failed = false;
    try {
      // Unmark before looking: work recorded from now on leaves a new mark, so none is missed.
      await this.ctx.c.due.deleteOne({ _id: id });
      // Re-read after taking the lease: the previous holder may have progressed meanwhile.
      const fresh = (await this.ctx.c.runtime.findOne({ _id: id })) ?? freshRuntime(id);
      failed = !(await this.work(state, fresh, lease));
    } catch (e) {
      failed = true;
      this.ctx.logger.error({ err: e, subscription: id }, 'subscription delivery failed unexpectedly');
    } finally {
      this.running--;
      if (failed) await this.mark([id]).catch(() => undefined);
      await this.release(lease);
    }
  }

  private canPush(s: StateDoc): boolean {
    return s.spec.channelType === 'rest-hook' || this.ctx.hub.isBound(s._id);
  }

  private handshakeDue(s: StateDoc, rt: RuntimeDoc, now: Date): boolean {
    return s.handshakeVid > rt.handshakeDoneVid && (rt.handshakeTriedVid !== s.handshakeVid || rt.nextAttemptAt <= now);
  }

  private async isDue(s: StateDoc, rt: RuntimeDoc): Promise<boolean> {
    const now = this.ctx.now();
    if (this.handshakeDue(s, rt, now)) return true;
    if (!this.canPush(s)) return false;
    if (s.spec.heartbeatSeconds && (rt.nextHeartbeatAt ?? EPOCH) <= now) return true;
    return rt.nextAttemptAt <= now && (await this.ctx.log.readFrom(s._id, rt.delivered + 1, 1)).length > 0;
  }

  private async saveRuntime(rt: RuntimeDoc): Promise<void> {
    await this.ctx.c.runtime.replaceOne({ _id: rt._id }, rt, { upsert: true });
  }

  /** Does what is due; false when something failed and must be tried again later. */
  private async work(s: StateDoc, rt: RuntimeDoc, lease: Lease): Promise<boolean> {
    if (this.handshakeDue(s, rt, this.ctx.now())) {
      if (!(await this.handshake(s, rt))) return false;
    }
    if (rt.nextAttemptAt > this.ctx.now()) return false; // backing off: keep the mark
    if (!this.canPush(s)) return true; // websocket without a client here: $events has it all
    if (!(await this.deliverPending(s, rt, lease))) return false;
    if (s.spec.heartbeatSeconds) {
      if (!rt.nextHeartbeatAt) {
        rt.nextHeartbeatAt = new Date(this.ctx.now().getTime() + s.spec.heartbeatSeconds * 1000);
        await this.saveRuntime(rt);
      } else if (rt.nextHeartbeatAt <= this.ctx.now()) await this.heartbeat(s, rt);
    }
    return true;
  }

  private isWebsocket(s: StateDoc): boolean {
    return s.spec.channelType === 'websocket';
  }

  /**
   * R4 criteria rest-hook with a payload: the endpoint is a FHIR base (R4 subscription.html#2.46.7.1)
   * that takes updates, not Backport Bundles, so it gets no handshake or heartbeat Bundle either.
   */
  private isR4Update(s: StateDoc): boolean {
    return s.spec.kind === 'criteria' && s.spec.channelType === 'rest-hook' && Boolean(s.spec.payloadMime);
  }

  private async handshake(s: StateDoc, rt: RuntimeDoc): Promise<boolean> {
    rt.handshakeTriedVid = s.handshakeVid;
    // A websocket has no endpoint to probe: the handshake goes to each client when it binds.
    if (!this.isWebsocket(s) && !this.isR4Update(s)) {
      const r = await this.postNotification(s, 'handshake', []);
      if (!r.ok) {
        await this.failed(s, rt, r.error, []);
        return false;
      }
    }
    rt.handshakeDoneVid = s.handshakeVid;
    rt.failures = 0;
    delete rt.lastError;
    await this.saveRuntime(rt);
    await this.ctx.setStatus(s._id, 'active');
    s.status = 'active';
    return true;
  }

  private async heartbeat(s: StateDoc, rt: RuntimeDoc): Promise<void> {
    if (this.isWebsocket(s)) {
      await this.ctx.hub.send(s._id, stringifyJson(await this.bundle(s, 'heartbeat', [])));
    } else if (!this.isR4Update(s)) {
      const r = await this.postNotification(s, 'heartbeat', []);
      if (!r.ok) {
        await this.failed(s, rt, r.error, []);
        return;
      }
    }
    rt.nextHeartbeatAt = new Date(this.ctx.now().getTime() + (s.spec.heartbeatSeconds ?? 60) * 1000);
    await this.saveRuntime(rt);
  }

  /** Delivers pending rows in event-number order until none is left or one fails. */
  private async deliverPending(s: StateDoc, rt: RuntimeDoc, lease: Lease): Promise<boolean> {
    // An R4 update carries one resource: one event per request.
    const batch = this.isR4Update(s) ? 1 : Math.max(1, Math.min(s.spec.maxCount, this.ctx.opts.maxEventsPerNotification));
    for (let round = 0; round < 1000 && !this.stopped; round++) {
      if (round > 0 && round % 20 === 0 && !(await this.stillMine(lease))) return false;
      const rows = await this.ctx.log.readFrom(s._id, rt.delivered + 1, batch);
      if (rows.length === 0) return true;
      const channel = this.isWebsocket(s) ? 'websocket' : 'rest-hook';
      if (this.isWebsocket(s)) {
        const sent = await this.sendWebsocket(s, rows);
        this.ctx.onAttempt?.(channel, sent, sent ? rows.map((r) => r.ts) : [], this.ctx.now());
        if (!sent) return false;
      } else {
        const r = this.isR4Update(s) ? await this.putResource(s, rows[0]) : await this.postNotification(s, 'event-notification', rows);
        this.ctx.onAttempt?.(channel, r.ok, r.ok ? rows.map((x) => x.ts) : [], this.ctx.now());
        if (!r.ok) {
          await this.failed(s, rt, r.error, rows);
          return false;
        }
      }
      rt.delivered = rows[rows.length - 1].num;
      await this.succeeded(s, rt);
    }
    return true;
  }

  private async sendWebsocket(s: StateDoc, rows: NotificationRow[]): Promise<boolean> {
    if (!this.ctx.hub.isBound(s._id)) return false;
    const text = s.spec.kind === 'criteria' ? `ping ${s._id}` : stringifyJson(await this.bundle(s, 'event-notification', rows));
    const sent = await this.ctx.hub.send(s._id, text);
    return sent > 0;
  }

  private async succeeded(s: StateDoc, rt: RuntimeDoc): Promise<void> {
    const now = this.ctx.now();
    const wasFailing = rt.failures > 0 || s.status === 'error';
    rt.lastDeliveredAt = now;
    if (s.spec.heartbeatSeconds) rt.nextHeartbeatAt = new Date(now.getTime() + s.spec.heartbeatSeconds * 1000);
    rt.failures = 0;
    delete rt.lastError;
    rt.nextAttemptAt = EPOCH;
    // Progress is the runtime's `delivered` number: one write per notification.
    await this.saveRuntime(rt);
    if (wasFailing && s.status === 'error') {
      await this.ctx.setStatus(s._id, 'active');
      s.status = 'active';
    }
  }

  /**
   * Records a failed attempt: back-off with jitter, `error` status after repeated failures, and
   * rows older than the retry window given up for push (they stay available through $events).
   */
  private async failed(s: StateDoc, rt: RuntimeDoc, error: string, rows: NotificationRow[]): Promise<void> {
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
    await this.saveRuntime(rt);
    this.ctx.logger.info({ subscription: s._id, failures: rt.failures, retryInMs: delay, error }, 'notification delivery failed');
    if (rt.failures >= this.ctx.opts.errorAfterFailures && s.status !== 'error') {
      await this.ctx.setStatus(s._id, 'error', error);
      s.status = 'error';
    }
  }

  /** Loads the versions the rows are about, for full-resource payloads. */
  private async resourcesFor(rows: NotificationRow[]): Promise<Map<string, Resource>> {
    const ids = rows.filter((r) => r.method !== 'DELETE' && !r.erased).map((r) => r.historyId);
    const docs = ids.length
      ? await this.ctx.db.collection<HistoryDoc>('history').find({ _id: { $in: ids } }, { projection: { res: 1, dec: 1 } }).toArray()
      : [];
    return new Map(docs.filter((d) => d.res).map((d) => [d._id, restoreDecimals(d).res!]));
  }

  async bundle(s: StateDoc, type: NotificationType, rows: NotificationRow[]) {
    const resources = s.spec.content === 'full-resource' ? await this.resourcesFor(rows) : new Map<string, Resource>();
    const events: EventForBundle[] = rows.map((r) => ({
      num: r.num,
      ts: r.ts,
      type: r.type,
      id: r.id,
      vid: r.vid,
      method: r.method,
      resource: resources.get(r.historyId),
      erased: r.erased,
    }));
    const last = rows.length ? rows[rows.length - 1].num : await this.ctx.log.lastNumber(s._id);
    return notificationBundle({
      baseUrl: this.ctx.baseUrl,
      subscriptionId: s._id,
      topic: s.spec.topic,
      status: type === 'handshake' ? 'requested' : s.status,
      type,
      eventsSinceStart: last,
      events,
      content: s.spec.content,
    });
  }

  private async postNotification(s: StateDoc, type: NotificationType, rows: NotificationRow[]): Promise<Outcome> {
    // R4 criteria subscription without payload: a bare POST tells the client to come and look.
    const bare = s.spec.kind === 'criteria' && !s.spec.payloadMime;
    const body = bare ? '' : stringifyJson(await this.bundle(s, type, rows));
    return this.send(s, 'POST', s.spec.endpoint!, body, type, rows);
  }

  /**
   * R4 rest-hook with a payload (subscription.html#2.46.7.1): `PUT [endpoint]/[type]/[id]` with the
   * matching version as body, so that another FHIR server can be the endpoint; a deletion is a
   * `DELETE` of the same URL.
   */
  private async putResource(s: StateDoc, row: NotificationRow): Promise<Outcome> {
    const url = `${s.spec.endpoint!.replace(/\/+$/, '')}/${row.type}/${encodeURIComponent(row.id)}`;
    if (row.method === 'DELETE') return this.send(s, 'DELETE', url, '', 'event-notification', [row]);
    const resource = (await this.resourcesFor([row])).get(row.historyId);
    // The version is gone (history pruned): nothing left to send; the event stays in $events.
    if (!resource) return { ok: true };
    return this.send(s, 'PUT', url, stringifyJson(resource), 'event-notification', [row]);
  }

  private send(s: StateDoc, method: HookMethod, url: string, body: string, type: NotificationType, rows: NotificationRow[]): Promise<Outcome> {
    return sendHook({ s, method, url, body, type, rows, now: this.ctx.now(), defaultTimeoutMs: this.ctx.opts.deliveryTimeoutMs });
  }
}
