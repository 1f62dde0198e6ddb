import { Errors, FhirError } from '../errors';
import { acknowledge } from './interactions/acknowledge';
import { typeDef } from '../resources/registry';
import { processBundle } from './interactions/bundle';
import { capabilities } from './interactions/capabilities';
import { compartmentSearch } from './interactions/compartment';
import { create } from './interactions/create';
import { expunge, purge } from './interactions/erasure';
import { conditionalRemove, remove } from './interactions/delete';
import { everything } from './interactions/everything';
import { history } from './interactions/history';
import { patch } from './interactions/patch';
import { read } from './interactions/read';
import { lastn, search } from './interactions/search';
import { conditionalUpdate, update } from './interactions/update';
import { validate } from './interactions/validate';
import { vread } from './interactions/vread';
import type { Services } from './services';
import type { FhirRequest, FhirResponse } from './types';

type Handler = (s: Services, req: FhirRequest, params: string[], dispatch: Dispatcher) => Promise<FhirResponse>;
export type Dispatcher = (req: FhirRequest) => Promise<FhirResponse>;

/** An operation another module contributes (e.g. Subscription/$status): routed, authenticated and audited like the rest. */
export interface ModuleRoute {
  method: 'GET|HEAD' | 'POST';
  path: string;
  handle(req: FhirRequest, params: string[]): Promise<FhirResponse>;
}

interface Route {
  method: FhirRequest['method'] | 'GET|HEAD';
  /** Path pattern: literal segments, ':x' captures a segment, '$op' literal operations. */
  path: string;
  /** A client write on `[0]`, the type: refused with 405 on types only the server writes. */
  write?: true;
  handler: Handler;
}

/**
 * The declared route table: method + path -> interaction. Order matters only where a literal
 * segment (metadata, _history, _search, $op) must win over ':id'.
 */
function routeTable(modules: readonly ModuleRoute[]): Route[] {
  return [
    // Literal operation paths first, so ':type/:id' never takes them.
    ...modules.map((m): Route => ({ method: m.method, path: m.path, handler: (_s, r, p) => m.handle(r, p) })),
    { method: 'GET|HEAD', path: 'metadata', handler: (s, r) => capabilities(s, r) },
    { method: 'POST', path: '', handler: (s, r, _p, d) => processBundle(s, r, d) },
    { method: 'GET|HEAD', path: '', handler: (s, r) => search(s, r) },
    { method: 'POST', path: '_search', handler: (s, r) => search(s, r) },
    { method: 'GET|HEAD', path: '_history', handler: (s, r) => history(s, r) },
    { method: 'GET|HEAD', path: 'Observation/$lastn', handler: (s, r) => lastn(s, r) },
    { method: 'POST', path: 'Flag/:id/$acknowledge', handler: (s, r, [id]) => acknowledge(s, r, id) },
    { method: 'POST', path: 'Patient/:id/$purge', handler: (s, r, [id]) => purge(s, r, id) },
    { method: 'POST', path: ':type/:id/$expunge', handler: (s, r, [t, id]) => expunge(s, r, t, id) },
    { method: 'GET|HEAD', path: 'Patient/$everything', handler: (s, r) => everything(s, r) },
    { method: 'GET|HEAD', path: 'Patient/:id/$everything', handler: (s, r, [id]) => everything(s, r, id) },
    { method: 'GET|HEAD', path: 'Patient/:id/:type', handler: (s, r, [id, t]) => compartmentSearch(s, r, id, t) },
    { method: 'POST', path: ':type/$validate', handler: (s, r, [t]) => validate(s, r, t) },
    { method: 'POST', path: ':type/:id/$validate', handler: (s, r, [t, id]) => validate(s, r, t, id) },
    { method: 'GET|HEAD', path: ':type/_history', handler: (s, r, [t]) => history(s, r, t) },
    { method: 'POST', path: ':type/_search', handler: (s, r, [t]) => search(s, r, t) },
    { method: 'GET|HEAD', path: ':type', handler: (s, r, [t]) => search(s, r, t) },
    { method: 'POST', path: ':type', write: true, handler: (s, r, [t]) => create(s, r, t) },
    { method: 'PUT', path: ':type', write: true, handler: (s, r, [t]) => conditionalUpdate(s, r, t) },
    { method: 'DELETE', path: ':type', write: true, handler: (s, r, [t]) => conditionalRemove(s, r, t) },
    { method: 'GET|HEAD', path: ':type/:id', handler: (s, r, [t, id]) => read(s, r, t, id) },
    { method: 'PUT', path: ':type/:id', write: true, handler: (s, r, [t, id]) => update(s, r, t, id) },
    { method: 'PATCH', path: ':type/:id', write: true, handler: (s, r, [t, id]) => patch(s, r, t, id) },
    { method: 'DELETE', path: ':type/:id', write: true, handler: (s, r, [t, id]) => remove(s, r, t, id) },
    { method: 'GET|HEAD', path: ':type/:id/_history', handler: (s, r, [t, id]) => history(s, r, t, id) },
    { method: 'GET|HEAD', path: ':type/:id/_history/:vid', handler: (s, r, [t, id, v]) => vread(s, r, t, id, v) },
  ];
}

function match(pattern: string, segments: string[]): string[] | undefined {
  const parts = pattern ? pattern.split('/') : [];
  if (parts.length !== segments.length) return undefined;
  const params: string[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i];
    const s = segments[i];
    if (p.startsWith(':')) {
      if (s.startsWith('$') || s.startsWith('_')) return undefined;
      // A type is capitalised: `metadata` is never taken for a type by ':type' routes.
      if (p === ':type' && !/^[A-Z][A-Za-z]*$/.test(s)) return undefined;
      params.push(s);
    } else if (p !== s) return undefined;
  }
  return params;
}

function methodMatches(route: Route, method: FhirRequest['method']): boolean {
  return route.method === method || (route.method === 'GET|HEAD' && (method === 'GET' || method === 'HEAD'));
}

/** Builds the dispatcher: the one entry point for HTTP requests and Bundle entries alike. */
export function createDispatcher(s: Services, modules: readonly ModuleRoute[] = []): Dispatcher {
  const routes = routeTable(modules);
  const dispatch: Dispatcher = async (req) => {
    const allowed = new Set<string>();
    for (const r of routes) {
      const params = match(r.path, req.segments);
      if (!params) continue;
      if (methodMatches(r, req.method)) {
        if (r.write && typeDef(params[0])?.clientWritable === false) {
          throw new FhirError(405, 'not-supported', 'MSG_OP_NOT_ALLOWED', `${params[0]} resources are written by the server only`, undefined, { Allow: 'GET, HEAD' });
        }
        return r.handler(s, req, params, dispatch);
      }
      for (const m of r.method.split('|')) allowed.add(m);
    }
    const path = req.segments.join('/');
    if (allowed.size > 0) {
      // RFC 9110 section 15.5.6: a 405 lists the methods the resource does support.
      const allow = [...allowed].join(', ');
      throw new FhirError(405, 'not-supported', 'MSG_OP_NOT_ALLOWED', `${req.method} is not allowed on /${path} (allowed: ${allow})`, undefined, { Allow: allow });
    }
    const op = req.segments.find((x) => x.startsWith('$'));
    if (op) throw Errors.notFound(`Operation ${op} is not supported on /${path}`, 'MSG_OP_NOT_SUPPORTED');
    throw Errors.notFound(`No FHIR interaction at /${path}`, 'MSG_NO_ROUTE');
  };
  return dispatch;
}
