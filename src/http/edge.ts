import type { Request, Response, NextFunction, RequestHandler } from 'express';
import type { Resource } from 'fhir/r4';
import type { Logger } from 'pino';
import type { Principal } from '../auth/types';
import { Errors, FhirError } from '../errors';
import { parseJson, stringifyJson } from '../json';
import type { Limits } from '../config';
import { runWithDeadline } from '../deadline';
import { decodeUtf8, pathSegments, strictQuery } from '../strict-text';
import { checkFormSize, checkJsonBody, checkJsonDepth } from './limits';
import { informationOutcome, outcomeOf, toFhirError } from './outcome';
import type { Dispatcher } from './routes';
import type { FhirRequest, FhirResponse } from './types';

export const FHIR_JSON = 'application/fhir+json';

/** The caller of public endpoints (metadata): may do nothing else. */
const publicPrincipal: Principal = {
  clientId: 'anonymous',
  scopes: [],
  policy: {
    assertAllowed: (_i, type) => {
      throw Errors.forbidden(`Anonymous callers may not access ${type}`, 'MSG_FORBIDDEN');
    },
    readCond: () => ({ k: 'const', v: false }),
    canRead: () => false,
    canWrite: () => false,
  },
};
const JSON_TYPES = new Set(['application/fhir+json', 'application/json', 'application/json-patch+json']);

/** What the edge reports to the audit trail for every request. */
export interface AccessRecord {
  principal?: Principal;
  method: string;
  segments: string[];
  status: number;
  patients: string[];
  ip?: string;
  requestId: string;
  at: Date;
}

export interface EdgeOptions {
  dispatch: Dispatcher;
  authenticate: (authorization: string | undefined) => Promise<Principal>;
  logger: Logger;
  maxJsonDepth: number;
  limits: Limits;
  /** The server clock in ms (the deadline's; injectable for tests). */
  now?: () => number;
  onAccess?: (r: AccessRecord) => void;
}

/** The methods of the FHIR API (the Allow header of 405 answers). */
export const FHIR_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
export const ALLOW = FHIR_METHODS.join(', ');
/**
 * Any other method, known to HTTP (OPTIONS, TRACE, WebDAV's) or not: 405 with Allow. (501 would
 * be as correct for a method nobody knows, but a client's input never earns a 5xx here.)
 */
function refuseMethod(method: string): FhirError {
  return new FhirError(405, 'not-supported', 'MSG_OP_NOT_ALLOWED', `Method ${method.slice(0, 32)} is not supported by the FHIR API`, undefined, { Allow: ALLOW });
}

function mediaType(header: string | undefined): string | undefined {
  return header?.split(';')[0].trim().toLowerCase() || undefined;
}

/** Parses the raw body by its media type; 415 for types we do not take, 400 for bad text or JSON. */
function parseBody(req: Request, opts: EdgeOptions): { body?: unknown; contentType?: string } {
  const raw = req.body as Buffer | undefined;
  const ct = mediaType(req.headers['content-type']);
  if (!raw || !Buffer.isBuffer(raw) || raw.length === 0) return { contentType: ct };
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers['content-type'] ?? '')?.[1].toLowerCase();
  if (charset && charset !== 'utf-8' && charset !== 'utf8') {
    throw Errors.unsupportedMediaType(`Bodies are UTF-8 only, not charset=${charset.slice(0, 32)}`, 'MSG_UNSUPPORTED_MEDIA_TYPE');
  }
  if (ct === 'application/x-www-form-urlencoded') {
    checkFormSize(raw.length, opts.limits);
    return { body: strictQuery(decodeUtf8(raw, 'The form body')), contentType: ct };
  }
  if (!ct || !JSON_TYPES.has(ct)) {
    if (ct === 'application/fhir+xml' || ct === 'application/xml') {
      throw Errors.unsupportedMediaType('This server speaks FHIR JSON only; send application/fhir+json', 'MSG_UNSUPPORTED_MEDIA_TYPE');
    }
    throw Errors.unsupportedMediaType(`Unsupported Content-Type "${ct ?? 'none'}": send application/fhir+json`, 'MSG_UNSUPPORTED_MEDIA_TYPE');
  }
  const text = decodeUtf8(raw);
  checkJsonDepth(text, opts.maxJsonDepth);
  // Decimals keep their text; bad JSON, prototype keys, duplicates and lone surrogates are 400s.
  const body = parseJson(text);
  checkJsonBody(body, opts.limits);
  return { body, contentType: ct };
}

/** The response media type from _format or Accept; 406 when only XML or other types are acceptable. */
export function negotiate(format: string | undefined, accept: string | undefined): string {
  if (format) {
    const f = format.toLowerCase();
    if (['json', 'application/json', 'application/fhir+json'].includes(f)) return f === 'application/json' ? 'application/json' : FHIR_JSON;
    throw Errors.notAcceptable(`_format "${format}" is not supported; this server speaks FHIR JSON`, 'MSG_NOT_ACCEPTABLE');
  }
  if (!accept) return FHIR_JSON;
  const types = accept.split(',').map((p) => {
    const [t, ...params] = p.split(';').map((x) => x.trim().toLowerCase());
    const q = params.find((x) => x.startsWith('q='));
    return { t, q: q ? Number(q.slice(2)) : 1 };
  });
  for (const { t, q } of types.sort((a, b) => b.q - a.q)) {
    if (q <= 0) continue;
    if (t === FHIR_JSON || t === 'application/*' || t === '*/*' || t === 'json') return FHIR_JSON;
    if (t === 'application/json') return 'application/json';
  }
  throw Errors.notAcceptable(`None of the acceptable types (${accept}) can be produced; this server speaks application/fhir+json`, 'MSG_NOT_ACCEPTABLE');
}

