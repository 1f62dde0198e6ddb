import type { Express } from 'express';
import type { AuditEvent, Resource } from 'fhir/r4';
import type { Db } from 'mongodb';
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import type { Logger } from 'pino';
import { createAlerting, patientReader, type AlertingService } from './alerting';
import { AuditTrail, AuthService } from './auth';
import type { PatientDirectory } from './auth/authorize';
import { allowAllPolicy, anonymousPrincipal } from './auth/types';
import type { Config } from './config';
import { isFhirError } from './errors';
import { buildCapabilityStatement } from './http/capability';
import { fhirEdge, type AccessRecord } from './http/edge';
import { buildExpressApp, sendError } from './http/express-app';
import { createDispatcher } from './http/routes';
import type { Services } from './http/services';
import { accessAudit } from './http/audit-mapping';
import { CURSOR_SECRET_KEY, CursorCodec } from './resources/cursor';
import { safeAuditPersist } from './http/audit-persist';
import { Counters } from './metrics';
import { SERVED_TYPES } from './resources/registry';
import { ResourceStore } from './resources/store';
import { prepareValidation, validateOperation, validateResource } from './resources/validation';
import { SearchService } from './search/service';
import { createStorage, type CrashPoint, type Outbox } from './storage';
import { SubscriptionService } from './subscriptions/service';
import { VERSION } from './version';
import { BulkExport } from './bulk/service';
import { bulkRouter } from './bulk/router';
import { Eraser } from './erasure/eraser';
import { ErasureParticipants } from './erasure/participants';
import { backpressure } from './http/backpressure';
import { metricsEndpoint, requestMetrics } from './metrics/http';
import { LoadMonitor } from './metrics/load';
import { Metrics } from './metrics/registry';

export interface VigilDeps {
  config: Config;
  db: Db;
  logger: Logger;
  clock?: () => Date;
  newId?: () => string;
  /** Fault injection for crash tests (see TransactionJournal). */
  crashPoint?: CrashPoint;
  /** Fault injection for the export restart test: the process kills itself after this many chunks. */
  bulkCrashAfterChunks?: number;
}

/** The assembled server: the Express app plus the services and workers behind it. */
export interface Vigil {
  app: Express;
  store: ResourceStore;
  outbox: Outbox;
  search: SearchService;
  auth?: AuthService;
  audit: AuditTrail;
  /** Operator-visible counters (audit events refused, dropped or failed). */
  counters: Counters;
  subscriptions: SubscriptionService;
  alerting: AlertingService;
  bulk: BulkExport;
  erasure: Eraser;
  /**
   * Prometheus metrics. Modules with state to show register a gauge read at scrape time:
   * `vigil.metrics.gauge({ name: 'vigil_alert_episodes_open', help, labelNames, collect })`.
   */
  metrics: Metrics;
  load: LoadMonitor;
  /** Creates indexes, recovers interrupted transactions, starts workers. */
  start(): Promise<void>;
  /** Lets websockets share the HTTP server (call once the server exists). */
  attach(server: http.Server): void;
  stop(): Promise<void>;
}

/**
 * Builds everything the server needs around one database, without listening: `src/server.ts`
 * listens, tests drive `app` with supertest.
 */
