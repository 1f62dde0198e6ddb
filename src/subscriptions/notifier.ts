import type { Resource } from 'fhir/r4';
import type { ResourceRepository } from '../storage';
import type { NotificationRow, StateDoc } from '../storage/state/subscriptions';
import { stringifyJson } from '../json';
import { notificationBundle, type EventForBundle } from './bundle';
import type { NotificationType } from './constants';
import { sendHook, type HookMethod, type Outcome } from './hook-request';
import type { NotificationLog } from './numbering';
import type { WebSocketHub } from './websocket';

export interface NotifierContext {
  repository: ResourceRepository;
  log: NotificationLog;
  hub: WebSocketHub;
  baseUrl: string;
  deliveryTimeoutMs: number;
  now(): Date;
}

export function isWebsocket(s: StateDoc): boolean {
  return s.spec.channelType === 'websocket';
}

/**
 * R4 criteria rest-hook with a payload: the endpoint is a FHIR base (R4 subscription.html#2.46.7.1)
 * that takes updates, not Backport Bundles, so it gets no handshake or heartbeat Bundle either.
 */
export function isR4Update(s: StateDoc): boolean {
  return s.spec.kind === 'criteria' && s.spec.channelType === 'rest-hook' && Boolean(s.spec.payloadMime);
}

/** Builds notification payloads and sends them by rest-hook or to bound websockets. */
export class Notifier {
  constructor(private readonly ctx: NotifierContext) {}

  /** The versions the rows are about (committed, read through storage), for full-resource payloads. */
  private async resourcesFor(rows: NotificationRow[]): Promise<Map<string, Resource>> {
    const ids = rows.filter((r) => r.method !== 'DELETE' && !r.erased).map((r) => r.historyId);
    const docs = await this.ctx.repository.versions(ids);
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

  /** A handshake, heartbeat or event notification POSTed to the rest-hook endpoint. */
  async post(s: StateDoc, type: NotificationType, rows: NotificationRow[]): Promise<Outcome> {
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
  async putResource(s: StateDoc, row: NotificationRow): Promise<Outcome> {
    const url = `${s.spec.endpoint!.replace(/\/+$/, '')}/${row.type}/${encodeURIComponent(row.id)}`;
    if (row.method === 'DELETE') return this.send(s, 'DELETE', url, '', 'event-notification', [row]);
    const resource = (await this.resourcesFor([row])).get(row.historyId);
    // The version is gone (history pruned): nothing left to send; the event stays in $events.
    if (!resource) return { ok: true };
    return this.send(s, 'PUT', url, stringifyJson(resource), 'event-notification', [row]);
  }

  /** Event notification to this process's bound sockets; false when none took it. */
  async toWebsocket(s: StateDoc, rows: NotificationRow[]): Promise<boolean> {
    if (!this.ctx.hub.isBound(s._id)) return false;
    const text = s.spec.kind === 'criteria' ? `ping ${s._id}` : stringifyJson(await this.bundle(s, 'event-notification', rows));
    return (await this.ctx.hub.send(s._id, text)) > 0;
  }

  /** A handshake or heartbeat Bundle to the bound sockets. */
  async bundleToWebsocket(s: StateDoc, type: 'handshake' | 'heartbeat'): Promise<void> {
    await this.ctx.hub.send(s._id, stringifyJson(await this.bundle(s, type, [])));
  }

  private send(s: StateDoc, method: HookMethod, url: string, body: string, type: NotificationType, rows: NotificationRow[]): Promise<Outcome> {
    return sendHook({ s, method, url, body, type, rows, now: this.ctx.now(), defaultTimeoutMs: this.ctx.deliveryTimeoutMs });
  }
}
