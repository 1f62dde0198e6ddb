import type { Express } from 'express';
import type { Db } from 'mongodb';
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import type { Logger } from 'pino';
import type { AlertingService } from './alerting';
import { createAlertingModule } from './alerting/module';
import type { AuditTrail, AuthService } from './auth';
import { createAuthModule } from './auth/module';
import { createBulkModule } from './bulk/module';
import type { BulkExport } from './bulk/service';
import type { Config } from './config';
import type { Eraser } from './erasure/eraser';
import { createErasureModule } from './erasure/module';
import { createAuditModule } from './http/audit-module';
import { createHttpApp } from './http/module';
import type { Counters } from './metrics';
import type { LoadMonitor } from './metrics/load';
import { createMetricsModule } from './metrics/module';
import type { Metrics } from './metrics/registry';
import type { ModuleParts } from './module';
import { createResourcesModule } from './resources/module';
import type { ResourceStore } from './resources/store';
import type { SearchService } from './search/service';
import { type CrashPoint, detectEngine, gateWritesForEngine, type Outbox } from './storage';
import { createSubscriptionsModule } from './subscriptions/module';
import type { SubscriptionService } from './subscriptions/service';

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
   * Prometheus metrics. Modules with state to show hand the composition a gauge read at scrape
   * time (`ModuleParts.gauges`); tests may add one with `vigil.metrics.gauge(spec)`.
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
 * listens, tests drive `app` with supertest. Each module's factory returns its services and its
 * parts (outbox consumers, gauges, lifecycle); this only orders and composes them.
 */
export async function createVigil(deps: VigilDeps): Promise<Vigil> {
  const { config, logger } = deps;
  // The database kind is asked once: the write gate and storage's executor both follow it.
  const engine = await detectEngine(deps.db);
  const db = gateWritesForEngine(deps.db, engine, config.limits.embeddedWriters);
  const clock = deps.clock ?? (() => new Date());
  const newId = deps.newId ?? (() => randomUUID());
  const startedAt = clock();

  const core = await createResourcesModule({ config, db, engine, logger, clock, newId, crashPoint: deps.crashPoint });
  const { outbox } = core.storage;
  const auth = await createAuthModule({ config, db, logger, core, clock: deps.clock });
  const audit = createAuditModule({ logger, core });
  const metrics = createMetricsModule({ config, db, logger, outbox, auth, clock });
  // Alerting's write checks run before subscriptions' (steps run in the order modules add them).
  const alerting = createAlertingModule({ config: config.alerting, db, logger, core, clock });
  const subscriptions = await createSubscriptionsModule({ config, db, logger, core, auth, alerting, metrics });
  const bulk = createBulkModule({ config, db, logger, core, auth, onAccess: audit.onAccess, clock, newId, crashAfterChunks: deps.bulkCrashAfterChunks });
  const erasure = createErasureModule({ db, core, bulk, audit, alerting, clock });
  const app = createHttpApp({ config, db, logger, clock, startedAt, core, auth, audit, subscriptions, alerting, metrics, bulk, erasure });

  // The outbox starts once every module is prepared and stops after the consumers' workers.
  const outboxParts: ModuleParts = { start: () => outbox.start(), stop: () => outbox.stop() };
  const parts: ModuleParts[] = [core, auth, audit, outboxParts, subscriptions, alerting, metrics, bulk, erasure];
  for (const p of parts) {
    for (const c of p.consumers ?? []) outbox.addConsumer(c);
    for (const c of p.finishers ?? []) outbox.addConsumer(c, 'last');
    for (const g of p.gauges ?? []) metrics.metrics.gauge(g);
  }

  let stopped = false;
  return {
    app,
    store: core.store,
    outbox,
    search: core.search,
    auth: auth.service,
    audit: audit.trail,
    counters: audit.counters,
    subscriptions: subscriptions.service,
    alerting: alerting.service,
    bulk: bulk.service,
    erasure: erasure.service,
    metrics: metrics.metrics,
    load: metrics.load,
    async start() {
      stopped = false;
      for (const p of parts) await p.prepare?.();
      for (const p of parts) await p.start?.();
    },
    attach: (server) => subscriptions.attach(server),
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const p of [...parts].reverse()) await p.stop?.();
    },
  };
}
