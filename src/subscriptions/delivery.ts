import { randomUUID } from 'node:crypto';
import type { Resource } from 'fhir/r4';
import type { Db, Filter } from 'mongodb';
import type pino from 'pino';
import type { HistoryDoc } from '../resources/types';
import { backoffDelay } from './backoff';
import { notificationBundle, type EventForBundle } from './bundle';
import { EPOCH, type Collections, type NotificationRow, type StateDoc } from './collections';
import type { NotificationType, SubscriptionStatusCode } from './constants';
import { SIGNATURE_HEADER } from './constants';
import type { NotificationLog } from './numbering';
import type { SubscriptionOptions } from './options';
import { signatureHeader } from './signature';
import type { WebSocketHub } from './websocket';

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
  now(): Date;
}

type Outcome = { ok: true } | { ok: false; error: string };

/**
 * Delivery workers: claim one subscription at a time with a lease in MongoDB, then do what is
 * due for it (handshake, pending notifications in event-number order, heartbeat) and release.
 * Any number of instances can run these; the lease makes one of them deliver a given subscription.
 */
export class DeliveryWorker {
  private readonly owner = randomUUID();
  private timer?: NodeJS.Timeout;
  private running = 0;
  private stopped = true;
  private kicked = new Set<string>();
  private draining?: Promise<void>;
  private idle?: Promise<void>;

  constructor(private readonly ctx: DeliveryContext) {}

  start(): void {
    this.stopped = false;
    this.timer = setInterval(() => void this.sweep(), this.ctx.opts.pollMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await Promise.all([this.draining, this.idle]);
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
      await Promise.all(ids.map((id) => this.claimAndRun({ _id: id })));
    }
  }

  /** Looks for due work (retries, heartbeats, other instances' leftovers, expired leases). */
  private async sweep(): Promise<void> {
    if (this.stopped || this.idle) return;
    this.idle = (async () => {
      try {
        for (let i = 0; i < 100 && !this.stopped; i++) {
          const found = await this.claimAndRun(this.dueFilter());
          if (!found) break;
        }
      } catch (e) {
        this.ctx.logger.warn({ err: e }, 'subscription sweep failed');
      }
    })().finally(() => (this.idle = undefined));
  }

  private dueFilter(): Filter<StateDoc> {
    const now = this.ctx.now();
    const bound = this.ctx.hub.boundIds();
    const restHook = { 'spec.channelType': 'rest-hook' as const };
    return {
      $or: [
        { handshakePending: true, nextAttemptAt: { $lte: now } },
        { hasWork: true, nextAttemptAt: { $lte: now }, ...restHook },
        { hasWork: true, nextAttemptAt: { $lte: now }, _id: { $in: bound } },
        { nextHeartbeatAt: { $lte: now }, ...restHook },
        { nextHeartbeatAt: { $lte: now }, _id: { $in: bound } },
      ],
    };
  }

  /** Claims one matching subscription (lease) and works on it. Returns whether one was claimed. */
  private async claimAndRun(filter: Filter<StateDoc>): Promise<boolean> {
    const now = this.ctx.now();
    const state = await this.ctx.c.state.findOneAndUpdate(
      { ...filter, deleted: false, status: { $ne: 'off' }, leaseUntil: { $lt: now } },
      { $set: { leaseOwner: this.owner, leaseUntil: new Date(now.getTime() + this.ctx.opts.leaseMs) } },
      { returnDocument: 'after' },
    );
    if (!state) return false;
    this.running++;
    try {
      await this.work(state);
    } catch (e) {
      this.ctx.logger.error({ err: e, subscription: state._id }, 'subscription delivery failed unexpectedly');
    } finally {
      this.running--;
      await this.ctx.c.state
        .updateOne({ _id: state._id, leaseOwner: this.owner }, { $set: { leaseUntil: EPOCH } })
        .catch((e: unknown) => this.ctx.logger.warn({ err: e }, 'lease release failed'));
    }
    return true;
  }

