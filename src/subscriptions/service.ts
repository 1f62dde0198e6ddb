import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Extension, Observation, ObservationDefinition, Resource, Subscription } from 'fhir/r4';
import type { Db } from 'mongodb';
import type pino from 'pino';
import type { AccessPolicy, Principal } from '../auth/types';
import type { Config } from '../config';
import { Errors } from '../errors';
import type { CurrentDoc, HistoryDoc } from '../storage/types';
import { collections, ensureIndexes, fingerprint, isDuplicateKey, type Collections, type OwnerDoc, type SigningSecret, type StateDoc, type StoredPrincipal } from './collections';
import { EXT, type SubscriptionStatusCode } from './constants';
import { DeliveryWorker } from './delivery';
import { DefinitionIndex, deriveObservationInterpretation, stripDerived, type RangeContext } from './interpretation';
import { ActiveIndex } from './matcher';
import { NotificationLog, type NewRow } from './numbering';
import { subscriptionOptionsFromEnv, type SubscriptionOptions } from './options';
import { type OperationRoute, subscriptionOperations } from './operations';
import { newSecret } from './signature';
import { parseSubscription, takeSigningSecret, type SubscriptionSpec } from './spec';
import { topicToBasic } from './topic-basic';
import { compileTopic, loadShippedTopics, topicFires, type CompiledTopic, type CriteriaEvaluator, type Interaction, type SubscriptionTopicResource } from './topics';
import { WebSocketHub, type BindResult } from './websocket';
import { subscriptionPatient } from '../search/subscription-pins';
import type { CommittedEvent, ResourceRepository } from '../storage';
import { stringifyJson } from '../json';

/** One committed version, from the durable outbox (src/storage/outbox.ts). */
export type { CommittedEvent } from '../storage';

export interface SubscriptionDeps {
  db: Db;
  config: Config;
  logger: pino.Logger;
  criteria: CriteriaEvaluator;
  policyFor(p: { clientId: string; scopes: string[]; patient?: string }): AccessPolicy;
  writeResource(resource: Resource): Promise<Resource>;
  /** Overrides of the environment-derived tunables (tests, benchmarks). */
  options?: Partial<SubscriptionOptions>;
  /** Where shipped topics and ObservationDefinitions live (default: <repo>/ig). */
  igDir?: string;
  /** Injected clock. */
  now?: () => Date;
  /** Patient-specific range facts (targets, age, gender) for derived interpretations (src/alerting). */
  rangeContext?: (obs: Observation) => Promise<RangeContext | undefined>;
  /**
   * With auth on: whether the bearer token of a websocket upgrade (`Authorization` header) may
   * read Subscription `id`, for R4 `bind <id>`; resolves to a refusal text, or undefined.
   */
  authorizeBind?(authorization: string | undefined, id: string): Promise<string | undefined>;
  /** Metrics hook for delivery attempts (see DeliveryContext.onAttempt). */
  onAttempt?: (channel: string, ok: boolean, committedAt: Date[], now: Date) => void;
}

const LIVE_STATUSES: SubscriptionStatusCode[] = ['requested', 'active', 'error'];
const GENERATION = 'generation';

function loadShippedDefinitions(igDir: string): ObservationDefinition[] {
  try {
    return readdirSync(igDir)
      .filter((n) => /^ObservationDefinition-.*\.json$/.test(n))
      .sort()
      .map((n) => JSON.parse(readFileSync(path.join(igDir, n), 'utf8')) as ObservationDefinition);
  } catch {
    return [];
  }
}

function versionKey(s: StateDoc): string {
  return `${s.resourceVid}|${s.status}|${s.updatedAt?.getTime?.() ?? ''}`;
}

function toStored(p: Principal): StoredPrincipal {
  return p.patient ? { clientId: p.clientId, scopes: [...p.scopes], patient: p.patient } : { clientId: p.clientId, scopes: [...p.scopes] };
}

/**
 * Subscriptions and alerts: turns committed versions into numbered notification rows (durably,
 * before acknowledging them) and delivers those by rest-hook and websocket.
 */
