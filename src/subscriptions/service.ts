import type http from 'node:http';
import path from 'node:path';
import type { Extension, Observation, Resource, Subscription } from 'fhir/r4';
import type { Db } from 'mongodb';
import type pino from 'pino';
import type { AccessPolicy, Principal } from '../auth/types';
import type { Config } from '../config';
import type { BatchInfo, CommittedEvent, ResourceRepository } from '../storage';
import type { QueryExecutor } from '../storage/query/executor';
import { SubscriptionState } from '../storage/state/subscriptions';
import { checkClientWrite } from './client-writes';
import { EXT } from './constants';
import { ObservationDefinitions } from './definitions';
import { DeliveryWorker } from './delivery';
import { hitsOf, rowsForHits, type Hit } from './event-matching';
import { deriveObservationInterpretation, stripDerived, type RangeContext } from './interpretation';
import { NotificationLog } from './numbering';
import { type OperationRoute, subscriptionOperations } from './operations';
import { subscriptionOptionsFromEnv, type SubscriptionOptions } from './options';
import { SubscriptionRegistry } from './registry';
import { StateCache } from './state-cache';
import { syncSubscriptions, type SyncDeps } from './state-sync';
import { StatusWriter, type WriteResource } from './status-writer';
import { topicToBasic } from './topic-basic';
import { loadShippedTopics, type CriteriaEvaluator, type SubscriptionTopicResource } from './topics';
import { onBound, resolveBind, type BindingDeps } from './websocket-binding';
import { WebSocketHub } from './websocket';

/** One committed version, from the durable outbox (src/storage/outbox.ts). */
export type { CommittedEvent } from '../storage';

export interface SubscriptionDeps {
  /** The database of the module's own state (src/storage/state/subscriptions.ts). */
  db: Db;
  /** Resource reads (Subscriptions, versions, ObservationDefinitions) go through storage's faces. */
  repository: ResourceRepository;
  executor: QueryExecutor;
  config: Config;
  logger: pino.Logger;
  criteria: CriteriaEvaluator;
  policyFor(p: { clientId: string; scopes: string[]; patient?: string }): AccessPolicy;
  /** Server-side Subscription writes (status changes), conditional on the version they read. */
  writeResource: WriteResource;
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
  /** The outbox lease epoch while this instance holds the lease (undefined otherwise); absent: never. */
  leaseEpoch?: () => number | undefined;
  /** Metrics hook for delivery attempts (see DeliveryContext.onAttempt). */
  onAttempt?: (channel: string, ok: boolean, committedAt: Date[], now: Date) => void;
}

/**
 * Subscriptions and alerts: turns committed versions into numbered notification rows (durably,
 * before acknowledging them) and delivers those by rest-hook and websocket. This class wires the
 * parts together; each job lives in its own file (see README.md here).
 */
export class SubscriptionService {
  private readonly state: SubscriptionState;
  private readonly states: StateCache;
  private readonly log: NotificationLog;
  private readonly registry: SubscriptionRegistry;
  private readonly definitions: ObservationDefinitions;
  private readonly worker: DeliveryWorker;
  private readonly hub: WebSocketHub;
  private readonly opts: SubscriptionOptions;
  private readonly now: () => Date;
  private readonly shipped: SubscriptionTopicResource[];
  private readonly sync: SyncDeps;
  private readonly binding: BindingDeps;
  private refreshTimer?: NodeJS.Timeout;

  private constructor(private readonly deps: SubscriptionDeps) {
    this.state = new SubscriptionState(deps.db);
    this.states = new StateCache(this.state, deps.leaseEpoch ?? (() => undefined));
    this.log = new NotificationLog(this.state);
    this.opts = { ...subscriptionOptionsFromEnv(), ...deps.options };
    this.now = deps.now ?? (() => new Date());
    const igDir = deps.igDir ?? path.resolve(__dirname, '..', '..', 'ig');
    this.shipped = loadShippedTopics(igDir);
    this.definitions = new ObservationDefinitions(igDir, deps);
    this.registry = new SubscriptionRegistry({ state: this.state, criteria: deps.criteria, logger: deps.logger, shipped: this.shipped, policyFor: deps.policyFor });
    this.hub = new WebSocketHub(this.websocketPath(), { bind: (k, v, a) => resolveBind(this.binding, k, v, a), bound: (ids) => onBound(this.binding, ids) }, deps.logger);
    const status = new StatusWriter({ repository: deps.repository, writeResource: deps.writeResource, logger: deps.logger });
    this.worker = new DeliveryWorker({
      state: this.state,
      states: this.states,
      repository: deps.repository,
      log: this.log,
      hub: this.hub,
      logger: deps.logger,
      opts: this.opts,
      baseUrl: deps.config.baseUrl,
      setStatus: (s, code, reason) => status.set(s, code, reason),
      heartbeatIds: () => this.registry.index.heartbeatIds(),
      now: this.now,
      onAttempt: deps.onAttempt,
    });
    this.sync = { state: this.state, cache: this.states, registry: this.registry, criteria: deps.criteria, logger: deps.logger, now: this.now };
    this.binding = { state: this.state, worker: this.worker, logger: deps.logger, authEnabled: deps.config.authEnabled, authorizeBind: deps.authorizeBind, now: this.now };
  }

  static async create(deps: SubscriptionDeps): Promise<SubscriptionService> {
    const svc = new SubscriptionService(deps);
    await svc.state.ensureIndexes();
    svc.registry.reloadTopics();
    await svc.definitions.reload();
    await svc.registry.reload();
    return svc;
  }

