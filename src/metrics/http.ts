import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { timingSafeEqual } from 'node:crypto';
import { SERVED_TYPES } from '../resources/registry';
import type { Metrics } from './registry';

/** Operations reported by name; any other `$name` is "operation" (label values stay bounded). */
const OPERATIONS = new Set(['$export', '$export-status', '$export-file', '$lastn', '$validate', '$purge', '$expunge', '$everything', '$status', '$events', '$get-ws-binding-token']);
const TYPES = new Set(SERVED_TYPES);

/** The FHIR interaction of a request path below the base (CapabilityStatement codes where there is one). */
export function interactionOf(method: string, segments: string[]): { interaction: string; type: string } {
  const [first, second, third, fourth] = segments;
  const type = first && TYPES.has(first) ? first : '';
  const op = segments.find((s) => s.startsWith('$'));
  if (op) return { interaction: OPERATIONS.has(op) ? op : 'operation', type };
  const get = method === 'GET' || method === 'HEAD';
  if (segments.length === 0) return { interaction: get ? 'search-system' : 'batch', type };
  if (first === 'metadata') return { interaction: 'capabilities', type };
  if (first === '_history' || first === '_search') return { interaction: first === '_history' ? 'history-system' : 'search-system', type };
  if (!type) return { interaction: 'unknown', type };
  if (segments.length === 1) {
    const by: Record<string, string> = { GET: 'search-type', HEAD: 'search-type', POST: 'create', PUT: 'conditional-update', DELETE: 'conditional-delete' };
    return { interaction: by[method] ?? 'unknown', type };
  }
  if (second === '_search') return { interaction: 'search-type', type };
  if (second === '_history') return { interaction: 'history-type', type };
  if (segments.length === 2) {
    const by: Record<string, string> = { GET: 'read', HEAD: 'read', PUT: 'update', PATCH: 'patch', DELETE: 'delete' };
    return { interaction: by[method] ?? 'unknown', type };
  }
  if (third === '_history') return { interaction: fourth ? 'vread' : 'history-instance', type };
  return { interaction: 'unknown', type };
}

/** Counts and times every request below the FHIR base. */
export function requestMetrics(metrics: Metrics): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const start = process.hrtime.bigint();
    res.on('finish', () => {
      const segments = req.path.split('/').filter(Boolean);
      const { interaction, type } = interactionOf(req.method, segments);
      metrics.request(interaction, type, res.statusCode, Number(process.hrtime.bigint() - start) / 1e9);
    });
    next();
  };
}

/**
 * GET /metrics in the Prometheus text format, for a scraper holding METRICS_TOKEN. Without a
 * configured token the endpoint does not exist (404), so metrics are never public by accident.
 */
export function metricsEndpoint(metrics: Metrics, token: string | undefined): RequestHandler {
  const expected = token ? Buffer.from(`Bearer ${token}`) : undefined;
  return (req: Request, res: Response) => {
    if (!expected) {
      res.status(404).type('text/plain').send('Metrics are off: set METRICS_TOKEN to enable GET /metrics\n');
      return;
    }
    const given = Buffer.from(req.get('authorization') ?? '');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      res.status(401).setHeader('WWW-Authenticate', 'Bearer realm="metrics"');
      res.type('text/plain').send('A valid metrics token is required\n');
      return;
    }
    metrics
      .text()
      .then((text) => {
        // Set as is: Express's type() would rewrite the exposition format's content type.
        res.status(200).setHeader('Content-Type', metrics.contentType);
        res.end(text);
      })
      .catch(() => res.status(500).type('text/plain').send('metrics collection failed\n'));
  };
}