  private async work(state: StateDoc): Promise<void> {
    const now = this.ctx.now();
    if (state.handshakePending && state.nextAttemptAt <= now) {
      if (!(await this.handshake(state))) return;
      state.handshakePending = false;
    }
    if (state.hasWork && state.nextAttemptAt <= now) {
      if (!(await this.deliverPending(state))) return;
    }
    if (state.nextHeartbeatAt && state.nextHeartbeatAt <= this.ctx.now()) await this.heartbeat(state);
  }

  private isWebsocket(s: StateDoc): boolean {
    return s.spec.channelType === 'websocket';
  }

  private async handshake(s: StateDoc): Promise<boolean> {
    // A websocket has no endpoint to probe: the handshake goes to each client when it binds.
    if (!this.isWebsocket(s)) {
      const r = await this.postNotification(s, 'handshake', []);
      if (!r.ok) {
        await this.failed(s, r.error, []);
        return false;
      }
    }
    await this.ctx.c.state.updateOne({ _id: s._id }, { $set: { handshakePending: false, failures: 0 }, $unset: { lastError: '' } });
    s.failures = 0;
    if (s.status !== 'active') await this.ctx.setStatus(s._id, 'active');
    s.status = 'active';
    return true;
  }

  private async heartbeat(s: StateDoc): Promise<void> {
    const next = new Date(this.ctx.now().getTime() + (s.spec.heartbeatSeconds ?? 60) * 1000);
    if (this.isWebsocket(s)) {
      await this.ctx.hub.send(s._id, JSON.stringify(await this.bundle(s, 'heartbeat', [])));
    } else {
      const r = await this.postNotification(s, 'heartbeat', []);
      if (!r.ok) {
        await this.failed(s, r.error, []);
        return;
      }
    }
    await this.ctx.c.state.updateOne({ _id: s._id }, { $set: { nextHeartbeatAt: next } });
  }

  /** Delivers pending rows in event-number order until none is left or one fails. */
  private async deliverPending(s: StateDoc): Promise<boolean> {
    const batch = Math.max(1, Math.min(s.spec.maxCount, this.ctx.opts.maxEventsPerNotification));
    for (let round = 0; round < 1000 && !this.stopped; round++) {
      const seq = (await this.ctx.c.state.findOne({ _id: s._id }, { projection: { workSeq: 1 } }))?.workSeq ?? s.workSeq;
      const rows = await this.ctx.c.rows.find({ sub: s._id, state: 'pending' }).sort({ num: 1 }).limit(batch).toArray();
      if (rows.length === 0) {
        // Only clear the flag if no new rows were recorded since we looked (workSeq unchanged).
        await this.ctx.c.state.updateOne({ _id: s._id, workSeq: seq }, { $set: { hasWork: false } });
        return true;
      }
      if (this.isWebsocket(s)) {
        if (!(await this.sendWebsocket(s, rows))) return false;
      } else {
        const r = await this.postNotification(s, 'event-notification', rows);
        if (!r.ok) {
          await this.failed(s, r.error, rows);
          return false;
        }
      }
      const now = this.ctx.now();
      await this.ctx.c.rows.updateMany({ _id: { $in: rows.map((r) => r._id) } }, { $set: { state: 'delivered', deliveredAt: now }, $inc: { attempts: 1 } });
      await this.succeeded(s);
    }
    return true;
  }

  private async sendWebsocket(s: StateDoc, rows: NotificationRow[]): Promise<boolean> {
    if (!this.ctx.hub.isBound(s._id)) return false;
    const text = s.spec.kind === 'criteria' ? `ping ${s._id}` : JSON.stringify(await this.bundle(s, 'event-notification', rows));
    const sent = await this.ctx.hub.send(s._id, text);
    return sent > 0;
  }

  private async succeeded(s: StateDoc): Promise<void> {
    const now = this.ctx.now();
    const set: Partial<StateDoc> = { failures: 0, lastDeliveredAt: now };
    if (s.spec.heartbeatSeconds) set.nextHeartbeatAt = new Date(now.getTime() + s.spec.heartbeatSeconds * 1000);
    await this.ctx.c.state.updateOne({ _id: s._id }, { $set: set, $unset: { lastError: '' } });
    const wasFailing = s.failures > 0 || s.status === 'error';
    s.failures = 0;
    if (wasFailing && s.status === 'error') {
      await this.ctx.setStatus(s._id, 'active');
      s.status = 'active';
    }
  }