export class SubscriptionService {
  private readonly c: Collections;
  private readonly log: NotificationLog;
  private readonly index: ActiveIndex;
  private readonly worker: DeliveryWorker;
  private readonly hub: WebSocketHub;
  private readonly opts: SubscriptionOptions;
  private readonly now: () => Date;
  private topics = new Map<string, CompiledTopic>();
  private shipped: SubscriptionTopicResource[];
  private shippedDefs: ObservationDefinition[];
  private definitions: DefinitionIndex;
  private generation = -1;
  /** Our own status changes in flight (fingerprints): told apart from a client's concurrent write by content. */
  private internalWrites = new Set<string>();
  private refreshTimer?: NodeJS.Timeout;

  private constructor(private readonly deps: SubscriptionDeps) {
    this.c = collections(deps.db);
    this.log = new NotificationLog(this.c);
    this.index = new ActiveIndex(deps.criteria);
    this.opts = { ...subscriptionOptionsFromEnv(), ...deps.options };
    this.now = deps.now ?? (() => new Date());
    const igDir = deps.igDir ?? path.resolve(__dirname, '..', '..', 'ig');
    this.shipped = loadShippedTopics(igDir);
    this.shippedDefs = loadShippedDefinitions(igDir);
    this.definitions = new DefinitionIndex(this.shippedDefs);
    this.hub = new WebSocketHub(this.websocketPath(), { bind: (k, v, a) => this.bind(k, v, a), bound: (ids) => this.onBound(ids) }, deps.logger);
    this.worker = new DeliveryWorker({
      db: deps.db,
      c: this.c,
      log: this.log,
      hub: this.hub,
      logger: deps.logger,
      opts: this.opts,
      baseUrl: deps.config.baseUrl,
      setStatus: (id, status, reason) => this.setStatus(id, status, reason),
      heartbeatIds: () => this.index.heartbeatIds(),
      now: this.now,
      onAttempt: deps.onAttempt,
    });
  }

  static async create(deps: SubscriptionDeps): Promise<SubscriptionService> {
    const svc = new SubscriptionService(deps);
    await ensureIndexes(svc.c);
    await svc.reloadTopics();
    await svc.reloadDefinitions();
    await svc.reloadIndex();
    return svc;
  }

  /** Active subscriptions by channel type (for the metrics gauge). */
  async activeByChannel(): Promise<{ channel: string; count: number }[]> {
    const docs = await this.c.state.find({ status: 'active', deleted: false }, { projection: { 'spec.channelType': 1 } }).toArray();
    const counts = new Map<string, number>([['rest-hook', 0], ['websocket', 0]]);
    for (const d of docs) counts.set(d.spec.channelType, (counts.get(d.spec.channelType) ?? 0) + 1);
    return [...counts].map(([channel, count]) => ({ channel, count }));
  }

  /** Topics from ig/, for the core to store in their R4 form (Basic, see topic-basic.ts). */
  shippedTopics(): Resource[] {
    return this.shipped.map(topicToBasic);
  }

  /** Default vital-sign ranges from ig/, for the core to store as ObservationDefinition resources. */
  shippedObservationDefinitions(): Resource[] {
    return this.shippedDefs;
  }

  // ---------------------------------------------------------------- loading

  /** Topics are the ones shipped in ig/ (their Basic form is written by the server only). */
  private async reloadTopics(): Promise<void> {
    const next = new Map<string, CompiledTopic>();
    for (const t of this.shipped) {
      try {
        if (t.status === 'retired') continue;
        next.set(t.url, compileTopic(t, this.deps.criteria));
      } catch (e) {
        this.deps.logger.warn({ err: e, topic: t.url }, 'SubscriptionTopic ignored: it cannot be evaluated');
      }
    }
    this.topics = next;
  }

  private async reloadDefinitions(): Promise<void> {
    const stored = await this.deps.db
      .collection<CurrentDoc>('ObservationDefinition')
      .find({ deleted: false })
      .toArray()
      .catch(() => [] as CurrentDoc[]);
    // Stored definitions override the shipped defaults for the same code.
    this.definitions = new DefinitionIndex([...this.shippedDefs, ...stored.map((d) => d.res as ObservationDefinition)]);
  }

  private async readGeneration(): Promise<number> {
    return (await this.c.meta.findOne({ _id: GENERATION }))?.n ?? 0;
  }

  /** Another instance changed subscriptions (or topics) when the shared generation moved. */
  private async refreshIfStale(): Promise<void> {
    const g = await this.readGeneration();
    if (g !== this.generation) {
      await this.reloadTopics();
      await this.reloadIndex(g);
    }
  }

