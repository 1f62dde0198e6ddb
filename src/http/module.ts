import type { Express } from 'express';
import type { Db } from 'mongodb';
import type { Logger } from 'pino';
import type { AlertingModule } from '../alerting/module';
import type { AuthModule } from '../auth/module';
import type { BulkModule } from '../bulk/module';
import type { Config } from '../config';
import type { ErasureModule } from '../erasure/module';
import type { MetricsModule } from '../metrics/module';
import type { ResourcesModule } from '../resources/module';
import { SERVED_TYPES } from '../resources/registry';
import { validateOperation } from '../resources/validation';
import type { SubscriptionsModule } from '../subscriptions/module';
import { VERSION } from '../version';
import type { AuditModule } from './audit-module';
import { buildCapabilityStatement } from './capability';
import { fhirEdge } from './edge';
import { buildExpressApp } from './express-app';
import { createDispatcher } from './routes';
import type { Services } from './services';

export interface HttpDeps {
  config: Config;
  db: Db;
  logger: Logger;
  clock: () => Date;
  startedAt: Date;
  core: ResourcesModule;
  auth: AuthModule;
  audit: AuditModule;
  subscriptions: SubscriptionsModule;
  alerting: AlertingModule;
  metrics: MetricsModule;
  bulk: BulkModule;
  erasure: ErasureModule;
}

/** The Express app: the route table over the modules' services, and what sits beside the FHIR edge. */
export function createHttpApp(d: HttpDeps): Express {
  const { config, logger, core, auth } = d;
  const subs = d.subscriptions.service;
  const services: Services = {
    config,
    store: core.store,
    search: core.search,
    cursors: core.cursors,
    alerts: d.alerting.port,
    erasure: d.erasure.service,
    capabilityStatement: () => {
      const security = auth.security();
      return buildCapabilityStatement({
        baseUrl: config.baseUrl,
        version: VERSION,
        startedAt: d.startedAt,
        searchParams: (t) => core.search.capabilitySearchParams(t),
        security: security ? { ...security, cors: config.corsOrigins.length > 0 } : undefined,
        subscriptionExtensions: subs.capability(),
        bulkExport: true,
      });
    },
    validateOperation: (resource, type, mode, id) =>
      validateOperation(resource, { expectedType: type, allowedTypes: SERVED_TYPES, mode: mode === 'update' ? 'update' : 'validate', id }),
  };
  const dispatch = createDispatcher(services, subs.operations(core.storage.repository));
  return buildExpressApp({
    config,
    logger,
    ready: () => d.db.command({ ping: 1 }),
    metrics: d.metrics.endpoint,
    routers: auth.routers,
    beforeBody: d.metrics.beforeBody,
    besideFhir: [d.bulk.router],
    fhir: fhirEdge({
      dispatch,
      authenticate: auth.authenticate,
      logger,
      maxJsonDepth: config.maxJsonDepth,
      limits: config.limits,
      now: () => d.clock().getTime(),
      onAccess: (r) => d.audit.onAccess(r),
    }),
  });
}
