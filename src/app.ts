import type { Express } from 'express';
import type { AuditEvent } from 'fhir/r4';
import type { Db } from 'mongodb';
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import type { Logger } from 'pino';
import { AuditTrail, AuthService } from './auth';
import { anonymousPrincipal } from './auth/types';
import type { Config } from './config';
import { buildCapabilityStatement } from './http/capability';
import { fhirEdge, type AccessRecord } from './http/edge';
import { buildExpressApp } from './http/express-app';
import { createDispatcher } from './http/routes';
import type { Services } from './http/services';
import { accessAudit } from './http/audit-mapping';
import { CURSOR_SECRET_KEY, CursorCodec } from './resources/cursor';
import { SERVED_TYPES } from './resources/registry';
import { ResourceStore } from './resources/store';
import { prepareValidation, validateOperation, validateResource } from './resources/validation';
import { SearchService } from './search/service';
import { createStorage, type CrashPoint, type Outbox } from './storage';
import { SubscriptionService } from './subscriptions/service';
import { VERSION } from './version';

export interface VigilDeps {
  config: Config;
  db: Db;
  logger: Logger;
  clock?: () => Date;
  newId?: () => string;
  /** Fault injection for crash tests (see TransactionJournal). */
  crashPoint?: CrashPoint;
}

/** The assembled server: the Express app plus the services and workers behind it. */
export interface Vigil {
  app: Express;
  store: ResourceStore;
  outbox: Outbox;
  search: SearchService;
  auth?: AuthService;
  audit: AuditTrail;
  subscriptions: SubscriptionService;
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
  const storage = await createStorage({ db, logger, index: (r) => search!.indexOnce(r), crashPoint: deps.crashPoint });
  const cursors = new CursorCodec(config.cursorSecret ?? (await storage.secret(CURSOR_SECRET_KEY)));
  search = await SearchService.create({ db, config, types: [...SERVED_TYPES], executor: storage.executor, cursors });

  const auth = config.authEnabled ? await AuthService.create({ db, config, logger, criteria: search }) : undefined;
  let subscriptions: SubscriptionService | undefined;
  const outbox = storage.outbox;

  const store = new ResourceStore({
    repository: storage.repository,
    clock,
    newId,
    indexer: search,
    matcher: search,
    validate: (resource, o) => validateResource(resource, { ...o, allowedTypes: SERVED_TYPES }),
    beforeWrite: (ctx, r, prev) => (subscriptions ? subscriptions.beforeWrite(ctx, r, prev) : Promise.resolve(r)),
  });

  subscriptions = await SubscriptionService.create({
    db,
    config,
    logger,
    criteria: search,
    policyFor: (p) => (auth ? auth.policyFor(p.scopes, p.patient) : anonymousPrincipal.policy),
    writeResource: async (resource) => {
      const r = await store.update(resource.resourceType, resource.id!, resource, { principal: anonymousPrincipal });
      return r.resource ?? resource;
    },
  });
  const subs = subscriptions;
  outbox.addConsumer((events) => subs.onCommitted(events));

  // Audit events go through the one commit path, as an append-only trail.
  const audit = new AuditTrail({ logger, persist: (events: AuditEvent[]) => store.appendTrail('AuditEvent', events) });

  const services: Services = {
    config,
    store,
    search,
    cursors,
    capabilityStatement: () =>
      buildCapabilityStatement({
        baseUrl: config.baseUrl,
        version: VERSION,
        startedAt,
        searchParams: (t) => search.capabilitySearchParams(t),
        security: auth ? { ...auth.capabilitySecurity(), cors: config.corsOrigins.length > 0 } : undefined,
        subscriptionExtensions: subs.capability(),
      }),
    validateOperation: (resource, type, mode, id) =>
      validateOperation(resource, { expectedType: type, allowedTypes: SERVED_TYPES, mode: mode === 'update' ? 'update' : 'validate', id }),
  };
  const dispatch = createDispatcher(services, subs.operations(storage.repository));
  const onAccess = (r: AccessRecord) => {
    if (r.segments[0] !== 'metadata') audit.record(accessAudit(r));
  };
  const authenticate = auth ? (h: string | undefined) => auth.authenticate(h) : async () => anonymousPrincipal;
  const app = buildExpressApp({
    config,
    logger,
    ready: () => db.command({ ping: 1 }),
    routers: auth ? [auth.router()] : [],
    fhir: fhirEdge({ dispatch, authenticate, logger, maxJsonDepth: config.maxJsonDepth, onAccess }),
  });

  let stopped = false;
  return {
    app,
    store,
    outbox,
    search,
    auth,
    audit,
    subscriptions: subs,
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
      outbox.start();
      subs.start();
    },
    attach(server) {
      subs.attach(server);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await subs.stop();
      await outbox.stop();
      await audit.close();
      await auth?.close();
    },
  };
}
