import type { RequestHandler } from 'express';
import type { Db } from 'mongodb';
import type { Logger } from 'pino';
import type { AuthModule } from '../auth/module';
import type { Config } from '../config';
import type { AccessRecord } from '../http/edge';
import { sendError } from '../http/express-app';
import type { ModuleParts } from '../module';
import type { ResourcesModule } from '../resources/module';
import { SERVED_TYPES } from '../resources/registry';
import { bulkRouter } from './router';
import { BulkExport } from './service';

export interface BulkModuleDeps {
  config: Config;
  db: Db;
  logger: Logger;
  core: ResourcesModule;
  auth: AuthModule;
  onAccess(r: AccessRecord): void;
  clock: () => Date;
  newId: () => string;
  /** Fault injection for the export restart test: the process kills itself after this many chunks. */
  crashAfterChunks?: number;
}

export interface BulkModule extends ModuleParts {
  service: BulkExport;
  /** Bulk Data answers with its own media types (manifest, NDJSON), beside the FHIR edge. */
  router: RequestHandler;
}

/** Bulk Data export: its endpoints beside the FHIR edge and its export worker. */
export function createBulkModule(deps: BulkModuleDeps): BulkModule {
  const { config, logger, auth } = deps;
  const bulk = new BulkExport({
    db: deps.db,
    repository: deps.core.storage.repository,
    baseUrl: config.baseUrl,
    served: SERVED_TYPES,
    filters: deps.core.search,
    policyFor: (p) => auth.policyFor(p),
    logger,
    clock: deps.clock,
    newId: deps.newId,
    ttlSeconds: config.bulkExportTtlSeconds,
    leaseMs: config.bulkLeaseMs,
    chunkResources: config.bulkChunkResources,
    crashAfterChunks: deps.crashAfterChunks,
  });
  return {
    service: bulk,
    router: bulkRouter({
      bulk,
      baseUrl: config.baseUrl,
      authenticate: auth.authenticate,
      sendError: (res, e) => sendError(res, e, logger),
      onAccess: deps.onAccess,
      body: { maxJsonDepth: config.maxJsonDepth, limits: config.limits },
    }),
    start: () => bulk.start(),
    stop: () => bulk.stop(),
  };
}