  /**
   * Records a failed attempt: back-off with jitter, `error` status after repeated failures, and
   * rows older than the retry window given up for push (they stay available through $events).
   */
  private async failed(s: StateDoc, error: string, rows: NotificationRow[]): Promise<void> {
    const now = this.ctx.now();
    const failures = s.failures + 1;
    const delay = backoffDelay(failures, this.ctx.opts.backoffBaseMs, this.ctx.opts.backoffMaxMs);
    if (rows.length) {
      await this.ctx.c.rows.updateMany({ _id: { $in: rows.map((r) => r._id) } }, { $inc: { attempts: 1 } });
      const expired = rows.filter((r) => now.getTime() - r.createdAt.getTime() >= this.ctx.opts.retryForMs).map((r) => r._id);
      if (expired.length) {
        await this.ctx.c.rows.updateMany({ _id: { $in: expired } }, { $set: { state: 'expired' } });
        this.ctx.logger.warn({ subscription: s._id, count: expired.length }, 'notifications gave up after the retry window');
      }
    }
    await this.ctx.c.state.updateOne(
      { _id: s._id },
      { $set: { failures, lastError: error, nextAttemptAt: new Date(now.getTime() + delay) } },
    );
    s.failures = failures;
    this.ctx.logger.info({ subscription: s._id, failures, retryInMs: delay, error }, 'notification delivery failed');
    if (failures >= this.ctx.opts.errorAfterFailures && s.status !== 'error') {
      await this.ctx.setStatus(s._id, 'error', error);
      s.status = 'error';
    }
  }

  /** Loads the versions the rows are about, for full-resource payloads. */
  private async resourcesFor(rows: NotificationRow[]): Promise<Map<string, Resource>> {
    const ids = rows.filter((r) => r.method !== 'DELETE').map((r) => r.historyId);
    const docs = ids.length
      ? await this.ctx.db.collection<HistoryDoc>('history').find({ _id: { $in: ids } }, { projection: { res: 1 } }).toArray()
      : [];
    return new Map(docs.filter((d) => d.res).map((d) => [d._id, d.res!]));
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
    const spec = s.spec;
    // R4 criteria subscription without payload: a bare POST tells the client to come and look.
    const bare = spec.kind === 'criteria' && !spec.payloadMime;
    const body = bare ? '' : JSON.stringify(await this.bundle(s, type, rows));
    const now = this.ctx.now();
    const headers: Record<string, string> = {};
    for (const h of spec.headers) headers[h.name] = h.value;
    if (!bare) headers['Content-Type'] = `${spec.payloadMime ?? 'application/fhir+json'}; charset=utf-8`;
    const secrets = s.secrets.filter((x) => !x.notAfter || x.notAfter > now).map((x) => x.value);
    if (secrets.length) headers[SIGNATURE_HEADER] = signatureHeader(Math.floor(now.getTime() / 1000), body, secrets);
    headers['X-Vigil-Subscription'] = s._id;
    headers['X-Vigil-Notification-Type'] = type;
    if (rows.length) headers['X-Vigil-Event-Numbers'] = rows.map((r) => r.num).join(',');
    const timeoutMs = spec.timeoutSeconds ? spec.timeoutSeconds * 1000 : this.ctx.opts.deliveryTimeoutMs;
    try {
      const res = await fetch(spec.endpoint!, { method: 'POST', headers, body, signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
      await res.arrayBuffer().catch(() => undefined);
      return res.status >= 200 && res.status < 300 ? { ok: true } : { ok: false, error: `endpoint answered ${res.status}` };
    } catch (e) {
      const err = e as Error & { cause?: { code?: string } };
      const why = err.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (err.cause?.code ?? err.message);
      return { ok: false, error: `endpoint unreachable: ${why}` };
    }
  }
}
