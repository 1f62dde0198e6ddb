import express, { type Express, type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import helmet from 'helmet';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../config';
import { Errors, isFhirError } from '../errors';
import { outcomeOf, toFhirError } from './outcome';
import { stringifyJson } from '../json';

export interface ExpressAppOptions {
  config: Config;
  logger: Logger;
  /** Resolves when the database answers (`/readyz`). */
  ready(): Promise<unknown>;
  /** Routers outside the FHIR base (the authorization server's endpoints). */
  routers: RequestHandler[];
  /** GET /metrics (it guards itself with its own token). */
  metrics?: RequestHandler;
  /** Under the FHIR base, before the body is read (request metrics, back-pressure). */
  beforeBody?: RequestHandler[];
  /** Under the FHIR base, after the body and before the edge (Bulk Data's own endpoints). */
  besideFhir?: RequestHandler[];
  /** The FHIR edge, mounted at the base path of BASE_URL. */
  fhir: RequestHandler;
}

/**
 * The Express application around the FHIR edge: security headers, request ids, the request log,
 * CORS, health endpoints, the raw body under the FHIR base, and errors raised before the edge.
 */
export function buildExpressApp(o: ExpressAppOptions): Express {
  const { config, logger } = o;
  const basePath = new URL(config.baseUrl).pathname.replace(/\/+$/, '');
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
    o.ready()
      .then(() => res.json({ status: 'ready' }))
      .catch(() => res.status(503).json({ status: 'database unreachable' }));
  });
  if (o.metrics) app.get('/metrics', o.metrics);
  for (const r of o.routers) app.use(r);

  for (const h of o.beforeBody ?? []) app.use(basePath, h);
  app.use(basePath, express.raw({ type: () => true, limit: config.bodyLimitBytes }));
  for (const h of o.besideFhir ?? []) app.use(basePath, h);
  app.use(basePath, o.fhir);
  app.use((req, res) => sendError(res, Errors.notFound(`Nothing at ${req.path}; the FHIR API is at ${basePath}`, 'MSG_NO_ROUTE'), logger));
  // Body-parser failures (size, encoding) and anything else thrown before the FHIR edge.
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (isFhirError(err)) return sendError(res, err, logger);
    const e = err as { type?: string; status?: number };
    if (e.type === 'entity.too.large') {
      return sendError(res, Errors.tooLarge(`The body exceeds the limit of ${config.bodyLimitBytes} bytes (BODY_LIMIT)`, 'MSG_TOO_LARGE'), logger);
    }
    if (e.status === 415) {
      return sendError(res, Errors.unsupportedMediaType('The body\'s Content-Encoding or charset is not supported: send UTF-8, identity, gzip or deflate', 'MSG_ENCODING_UNSUPPORTED'), logger);
    }
    if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
      return sendError(res, Errors.badRequest('The request body could not be read', 'MSG_BODY_INVALID'), logger);
    }
    sendError(res, err, logger);
  });
  return app;
}

/** Writes an error as an OperationOutcome (the one mapping, for handlers outside the FHIR edge). */
export function sendError(res: Response, err: unknown, logger: Logger): void {
  const fe = toFhirError(err);
  if (fe.status >= 500) logger.error({ err, requestId: res.getHeader('X-Request-Id') }, 'unexpected error');
  res.status(fe.status);
  for (const [k, v] of Object.entries(fe.headers ?? {})) res.setHeader(k, v);
  res.type('application/fhir+json; charset=utf-8').send(stringifyJson(outcomeOf(fe)));
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