  private async bumpGeneration(): Promise<void> {
    const doc = await this.c.meta.findOneAndUpdate({ _id: GENERATION }, { $inc: { n: 1 } }, { upsert: true, returnDocument: 'after' });
    const n = doc?.n ?? 0;
    // Skipped numbers mean someone else changed something too: reload on the next batch.
    if (n === this.generation + 1) this.generation = n;
  }

  private async reloadIndex(generation?: number): Promise<void> {
    const g = generation ?? (await this.readGeneration());
    const states = await this.c.state.find({ deleted: false, status: { $in: LIVE_STATUSES } }).toArray();
    const seen = new Set<string>();
    let compiled = 0;
    for (const s of states) {
      seen.add(s._id);
      // Unchanged since it was indexed: keep the compiled entry (compiling is the costly part).
      if (this.indexedVersion.get(s._id) === versionKey(s)) continue;
      this.indexState(s);
      // Let requests and deliveries run between chunks of a large reload.
      if (++compiled % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    for (const id of this.allIndexedIds()) if (!seen.has(id)) this.index.remove(id);
    this.generation = g;
  }

  private indexedIds = new Set<string>();
  /** resourceVid/status/updatedAt of what is indexed, to skip recompiling unchanged subscriptions. */
  private indexedVersion = new Map<string, string>();
  private allIndexedIds(): string[] {
    return [...this.indexedIds];
  }

  private indexState(s: Pick<StateDoc, '_id' | 'spec' | 'principal' | 'status' | 'deleted'> & Partial<StateDoc>): void {
    this.indexedVersion.delete(s._id);
    if (s.deleted || !LIVE_STATUSES.includes(s.status)) {
      this.index.remove(s._id);
      this.indexedIds.delete(s._id);
      return;
    }
    try {
      const topicTypes = s.spec.topic ? this.topics.get(s.spec.topic)?.resourceTypes : undefined;
      if (s.spec.kind === 'topic' && !topicTypes) throw new Error(`unknown topic ${s.spec.topic}`);
      this.index.put(s.spec, this.deps.policyFor(s.principal), topicTypes);
      this.indexedIds.add(s._id);
      if (s.resourceVid !== undefined) this.indexedVersion.set(s._id, versionKey(s as StateDoc));
    } catch (e) {
      this.deps.logger.warn({ err: e, subscription: s._id }, 'Subscription cannot be evaluated; it receives no notifications');
      this.index.remove(s._id);
      this.indexedIds.delete(s._id);
    }
  }

  // ---------------------------------------------------------------- before the commit

  async beforeWrite(
    ctx: { principal: Principal; method: 'POST' | 'PUT' | 'PATCH' },
    resource: Resource,
    previous?: Resource,
  ): Promise<Resource> {
    switch (resource.resourceType) {
      case 'Observation':
        if (!this.deps.config.deriveInterpretation) return resource;
        return deriveObservationInterpretation(
          stripDerived(resource as Observation),
          this.definitions.lookup,
          await this.deps.rangeContext?.(resource as Observation),
        );
      case 'Subscription':
        return this.beforeSubscriptionWrite(ctx.principal, resource as Subscription, previous as Subscription | undefined);
      default:
        return resource;
    }
  }

  private async beforeSubscriptionWrite(principal: Principal, incoming: Subscription, previous?: Subscription): Promise<Subscription> {
    if (incoming.id && this.internalWrites.has(fingerprint(incoming))) return incoming;
    const { resource, secret } = takeSigningSecret(incoming);
    const spec = parseSubscription(resource, { criteria: this.deps.criteria, topic: (u) => this.topics.get(u) });
    if (principal.patient && subscriptionPatient(resource) !== principal.patient && !principal.policy.canWrite(resource, [])) {
      throw Errors.forbidden(
        `A patient-context token may only subscribe to its own patient: the criteria (or every topic filter) must pin patient=Patient/${principal.patient}`,
        'MSG_SUBSCRIPTION_PATIENT',
      );
    }
    for (const f of spec.filters) {
      // A client may only subscribe to what it could search for itself.
      principal.policy.assertAllowed('search', f.resourceType);
    }
    if (spec.kind === 'topic') for (const t of this.topics.get(spec.topic!)!.resourceTypes) principal.policy.assertAllowed('search', t);
    const out: Subscription = { ...resource, status: this.statusForClientWrite(spec, previous) };
    if (out.status === 'requested') delete out.error;

    const now = this.now();
    const existing = resource.id ? await this.c.owners.findOne({ _id: resource.id }) : null;
    let secrets: SigningSecret[] = existing?.secrets.filter((s) => !s.notAfter || s.notAfter > now) ?? [];
    if (secret && secret !== secrets.find((s) => !s.notAfter)?.value) {
      // Rotation: the new secret signs from now on, the old one keeps signing for a while.
      const until = new Date(now.getTime() + this.opts.secretRotationMs);
      secrets = [{ value: secret }, ...secrets.filter((s) => s.value !== secret).map((s) => ({ value: s.value, notAfter: s.notAfter ?? until }))];
    }
    if (!secrets.some((s) => !s.notAfter)) secrets = [{ value: newSecret() }, ...secrets];
    if (resource.id) {
      await this.c.owners.updateOne({ _id: resource.id }, { $set: { principal: toStored(principal), secrets, updatedAt: now } }, { upsert: true });
    } else {
      // A create before the store has given it an id: park the writer under the content's
      // fingerprint; the commit of the same content claims it (see claimPendingOwner).
      await this.c.pendingOwners.insertOne({ _id: randomUUID(), hash: fingerprint(out), principal: toStored(principal), secrets, createdAt: now });
    }
    return out;
  }

  /** Moves a parked writer (create without id) to the committed Subscription's id. */
  private async claimPendingOwner(sub: Subscription): Promise<OwnerDoc | null> {
    const pending = await this.c.pendingOwners.findOneAndDelete({ hash: fingerprint(sub) }, { sort: { createdAt: 1 } });
    if (!pending) return null;
    const owner: OwnerDoc = { _id: sub.id!, principal: pending.principal, secrets: pending.secrets, updatedAt: pending.createdAt };
    await this.c.owners.updateOne({ _id: owner._id }, { $setOnInsert: owner }, { upsert: true });
    return this.c.owners.findOne({ _id: owner._id });
  }

  /** Clients cannot make a Subscription active themselves: that takes a handshake. */
  private statusForClientWrite(spec: SubscriptionSpec, previous?: Subscription): SubscriptionStatusCode {
    if (spec.status === 'off') return 'off';
    if (!previous || previous.status === 'off' || previous.status === 'requested') return 'requested';
    const sameChannel =
      previous.channel?.type === spec.channelType && (previous.channel?.endpoint ?? undefined) === spec.endpoint;
    return sameChannel && (previous.status === 'active' || previous.status === 'error') ? previous.status : 'requested';
  }

  // ---------------------------------------------------------------- after the commit

  async onCommitted(events: CommittedEvent[]): Promise<void> {
    await this.refreshIfStale();
    const now = this.now();
    type Hit = { sub: string; ev: CommittedEvent; policy: AccessPolicy; checkOn?: Resource };
    const hits: Hit[] = [];
    for (const ev of events) {
      if (ev.type === 'Subscription') {
        await this.syncSubscription(ev);
        continue;
      }
      if (ev.type === 'ObservationDefinition') {
        await this.reloadDefinitions();
        continue;
      }
      const interaction: Interaction = ev.method === 'DELETE' ? 'delete' : ev.vid === 1 || ev.method === 'POST' ? 'create' : 'update';
      const live = (spec: SubscriptionSpec) => !spec.end || Date.parse(spec.end) > now.getTime();
      if (ev.resource) {
        for (const s of this.index.criteriaCandidates(ev.type, ev.resource)) {
          if (live(s.spec) && this.index.filtersPass(s, ev.type, ev.resource)) hits.push({ sub: s.spec.id, ev, policy: s.policy, checkOn: ev.resource });
        }
      }
      for (const url of this.index.topicsFor(ev.type)) {
        const topic = this.topics.get(url);
        if (!topic) continue;
        let prev: Resource | undefined | null = null;
        const previous = async () => (prev === null ? (prev = await ev.previous()) : prev);
        if (!(await topicFires(topic, { type: ev.type, interaction, current: ev.resource, previous }, this.deps.criteria))) continue;
        const subject = ev.resource ?? (await previous());
        if (!subject) continue;
        for (const s of this.index.topicCandidates(url, ev.type, subject)) {
          if (live(s.spec) && this.index.filtersPass(s, ev.type, subject)) hits.push({ sub: s.spec.id, ev, policy: s.policy, checkOn: subject });
        }
      }
    }
    if (hits.length === 0) return;

    // The subscriber's policy decides: a notification never tells about what it could not read.
    const needComp = hits.filter((h) => h.policy.readFilter(h.ev.type) !== undefined).map((h) => h.ev.historyId);
    const comps = new Map<string, string[]>();
    if (needComp.length) {
      const docs = await this.deps.db
        .collection<HistoryDoc>('history')
        .find({ _id: { $in: [...new Set(needComp)] } }, { projection: { comp: 1 } })
        .toArray();
      for (const d of docs) comps.set(d._id, d.comp ?? []);
    }
    const bySub = new Map<string, NewRow[]>();
    for (const h of hits) {
      if (!h.checkOn || !h.policy.canRead(h.checkOn, comps.get(h.ev.historyId) ?? [])) continue;
      const rows = bySub.get(h.sub) ?? [];
      if (rows.some((r) => r.historyId === h.ev.historyId)) continue; // several triggers, one event
      rows.push({
        sub: h.sub,
        historyId: h.ev.historyId,
        type: h.ev.type,
        id: h.ev.id,
        vid: h.ev.vid,
        method: h.ev.method,
        ts: h.ev.ts,
        createdAt: now,
      });
      bySub.set(h.sub, rows);
    }
    if (bySub.size === 0) return;
    await Promise.all([...bySub].map(([sub, rows]) => this.log.record(sub, rows)));
    // The mark tells any instance there is work; the local kick delivers right away.
    await this.worker.mark([...bySub.keys()]);
    this.worker.kick(bySub.keys());
  }

  private async syncSubscription(ev: CommittedEvent): Promise<void> {
    const now = this.now();
    const existing = await this.c.state.findOne({ _id: ev.id });
    if (existing && existing.resourceVid >= ev.vid) return; // a replay of something already applied
    if (ev.method === 'DELETE' || !ev.resource) {
      if (existing) await this.c.state.updateOne({ _id: ev.id }, { $set: { deleted: true, status: 'off', resourceVid: ev.vid, updatedAt: now } });
      this.indexState({ _id: ev.id, spec: existing?.spec as SubscriptionSpec, principal: existing?.principal as StoredPrincipal, status: 'off', deleted: true });
      await this.bumpGeneration();
      return;
    }
    let spec: SubscriptionSpec;
    try {
      spec = parseSubscription(ev.resource as Subscription, { criteria: this.deps.criteria, topic: (u) => this.topics.get(u) });
    } catch (e) {
      this.deps.logger.warn({ err: e, subscription: ev.id }, 'stored Subscription cannot be evaluated; ignoring it');
      this.indexState({ _id: ev.id, spec: existing?.spec as SubscriptionSpec, principal: existing?.principal as StoredPrincipal, status: 'off', deleted: true });
      return;
    }
    const owner = (await this.c.owners.findOne({ _id: ev.id })) ?? (await this.claimPendingOwner(ev.resource as Subscription));
    // Without a recorded writer nothing is readable: notifications would carry nothing.
    const principal: StoredPrincipal = owner?.principal ?? { clientId: 'unknown', scopes: [] };
    const handshakeVid = spec.status === 'requested' ? ev.vid : (existing?.handshakeVid ?? 0);
    const doc: StateDoc = {
      _id: ev.id,
      spec,
      resourceVid: ev.vid,
      status: spec.status,
      deleted: false,
      principal,
      secrets: owner?.secrets ?? [],
      handshakeVid,
      updatedAt: now,
    };
    try {
      // Only onCommitted writes this document, in commit order; the vid check drops stale replays.
      if (existing) await this.c.state.replaceOne({ _id: ev.id, resourceVid: existing.resourceVid }, doc);
      else await this.c.state.insertOne(doc);
    } catch (e) {
      if (!isDuplicateKey(e)) throw e; // a racing replay inserted it first
    }
    this.indexState(doc);
    await this.bumpGeneration();
    if (spec.status === 'requested') {
      await this.worker.mark([ev.id]);
      this.worker.kick([ev.id]);
    }
  }

  /** Changes Subscription.status with a system-level write (a new version through the store). */
  private async setStatus(id: string, status: SubscriptionStatusCode, reason?: string): Promise<void> {
    const doc = await this.deps.db.collection<CurrentDoc>('Subscription').findOne({ _id: id, deleted: false });
    const current = doc?.res as Subscription | undefined;
    if (!current || current.status === status || current.status === 'off') return;
    const next: Subscription = { ...current, status };
    if (status === 'error' && reason) next.error = reason;
    else delete next.error;
    const mark = fingerprint(next);
    this.internalWrites.add(mark);
    try {
      await this.deps.writeResource(next);
    } catch (e) {
      this.deps.logger.warn({ err: e, subscription: id, status }, 'could not record the Subscription status');
    } finally {
      this.internalWrites.delete(mark);
    }
  }

  // ---------------------------------------------------------------- websocket

  private websocketPath(): string {
    return `${new URL(this.deps.config.baseUrl).pathname.replace(/\/+$/, '')}/websocket`;
  }

  websocketUrl(): string {
    return `${this.deps.config.baseUrl.replace(/^http/, 'ws')}/websocket`;
  }

  private async bind(kind: 'id' | 'token', value: string, authorization?: string): Promise<BindResult> {
    if (kind === 'id') {
      // R4 `bind <id>` carries no credential of its own: the upgrade request's bearer token must read the Subscription.
      if (this.deps.config.authEnabled) {
        const refused = this.deps.authorizeBind
          ? await this.deps.authorizeBind(authorization, value)
          : 'bind <id> needs a token here; call Subscription/<id>/$get-ws-binding-token and send "bind-with-token <token>"';
        if (refused) return { style: 'r4', error: refused };
      }
      const s = await this.c.state.findOne({ _id: value, deleted: false });
      if (!s || s.spec.channelType !== 'websocket') return { style: 'r4', error: `no websocket Subscription ${value}` };
      return { style: 'r4', ids: [value] };
    }
    const t = await this.c.tokens.findOne({ _id: value });
    if (!t || t.exp <= this.now()) return { style: 'backport', error: 'token unknown or expired' };
    return { style: 'backport', ids: t.subs };
  }

  private onBound(ids: string[]): void {
    void (async () => {
      for (const id of ids) {
        const s = await this.c.state.findOne({ _id: id });
        if (!s) continue;
        if (s.spec.kind === 'topic') {
          const hs = await this.worker.bundle({ ...s, status: s.status }, 'handshake', []);
          await this.hub.send(id, stringifyJson(hs));
        }
      }
      this.worker.kick(ids);
    })().catch((e: unknown) => this.deps.logger.warn({ err: e }, 'websocket handshake failed'));
  }

  attach(server: http.Server): void {
    this.hub.attach(server);
  }

  // ---------------------------------------------------------------- HTTP, lifecycle, capability

  /** $status, $events, $get-ws-binding-token: entries of the FHIR route table (src/http/routes.ts). */
  operations(repository: ResourceRepository): OperationRoute[] {
    return subscriptionOperations({
      repository,
      c: this.c,
      log: this.log,
      baseUrl: this.deps.config.baseUrl,
      websocketUrl: this.websocketUrl(),
      tokenTtlMs: this.opts.wsTokenTtlMs,
      now: this.now,
    });
  }

  start(): void {
    this.worker.start();
    // Safety net for multi-instance changes the generation check might miss, and stored definitions.
    this.refreshTimer = setInterval(() => {
      void Promise.all([this.reloadDefinitions(), this.reloadTopics().then(() => this.reloadIndex())]).catch((e: unknown) =>
        this.deps.logger.warn({ err: e }, 'subscription refresh failed'),
      );
    }, 60_000);
    this.refreshTimer.unref();
  }

  async stop(): Promise<void> {
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.hub.close();
    await this.worker.stop();
  }

  capability(): { resourceExtensions: Extension[]; restExtensions: Extension[] } {
    return {
      resourceExtensions: [
        ...[...this.topics.keys()].sort().map((url) => ({ url: EXT.topicCanonical, valueCanonical: url })),
        { url: EXT.channelTypes, valueCode: 'rest-hook' },
        { url: EXT.channelTypes, valueCode: 'websocket' },
      ],
      restExtensions: [{ url: EXT.websocketUrl, valueUri: this.websocketUrl() }],
    };
  }
}
