import type { Request, Response, NextFunction, RequestHandler } from 'express';
import type { Resource } from 'fhir/r4';
import type { Logger } from 'pino';
import type { Principal } from '../auth/types';
import { Errors, FhirError } from '../errors';

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];
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
    readFilter: () => ({ _id: { $in: [] } }),
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
  onAccess?: (r: AccessRecord) => void;
}

/** Refuses JSON nested deeper than `max` without parsing it (a cheap scan, strings skipped). */
export function checkJsonDepth(text: string, max: number): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++; // backslash: skip the escaped character
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > max) throw Errors.badRequest(`JSON nesting deeper than ${max} levels is not accepted`, 'MSG_JSON_TOO_DEEP');
    } else if (c === 125 || c === 93) depth--;
  }
}

function mediaType(header: string | undefined): string | undefined {
  return header?.split(';')[0].trim().toLowerCase() || undefined;
}

/** Parses the raw body by its media type; 415 for types we do not take, 400 for bad JSON. */
function parseBody(req: Request, maxDepth: number): { body?: unknown; contentType?: string } {
  const raw = req.body as Buffer | undefined;
  const ct = mediaType(req.headers['content-type']);
  if (!raw || !Buffer.isBuffer(raw) || raw.length === 0) return { contentType: ct };
  if (ct === 'application/x-www-form-urlencoded') return { body: new URLSearchParams(raw.toString('utf8')), contentType: ct };
  if (!ct || !JSON_TYPES.has(ct)) {
    if (ct === 'application/fhir+xml' || ct === 'application/xml') {
      throw Errors.unsupportedMediaType('This server speaks FHIR JSON only; send application/fhir+json', 'MSG_UNSUPPORTED_MEDIA_TYPE');
    }
    throw Errors.unsupportedMediaType(`Unsupported Content-Type "${ct ?? 'none'}": send application/fhir+json`, 'MSG_UNSUPPORTED_MEDIA_TYPE');
  }
  const text = raw.toString('utf8');
  checkJsonDepth(text, maxDepth);
  try {
    return { body: JSON.parse(text) as unknown, contentType: ct };
  } catch (e) {
    throw Errors.badRequest(`The body is not valid JSON: ${(e as Error).message}`, 'MSG_JSON_INVALID');
  }
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
  const text = pretty ? JSON.stringify(body, null, 2) : JSON.stringify(body);
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
    const segments = req.path.split('/').filter(Boolean).map((s) => decodeURIComponent(s));
    let principal: Principal | undefined;
    let patients: string[] = [];
    const query = new URLSearchParams(req.originalUrl.includes('?') ? req.originalUrl.slice(req.originalUrl.indexOf('?') + 1) : '');
    const pretty = query.get('_pretty') === 'true';
    let type = FHIR_JSON;
    const head = req.method === 'HEAD';
    const finish = (status: number) =>
      opts.onAccess?.({ principal, method: req.method, segments, status, patients, ip: req.ip, requestId, at: started });
    (async () => {
      type = negotiate(query.get('_format') ?? undefined, req.headers.accept);
      // The CapabilityStatement is public (clients read it to discover how to authenticate).
      const isPublic = segments.length === 1 && segments[0] === 'metadata' && !req.headers.authorization;
      principal = (res.locals.principal as Principal | undefined) ?? (isPublic ? publicPrincipal : await opts.authenticate(req.headers.authorization));
      res.locals.principal = principal;
      const method = req.method as FhirRequest['method'];
      if (!METHODS.includes(method)) {
        throw new FhirError(405, 'not-supported', 'MSG_OP_NOT_ALLOWED', `Method ${req.method} is not supported`, undefined, { Allow: METHODS.join(', ') });
      }
      const { body, contentType } = method === 'GET' || method === 'HEAD' || method === 'DELETE' ? { body: undefined, contentType: undefined } : parseBody(req, opts.maxJsonDepth);
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
      patients = r.patients ?? [];
      send(res, r.status, r.body, r.headers, type, pretty, head);
      finish(r.status);
    })().catch((err: unknown) => {
      const fe = toFhirError(err);
      if (fe.status >= 500 && !(err instanceof FhirError)) {
        opts.logger.error({ err, requestId }, 'unexpected error while handling a request');
      }
      send(res, fe.status, outcomeOf(fe), fe.headers ?? {}, type, pretty, head);
      finish(fe.status);
    });
  };
}
