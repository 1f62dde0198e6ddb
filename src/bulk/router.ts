import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Principal } from '../auth/types';
import { Errors } from '../errors';
import { negotiate, type AccessRecord } from '../http/edge';
import { informationOutcome } from '../http/outcome';
import { NDJSON } from './kickoff';
import { paramsFromBody, paramsFromQuery, type BodyRules } from './parameters';
import type { BulkExport } from './service';

export interface BulkRouterDeps {
  bulk: BulkExport;
  baseUrl: string;
  authenticate: (authorization: string | undefined) => Promise<Principal>;
  sendError: (res: Response, err: unknown) => void;
  onAccess?: (r: AccessRecord) => void;
  /** How POST kick-off bodies are checked (the edge's limits). */
  body: BodyRules;
}

/** Seconds a client is asked to wait between polls. */
const RETRY_AFTER = '2';

type Route = { method: string; re: RegExp; run: (req: Request, res: Response, p: Principal, m: RegExpExecArray) => Promise<void> };

/**
 * The Bulk Data endpoints. They answer with Bulk Data's own media types (a JSON manifest,
 * NDJSON files streamed chunk by chunk), which the FHIR edge does not produce, so they sit
 * beside it; they authenticate and report to the audit trail the same way.
 */
export function bulkRouter(d: BulkRouterDeps): RequestHandler {
  const kickoff = (level: 'system' | 'patient' | 'group') => async (req: Request, res: Response, p: Principal, m: RegExpExecArray) => {
    negotiate(undefined, req.get('accept'));
    const full = new URL(`${d.baseUrl}${req.url}`);
    let params;
    let url = `${d.baseUrl}${req.url}`;
    if (req.method === 'POST') {
      // The IG's POST form: every parameter in the Parameters body; the manifest's request is the bare URL.
      if ([...full.searchParams.keys()].length > 0) throw Errors.badRequest('A POST kick-off takes its parameters in the Parameters body, not the query', 'MSG_BULK_PARAMETERS');
      params = paramsFromBody(req.body, req.get('content-type'), d.body);
      url = `${d.baseUrl}${req.path}`;
    } else params = paramsFromQuery(full.searchParams);
    const id = await d.bulk.kickoff({ level, params, prefer: req.get('prefer'), principal: p, groupId: m[1], url });
    res.status(202).setHeader('Content-Location', d.bulk.statusUrl(id));
    res.type('application/fhir+json; charset=utf-8').send(JSON.stringify(informationOutcome(`Export ${id} started`)));
  };
  const routes: Route[] = [
    ...['GET', 'POST'].flatMap((method) => [
      { method, re: /^\/\$export$/, run: kickoff('system') },
      { method, re: /^\/Patient\/\$export$/, run: kickoff('patient') },
      { method, re: /^\/Group\/([A-Za-z0-9\-.]{1,64})\/\$export$/, run: kickoff('group') },
    ]),
    {
      method: 'GET',
      re: /^\/\$export-status\/([^/]+)$/,
      run: async (_req, res, p, m) => {
        const s = await d.bulk.status(m[1], p);
        if (s.state === 'in-progress') {
          res.status(202).setHeader('X-Progress', s.progress.slice(0, 100));
          res.setHeader('Retry-After', RETRY_AFTER);
          res.end();
        } else if (s.state === 'failed') {
          throw Errors.internal(s.reason, 'MSG_BULK_FAILED');
        } else {
          res.setHeader('Expires', s.expiresAt.toUTCString());
          res.status(200).type('application/json; charset=utf-8').send(JSON.stringify(s.manifest));
        }
      },
    },
    {
      method: 'DELETE',
      re: /^\/\$export-status\/([^/]+)$/,
      run: async (_req, res, p, m) => {
        await d.bulk.cancel(m[1], p);
        res.status(202).type('application/fhir+json; charset=utf-8').send(JSON.stringify(informationOutcome(`Export ${m[1]} cancelled`)));
      },
    },
    {
      method: 'GET',
      re: /^\/\$export-file\/([^/]+)\/([a-z0-9]+)\.ndjson$/,
      run: async (_req, res, p, m) => {
        const chunks = await d.bulk.file(m[1], m[2], p);
        res.status(200).type(NDJSON);
        for await (const c of chunks) {
          if (!res.write(c)) await new Promise<void>((r) => res.once('drain', () => r()));
        }
        res.end();
      },
    },
  ];
  return (req: Request, res: Response, next: NextFunction) => {
    const route = routes.find((r) => r.re.test(req.path) && r.method === req.method);
    if (!route) return next();
    const m = route.re.exec(req.path)!;
    const at = new Date();
    let principal: Principal | undefined;
    const record = (status: number) =>
      d.onAccess?.({
        principal,
        method: req.method,
        segments: req.path.split('/').filter(Boolean),
        status,
        patients: principal?.patient ? [principal.patient] : [],
        ip: req.ip,
        requestId: String(res.getHeader('X-Request-Id') ?? ''),
        at,
      });
    (async () => {
      principal = (res.locals.principal as Principal | undefined) ?? (await d.authenticate(req.get('authorization')));
      await route.run(req, res, principal, m);
      record(res.statusCode);
    })().catch((e: unknown) => {
      if (res.headersSent) {
        res.destroy(e as Error);
        return;
      }
      d.sendError(res, e);
      record(res.statusCode);
    });
  };
}