  /** Active subscriptions by channel type (for the metrics gauge). */
  async activeByChannel(): Promise<{ channel: string; count: number }[]> {
    const counts = new Map<string, number>([['rest-hook', 0], ['websocket', 0]]);
    for (const c of await this.state.activeChannelTypes()) counts.set(c, (counts.get(c) ?? 0) + 1);
    return [...counts].map(([channel, count]) => ({ channel, count }));
  }

  /** Topics from ig/, for the core to store in their R4 form (Basic, see topic-basic.ts). */
  shippedTopics(): Resource[] {
    return this.shipped.map(topicToBasic);
  }

  /** Default vital-sign ranges from ig/, for the core to store as ObservationDefinition resources. */
  shippedObservationDefinitions(): Resource[] {
    return this.definitions.shipped;
  }

  // ---------------------------------------------------------------- before the commit (client writes)

  async beforeWrite(ctx: { principal: Principal; method: 'POST' | 'PUT' | 'PATCH' }, resource: Resource, previous?: Resource): Promise<Resource> {
    switch (resource.resourceType) {
      case 'Observation':
        if (!this.deps.config.deriveInterpretation) return resource;
        return deriveObservationInterpretation(stripDerived(resource as Observation), this.definitions.lookup, await this.deps.rangeContext?.(resource as Observation));
      case 'Subscription':
        return checkClientWrite(
          { state: this.state, registry: this.registry, criteria: this.deps.criteria, secretRotationMs: this.opts.secretRotationMs, now: this.now },
          ctx.principal,
          resource as Subscription,
          previous as Subscription | undefined,
        );
      default:
        return resource;
    }
  }

  // ---------------------------------------------------------------- after the commit

  /** Outbox consumer: records the rows of every match before it returns (so none is lost). */
  async onCommitted(events: CommittedEvent[], info?: BatchInfo): Promise<void> {
    await this.registry.refreshIfStale(info?.epoch);
    await this.match(events);
  }

  /**
   * Versions a later consumer of the same outbox batch committed (alerting's Flags): matched now
   * rather than when the outbox offers them (its next pass recognises them by history id). The
   * registry was brought up to date by this batch's onCommitted.
   */
  async onDerived(events: CommittedEvent[]): Promise<void> {
    await this.match(events);
  }

  private async match(events: CommittedEvent[]): Promise<void> {
    const now = this.now();
    const match = { registry: this.registry, criteria: this.deps.criteria, repository: this.deps.repository };
    const hits: Hit[] = [];
    const handshakes: string[] = [];
    for (let i = 0; i < events.length; ) {
      const ev = events[i];
      if (ev.type === 'Subscription') {
        // In commit order: a Subscription matches the versions committed after it, not before.
        // A run of Subscription versions is applied together (see syncSubscriptions).
        let j = i;
        while (j < events.length && events[j].type === 'Subscription') j++;
        handshakes.push(...(await syncSubscriptions(this.sync, events.slice(i, j))));
        i = j;
        continue;
      }
      if (ev.type === 'ObservationDefinition') await this.definitions.reload();
      else hits.push(...(await hitsOf(match, ev, now)));
      i++;
    }
    const bySub = await rowsForHits(this.deps.repository, hits, now);
    const ids = [...new Set([...handshakes, ...bySub.keys()])];
    if (ids.length === 0) return;
    // Rows and marks are stored together (a mark whose rows are not there yet only makes a
    // worker look early and find nothing); the local kick delivers right away, with the rows just
    // recorded handed on in memory, only once both are stored, so a crash loses none.
    const [recorded] = await Promise.all([
      Promise.all([...bySub].map(async ([sub, rows]) => [sub, await this.log.record(sub, rows)] as const)),
      this.worker.mark(ids),
    ]);
    this.worker.kick(ids, new Map(recorded));
  }

  // ---------------------------------------------------------------- websocket

  private websocketPath(): string {
    return `${new URL(this.deps.config.baseUrl).pathname.replace(/\/+$/, '')}/websocket`;
  }

  websocketUrl(): string {
    return `${this.deps.config.baseUrl.replace(/^http/, 'ws')}/websocket`;
  }

  attach(server: http.Server): void {
    this.hub.attach(server);
  }

  // ---------------------------------------------------------------- HTTP, lifecycle, capability

  /** $status, $events, $get-ws-binding-token: entries of the FHIR route table (src/http/routes.ts). */
  operations(repository: ResourceRepository = this.deps.repository): OperationRoute[] {
    return subscriptionOperations({
      repository,
      state: this.state,
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
      this.registry.reloadTopics();
      // Not while this instance's consumer keeps the index current (a scan of every state, slow
      // on FerretDB with 1,000 subscriptions, for nothing: only that consumer changes them).
      const current = this.registry.isFreshIn(this.deps.leaseEpoch?.());
      void Promise.all([this.definitions.reload(), current ? undefined : this.registry.reload()]).catch((e: unknown) => this.deps.logger.warn({ err: e }, 'subscription refresh failed'));
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
        ...this.registry.topicUrls().sort().map((url) => ({ url: EXT.topicCanonical, valueCanonical: url })),
        { url: EXT.channelTypes, valueCode: 'rest-hook' },
        { url: EXT.channelTypes, valueCode: 'websocket' },
      ],
      restExtensions: [{ url: EXT.websocketUrl, valueUri: this.websocketUrl() }],
    };
  }
}
