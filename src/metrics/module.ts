import type { RequestHandler } from 'express';
import type { Db } from 'mongodb';
import type { Logger } from 'pino';
import type { AuthModule } from '../auth/module';
import type { Config } from '../config';
import { backpressure } from '../http/backpressure';
import { sendError } from '../http/express-app';
import type { ModuleParts } from '../module';
import type { Outbox } from '../storage';
import { metricsEndpoint, requestMetrics } from './http';
import { LoadMonitor } from './load';
import { Metrics } from './registry';

export interface MetricsModuleDeps {
  config: Config;
  db: Db;
  logger: Logger;
  outbox: Outbox;
  auth: AuthModule;
  clock: () => Date;
}

/** Prometheus metrics, the load monitor and the back-pressure it feeds. */
export interface MetricsModule extends ModuleParts {
  metrics: Metrics;
  load: LoadMonitor;
  /** GET /metrics (guarded by its own token). */
  endpoint: RequestHandler;
  /** Under the FHIR base, ahead of the body: counting, then back-pressure (refuses before any work). */
  beforeBody: RequestHandler[];
}

export function createMetricsModule(deps: MetricsModuleDeps): MetricsModule {
  const { config, db, logger, outbox, auth, clock } = deps;
  const metrics = new Metrics();
  const load = new LoadMonitor(() => outbox.oldestPendingAt());
  metrics.watchDatabase(db.client, (ms, started, id) => load.command(ms, started, id));
  return {
    metrics,
    load,
    endpoint: metricsEndpoint(metrics, config.metricsToken),
    beforeBody: [
      requestMetrics(metrics),
      backpressure({
        load,
        maxOutboxLagMs: config.maxOutboxLagMs,
        maxDbLatencyMs: config.maxDbLatencyMs,
        retryAfterSeconds: config.backpressureRetryAfterSeconds,
        authenticate: auth.authenticate,
        rateOf: auth.rateOf,
        clock,
        sendError: (res, e) => sendError(res, e, logger),
        onRefused: (status, reason) => metrics.refused(status, reason),
      }),
    ],
    consumers: [async (events) => metrics.committed(events)],
    gauges: [
      { name: 'vigil_outbox_lag_seconds', help: 'Age of the oldest committed version whose post-commit work is pending', collect: () => [{ value: load.outboxLagMs / 1000 }] },
      { name: 'vigil_db_write_latency_seconds', help: 'Recent database write latency as back-pressure sees it', collect: () => [{ value: load.dbLatencyMs / 1000 }] },
    ],
    start: () => load.start(),
    stop: () => load.stop(),
  };
}