function send(res: Response, status: number, body: Resource | undefined, headers: Record<string, string>, type: string, pretty: boolean, head: boolean): void {
  res.status(status);
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  if (body === undefined || status === 204 || status === 304) {
    res.end();
    return;
  }
  const text = stringifyJson(body, pretty);
  res.setHeader('Content-Type', `${type}; charset=utf-8`);
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(head ? undefined : text);
}

/** Applies Prefer: return=minimal|representation|OperationOutcome to a write response. */
function applyPrefer(r: FhirResponse, prefer: string | undefined): FhirResponse {
  if (!r.isWrite) return r;
  const m = /return\s*=\s*(minimal|representation|operationoutcome)/i.exec(prefer ?? '');
  const mode = m?.[1].toLowerCase();
  if (mode === 'minimal') return { ...r, body: undefined };
  if (mode === 'operationoutcome') {
    return { ...r, body: informationOutcome(`${r.status === 201 ? 'Created' : 'Done'}: ${r.headers.Location ?? ''}`.trim()) };
  }
  return r;
}

/**
 * The HTTP edge of the FHIR API: turns an Express request into a FhirRequest (authenticated,
 * parsed, negotiated), dispatches it, and writes the FhirResponse or the OperationOutcome.
 */
export function fhirEdge(opts: EdgeOptions): RequestHandler {
  return (req: Request, res: Response, _next: NextFunction) => {
    const requestId = String(res.getHeader('X-Request-Id') ?? '');
    const started = new Date();
    let segments: string[] = [];
    let principal: Principal | undefined;
    let patients: string[] = [];
    const rawQuery = req.originalUrl.includes('?') ? req.originalUrl.slice(req.originalUrl.indexOf('?') + 1) : '';
    let pretty = false;
    let type = FHIR_JSON;
    const head = req.method === 'HEAD';
    let answered = false;
    const finish = (status: number) =>
      opts.onAccess?.({ principal, method: req.method, segments, status, patients, ip: req.ip, requestId, at: started });
    const fail = (err: unknown) => {
      if (answered) return;
      answered = true;
      const fe = toFhirError(err);
      if (fe.status >= 500 && !(err instanceof FhirError)) {
        opts.logger.error({ err, requestId }, 'unexpected error while handling a request');
      }
      send(res, fe.status, outcomeOf(fe), fe.headers ?? {}, type, pretty, head);
      finish(fe.status);
    };
    const handle = async () => {
      const method = req.method as FhirRequest['method'];
      if (!(FHIR_METHODS as readonly string[]).includes(method)) throw refuseMethod(req.method);
      segments = pathSegments(req.path);
      const query = strictQuery(rawQuery);
      pretty = query.get('_pretty') === 'true';
      type = negotiate(query.get('_format') ?? undefined, req.headers.accept);
      // The CapabilityStatement is public (clients read it to discover how to authenticate).
      const isPublic = segments.length === 1 && segments[0] === 'metadata' && !req.headers.authorization;
      principal = (res.locals.principal as Principal | undefined) ?? (isPublic ? publicPrincipal : await opts.authenticate(req.headers.authorization));
      res.locals.principal = principal;
      const { body, contentType } = method === 'GET' || method === 'HEAD' || method === 'DELETE' ? { body: undefined, contentType: undefined } : parseBody(req, opts);
      query.delete('_format');
      query.delete('_pretty');
      const fr: FhirRequest = {
        method,
        segments,
        query,
        headers: req.headers as Record<string, string | undefined>,
        body,
        contentType,
        principal,
        requestId,
        ip: req.ip,
      };
      const r = applyPrefer(await opts.dispatch(fr), req.get('prefer'));
      if (answered) return; // the deadline answered first (reads only; see below)
      answered = true;
      patients = r.patients ?? [];
      send(res, r.status, r.body, r.headers, type, pretty, head);
      finish(r.status);
    };
    const ms = opts.limits.requestDeadlineMs;
    const work = runWithDeadline(ms, handle, opts.now);
    work.catch(fail);
    // Reads are abandoned at their deadline (they change nothing); writes stop cooperatively at
    // their next check, before their commit point, so their answer always tells the truth.
    if (req.method === 'GET' || req.method === 'HEAD') {
      const timer = setTimeout(() => fail(Errors.deadline(`The request took longer than its deadline of ${ms} ms (REQUEST_DEADLINE_MS) and was stopped`)), ms);
      timer.unref();
      void work.finally(() => clearTimeout(timer)).catch(() => undefined);
    }
  };
}
