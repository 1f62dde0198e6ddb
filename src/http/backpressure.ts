import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Principal } from '../auth/types';
import { RateLimiter } from '../auth/rate-limit';
import { Errors, FhirError } from '../errors';
import type { LoadMonitor } from '../metrics/load';

export interface BackpressureDeps {
  load: LoadMonitor;
  maxOutboxLagMs: number;
  maxDbLatencyMs: number;
  retryAfterSeconds: number;
  /** Authenticates for the per-client check; the principal is kept for the edge (no second check). */
  authenticate: (authorization: string | undefined) => Promise<Principal>;
  /** The client's registered write rate (requests per second), if it has one. */
  rateOf: (clientId: string) => Promise<number | undefined>;
  clock: () => Date;
  sendError: (res: Response, err: unknown) => void;
  /** Counts refusals for the metrics. */
  onRefused?: (status: 429 | 503, reason: string) => void;
}

/** Reads (GET, HEAD, POST _search) and export control (cancelling a job) always pass: only writes are held back. */
function isWrite(req: Request): boolean {
  if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') return false;
  if (/\/\$export-status\//.test(req.path)) return false;
  return !(req.method === 'POST' && /\/_search$/.test(req.path));
}

function refusal(status: 429 | 503, message: string, code: string, retryAfter: number): FhirError {
  const base = status === 429 ? Errors.tooManyRequests(message, code) : Errors.unavailable(message, code);
  return new FhirError(base.status, base.code, base.messageCode, base.message, undefined, { 'Retry-After': String(retryAfter) });
}

/**
 * Back-pressure for device fleets, ahead of any work on a write: 503 while the whole server is
 * behind (outbox lag or database write latency over their limits), 429 for a client over the
 * write rate of its registration. Both carry Retry-After and an OperationOutcome; nothing was
 * done, so the client resends (with If-None-Exist on Observation.identifier, see README).
 */
export function backpressure(d: BackpressureDeps): RequestHandler {
  const limiters = new Map<number, RateLimiter>();
  const now = () => d.clock().getTime();
  const limiterFor = (rate: number) => {
    let l = limiters.get(rate);
    if (!l) limiters.set(rate, (l = new RateLimiter(Math.max(1, Math.ceil(rate)), rate, now)));
    return l;
  };
  return (req: Request, res: Response, next: NextFunction) => {
    if (!isWrite(req)) return next();
    if (d.maxOutboxLagMs > 0 && d.load.pressureLagMs > d.maxOutboxLagMs) {
      d.onRefused?.(503, 'outbox-lag');
      return d.sendError(res, refusal(503, 'The server is behind on processing writes; resend after Retry-After', 'MSG_OVERLOADED_OUTBOX', d.retryAfterSeconds));
    }
    if (d.maxDbLatencyMs > 0 && d.load.dbLatencyMs > d.maxDbLatencyMs) {
      d.onRefused?.(503, 'db-latency');
      return d.sendError(res, refusal(503, 'The database is slow to accept writes; resend after Retry-After', 'MSG_OVERLOADED_DATABASE', d.retryAfterSeconds));
    }
    (async () => {
      let principal: Principal;
      try {
        principal = (res.locals.principal as Principal | undefined) ?? (await d.authenticate(req.get('authorization')));
      } catch {
        return next(); // the edge answers the authentication failure
      }
      res.locals.principal = principal;
      const rate = await d.rateOf(principal.clientId);
      if (rate !== undefined) {
        const wait = limiterFor(rate).take(principal.clientId);
        if (wait > 0) {
          d.onRefused?.(429, 'client-rate');
          return d.sendError(res, refusal(429, `Client ${principal.clientId} is over its write rate of ${rate}/s; resend after Retry-After`, 'MSG_THROTTLED', wait));
        }
      }
      next();
    })().catch((e: unknown) => d.sendError(res, e));
  };
}