export async function createVigil(deps: VigilDeps): Promise<Vigil> {
  const { config, db, logger } = deps;
  const clock = deps.clock ?? (() => new Date());
  const newId = deps.newId ?? (() => randomUUID());
  const startedAt = clock();

  const compileMs = prepareValidation(SERVED_TYPES);
  logger.debug({ compileMs }, 'validation schemas compiled');
  // Storage indexes versions through search (its write-time index, cached per version).
  let search: SearchService | undefined;
  const storage = await createStorage({ db, logger, index: (r) => search!.indexOnce(r), crashPoint: deps.crashPoint, inlineMax: config.limits.storageInlineMax });
  const cursors = new CursorCodec(config.cursorSecret ?? (await storage.secret(CURSOR_SECRET_KEY)));
  search = await SearchService.create({ db, config, types: [...SERVED_TYPES], executor: storage.executor, cursors });

  // The sign-in pages see patients through the store (created below; called only at request time).
  const patientDirectory: PatientDirectory = {
    find: async (name) =>
      (await search.findMatches('Patient', `name=${encodeURIComponent(name)}`, allowAllPolicy, 20)).map((d) => ({ id: d._id, label: patientLabel(d.res) })),
    get: async (id) => {
      try {
        const d = await store.read('Patient', id, allowAllPolicy);
        return { id: d._id, label: patientLabel(d.res) };
      } catch (e) {
        if (isFhirError(e)) return undefined;
        throw e;
      }
    },
  };
  const auth = config.authEnabled ? await AuthService.create({ db, config, logger, criteria: search, now: deps.clock, patients: patientDirectory }) : undefined;
  const metrics = new Metrics();
  let subscriptions: SubscriptionService | undefined;
  const outbox = storage.outbox;
  let alerting: AlertingService | undefined;

  const store = new ResourceStore({
    repository: storage.repository,
    clock,
    newId,
    indexer: search,
    matcher: search,
    validate: (resource, o) => validateResource(resource, { ...o, allowedTypes: SERVED_TYPES }),
    beforeWrite: (ctx, r, prev) => {
      const checked = alerting ? alerting.beforeWrite(r) : r;
      return subscriptions ? subscriptions.beforeWrite(ctx, checked, prev) : Promise.resolve(checked);
    },
  });

  subscriptions = await SubscriptionService.create({
    db,
    repository: storage.repository,
    executor: storage.executor,
    config,
    logger,
    criteria: search,
    policyFor: (p) => (auth ? auth.policyFor(p.scopes, p.patient) : anonymousPrincipal.policy),
    authorizeBind: async (authorization, id) => {
      if (!auth) return undefined;
      try {
        const p = await auth.authenticate(authorization);
        p.policy.assertAllowed('read', 'Subscription');
        await store.read('Subscription', id, p.policy);
        return undefined;
      } catch (e) {
        if (!isFhirError(e)) throw e;
        return e.status === 401 ? `unauthorized: ${e.message}` : `no websocket Subscription ${id} readable with this token`;
      }
    },
    writeResource: (resource, ifMatch) => store.update(resource.resourceType, resource.id!, resource, { principal: anonymousPrincipal, internal: true }, ifMatch),
    rangeContext: (obs) => (alerting ? alerting.rangeContext(obs, patients) : Promise.resolve(undefined)),
    onAttempt: (channel, ok, committedAt, now) => metrics.delivery(channel, ok, committedAt, now),
  });
  const patients = patientReader(store);
  alerting = createAlerting({ db, config: config.alerting, logger, store, search, clock, leaseEpoch: () => outbox.heldEpoch() });
  const alerts = alerting;
  const subs = subscriptions;
  outbox.addConsumer((events) => subs.onCommitted(events));
  outbox.addConsumer((events, info) => alerts.onCommitted(events, info));
  outbox.addConsumer(async (events) => metrics.committed(events));
  const load = new LoadMonitor(() => outbox.oldestPendingAt());
  metrics.watchDatabase(db.client, (ms, started, id) => load.command(ms, started, id));
  metrics.gauge({ name: 'vigil_outbox_lag_seconds', help: 'Age of the oldest committed version whose post-commit work is pending', collect: () => [{ value: load.outboxLagMs / 1000 }] });
  metrics.gauge({ name: 'vigil_db_write_latency_seconds', help: 'Recent database write latency as back-pressure sees it', collect: () => [{ value: load.dbLatencyMs / 1000 }] });
  metrics.gauge({
    name: 'vigil_subscriptions_active',
    help: 'Active subscriptions by channel type',
    labelNames: ['channel'],
    collect: async () => (await subs.activeByChannel()).map((c) => ({ labels: { channel: c.channel }, value: c.count })),
  });
  if (config.alerting.enabled) {
    metrics.gauge({ name: 'vigil_alert_episodes_open', help: 'Open (active) alert episodes', collect: async () => [{ value: await alerts.openEpisodeCount() }] });
  }

  const policyFor = (p: { scopes: string[]; patient?: string }) => (auth ? auth.policyFor(p.scopes, p.patient) : anonymousPrincipal.policy);
  const bulk = new BulkExport({
    db,
    repository: storage.repository,
    baseUrl: config.baseUrl,
    served: SERVED_TYPES,
    filters: search,
    policyFor,
    logger,
    clock,
    newId,
    ttlSeconds: config.bulkExportTtlSeconds,
    leaseMs: config.bulkLeaseMs,
    chunkResources: config.bulkChunkResources,
    crashAfterChunks: deps.bulkCrashAfterChunks,
  });

  // Audit events go through the one commit path, as an append-only trail; a bad one never blocks the rest.
  const counters = new Counters();
  const persistAudit = safeAuditPersist({
    logger,
    counters,
    prepare: (e: AuditEvent) => store.prepare('AuditEvent', newId(), e, null, 'POST', { principal: anonymousPrincipal, internal: true }, clock()),
    insert: (writes) => store.commit(writes, { mode: 'trail' }),
  });
  const audit = new AuditTrail({ logger, persist: persistAudit });
  const erasure = new Eraser({
    storage: storage.repository.erasure,
    db,
    served: SERVED_TYPES,
    participants: new ErasureParticipants(),
    jobs: bulk.jobs,
    persistAudit,
    flushAudit: () => audit.flush(),
    clock,
  });
  // Modules that keep their own state about patients erase it when a patient is purged.
  erasure.participants.register('alerting', (patientId) => alerts.erase(patientId));

  const services: Services = {
    config,
    store,
    search,
    cursors,
    alerts: config.alerting.enabled ? alerts : undefined,
    erasure,
    capabilityStatement: () =>
      buildCapabilityStatement({
        baseUrl: config.baseUrl,
        version: VERSION,
        startedAt,
        searchParams: (t) => search.capabilitySearchParams(t),
        security: auth ? { ...auth.capabilitySecurity(), cors: config.corsOrigins.length > 0 } : undefined,
        subscriptionExtensions: subs.capability(),
        bulkExport: true,
      }),
    validateOperation: (resource, type, mode, id) =>
      validateOperation(resource, { expectedType: type, allowedTypes: SERVED_TYPES, mode: mode === 'update' ? 'update' : 'validate', id }),
  };
  const dispatch = createDispatcher(services, subs.operations(storage.repository));
  const onAccess = (r: AccessRecord) => {
    if (r.segments[0] === 'metadata') return;
    // An erasure's own access record names no erased id (its AuditEvent holds a hash instead).
    const erasing = r.segments.some((s) => s === '$purge' || s === '$expunge');
    audit.record(accessAudit(erasing ? { ...r, segments: r.segments.filter((_s, i) => i !== 1) } : r));
  };
  const authenticate = auth ? (h: string | undefined) => auth.authenticate(h) : async () => anonymousPrincipal;
  const app = buildExpressApp({
    config,
    logger,
    ready: () => db.command({ ping: 1 }),
    metrics: metricsEndpoint(metrics, config.metricsToken),
    routers: auth ? [auth.router()] : [],
    // Ahead of the body: counting, then back-pressure (refuses before any work).
    beforeBody: [
      requestMetrics(metrics),
      backpressure({
        load,
        maxOutboxLagMs: config.maxOutboxLagMs,
        maxDbLatencyMs: config.maxDbLatencyMs,
        retryAfterSeconds: config.backpressureRetryAfterSeconds,
        authenticate,
        rateOf: async (clientId) => auth?.clientRateLimit(clientId),
        clock,
        sendError: (res, e) => sendError(res, e, logger),
        onRefused: (status, reason) => metrics.refused(status, reason),
      }),
    ],
    // Bulk Data answers with its own media types (manifest, NDJSON), beside the FHIR edge.
    besideFhir: [bulkRouter({ bulk, baseUrl: config.baseUrl, authenticate, sendError: (res, e) => sendError(res, e, logger), onAccess, body: { maxJsonDepth: config.maxJsonDepth, limits: config.limits } })],
    fhir: fhirEdge({ dispatch, authenticate, logger, maxJsonDepth: config.maxJsonDepth, limits: config.limits, now: () => clock().getTime(), onAccess }),
  });

  let stopped = false;
  return {
    app,
    store,
    outbox,
    search,
    auth,
    audit,
    counters,
    subscriptions: subs,
    alerting: alerts,
    bulk,
    erasure,
    metrics,
    load,
    async start() {
      stopped = false;
      await storage.ensureIndexes(SERVED_TYPES);
      await search.ensureIndexes();
      await search.reindexIfNeeded((msg) => logger.info(msg));
      await storage.recover();
      // The topics and default vital-sign ranges we ship (ig/) are stored like any resource,
      // so clients can read and search them; an unchanged one makes no new version.
      for (const r of [...subs.shippedTopics(), ...subs.shippedObservationDefinitions()]) {
        await store.update(r.resourceType, r.id!, r, { principal: anonymousPrincipal, internal: true });
      }
      await alerts.ensureIndexes();
      outbox.start();
      subs.start();
      alerts.start();
      await bulk.start();
      load.start();
    },
    attach(server) {
      subs.attach(server);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await alerts.stop();
      load.stop();
      await bulk.stop();
      await subs.stop();
      await outbox.stop();
      await audit.close();
      await auth?.close();
    },
  };
}

/** "Family, Given (birth date)" for the patient picker and the consent page. */
function patientLabel(r: Resource): string {
  const p = r as { name?: { family?: string; given?: string[]; text?: string }[]; birthDate?: string };
  const n = p.name?.[0];
  const name = n?.text ?? ([n?.family, (n?.given ?? []).join(' ')].filter(Boolean).join(', ') || r.id || '?');
  return p.birthDate ? `${name} (${p.birthDate})` : name;
}
