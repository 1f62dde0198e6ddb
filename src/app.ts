import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import type { AuditEvent, Resource } from 'fhir/r4';
import helmet from 'helmet';
import type { Db } from 'mongodb';
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import type { Logger } from 'pino';
import { AuditTrail, AuthService } from './auth';
import { anonymousPrincipal } from './auth/types';
import type { Config } from './config';
import { Errors, isFhirError } from './errors';
import { buildCapabilityStatement } from './http/capability';
import { fhirEdge, type AccessRecord } from './http/edge';
import { outcomeOf, toFhirError } from './http/outcome';
import { createDispatcher } from './http/routes';
import type { Services } from './http/services';
import { accessAudit } from './http/audit-mapping';
import { CURSOR_SECRET_KEY, CursorCodec } from './resources/cursor';
import { SERVED_TYPES } from './resources/registry';
import { ResourceStore } from './resources/store';
import { prepareValidation, validateOperation, validateResource } from './resources/validation';
import { SearchService } from './search/service';
import { createStorage, type CrashPoint, type Outbox, type PreparedWrite } from './storage';
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
    // SubscriptionTopic is an R5 resource (Backport IG) that only the server writes: the R4
    // schema has no definition to check it against.
    validate: (resource, o) =>
      o.expectedType === 'SubscriptionTopic' ? (resource as Resource) : validateResource(resource, { ...o, allowedTypes: SERVED_TYPES }),
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

  const audit = new AuditTrail({
    logger,
    persist: async (events: AuditEvent[]) => {
      // Audit events are written in one batch through the one commit path, as an append-only trail.
      const now = clock();
      const ctx = { principal: anonymousPrincipal, internal: true };
      const writes: PreparedWrite[] = await Promise.all(events.map((e) => store.prepare('AuditEvent', newId(), e, null, 'POST', ctx, now)));
      await store.commit(writes, { mode: 'trail' });
    },
  });

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
  const basePath = new URL(config.baseUrl).pathname.replace(/\/+$/, '');
  const authenticate = auth
    ? (h: string | undefined) => auth.authenticate(h)
    : async () => anonymousPrincipal;

  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', 'loopback');
  app.use(
    helmet({
      contentSecurityPolicy: { directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
      hsts: Boolean(config.tlsCertFile),
    }),
  );
  app.use((req, res, next) => {
    const given = req.get('x-request-id');
    res.setHeader('X-Request-Id', given && /^[\w\-.]{1,64}$/.test(given) ? given : randomUUID());
    next();
  });
  app.use(requestLog(logger));
  if (config.corsOrigins.length) app.use(cors(config.corsOrigins));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', (_req, res) => {
    db.command({ ping: 1 })
      .then(() => res.json({ status: 'ready' }))
      .catch(() => res.status(503).json({ status: 'database unreachable' }));
  });
  if (auth) app.use(auth.router());

  app.use(basePath, express.raw({ type: () => true, limit: config.bodyLimitBytes }));
  const onAccess = (r: AccessRecord) => {
    if (r.segments[0] !== 'metadata') audit.record(accessAudit(r));
  };
  app.use(basePath, fhirEdge({ dispatch, authenticate, logger, maxJsonDepth: config.maxJsonDepth, onAccess }));
  app.use((req, res) => sendError(res, Errors.notFound(`Nothing at ${req.path}; the FHIR API is at ${basePath}`, 'MSG_NO_ROUTE'), logger));
  // Body-parser failures (size, encoding) and anything else thrown before the FHIR edge.
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (isFhirError(err)) return sendError(res, err, logger);
    const e = err as { type?: string; status?: number };
    if (e.type === 'entity.too.large') {
      return sendError(res, Errors.tooLarge(`The body exceeds the limit of ${config.bodyLimitBytes} bytes`, 'MSG_TOO_LARGE'), logger);
    }
    if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
      return sendError(res, Errors.badRequest('The request body could not be read', 'MSG_BODY_INVALID'), logger);
    }
    sendError(res, err, logger);
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

function sendError(res: Response, err: unknown, logger: Logger): void {
  const fe = toFhirError(err);
  if (fe.status >= 500) logger.error({ err }, 'unexpected error');
  res.status(fe.status);
  for (const [k, v] of Object.entries(fe.headers ?? {})) res.setHeader(k, v);
  res.type('application/fhir+json; charset=utf-8').send(JSON.stringify(outcomeOf(fe)));
}

/** Request log lines: method, path, status, duration, request id. Never queries, bodies or tokens (PHI). */
function requestLog(logger: Logger) {
  return (req: Request, res: Response, next: NextFunction) => {
    const start = process.hrtime.bigint();
    res.on('finish', () => {
      logger.info(
        {
          requestId: res.getHeader('X-Request-Id'),
          method: req.method,
          // Ids and versions are left out: an id can itself identify a patient.
          path: req.path.replace(/\/([A-Z][A-Za-z]+)\/[^/$_][^/]*/g, '/$1/:id').replace(/\/_history\/[^/]+/, '/_history/:vid'),
          status: res.statusCode,
          ms: Number(process.hrtime.bigint() - start) / 1e6,
        },
        'request',
      );
    });
    next();
  };
}

function cors(origins: string[]) {
  const any = origins.includes('*');
  return (req: Request, res: Response, next: NextFunction) => {
    const origin = req.get('origin');
    if (origin && (any || origins.includes(origin))) {
      res.setHeader('Access-Control-Allow-Origin', any ? '*' : origin);
      res.setHeader('Vary', 'Origin');
      res.setHeader('Access-Control-Expose-Headers', 'ETag, Location, Last-Modified, X-Request-Id');
      if (req.method === 'OPTIONS') {
        res.setHeader('Access-Control-Allow-Methods', 'GET, HEAD, POST, PUT, PATCH, DELETE');
        res.setHeader(
          'Access-Control-Allow-Headers',
          'Authorization, Content-Type, Accept, If-Match, If-None-Exist, If-None-Match, Prefer, X-Request-Id',
        );
        res.setHeader('Access-Control-Max-Age', '600');
        res.status(204).end();
        return;
      }
    }
    next();
  };
}
