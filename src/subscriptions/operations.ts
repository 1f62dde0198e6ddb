import { randomBytes } from 'node:crypto';
import type { Bundle, BundleEntry, Parameters, Resource, Subscription } from 'fhir/r4';
import type { Principal } from '../auth/types';
import { Errors } from '../errors';
import type { FhirRequest, FhirResponse } from '../http/types';
import type { ResourceRepository } from '../storage';
import { notificationBundle, statusParameters, type EventForBundle } from './bundle';
import type { StateDoc, SubscriptionState } from '../storage/state/subscriptions';
import type { PayloadContent, SubscriptionStatusCode } from './constants';
import type { NotificationLog } from './numbering';

export interface OperationsContext {
  repository: ResourceRepository;
  state: SubscriptionState;
  log: NotificationLog;
  baseUrl: string;
  websocketUrl: string;
  tokenTtlMs: number;
  now(): Date;
}

/** Largest number of events one $events call returns. */
const MAX_EVENTS = 1000;

/** An operation as the route table (src/http/routes.ts) declares it. */
export interface OperationRoute {
  method: 'GET|HEAD' | 'POST';
  /** Path pattern: literal segments, ':x' captures a segment, '$op' literal operations. */
  path: string;
  handle(req: FhirRequest, params: string[]): Promise<FhirResponse>;
}

function ok(body: Resource): FhirResponse {
  return { status: 200, body, headers: {} };
}

/** Query or form parameter (operations may be called by GET or by POST with a Parameters body). */
function param(req: FhirRequest, name: string): string | undefined {
  const q = req.query.get(name);
  if (q !== null) return q;
  if (req.body instanceof URLSearchParams) return req.body.get(name) ?? undefined;
  const body = parametersBody(req);
  if (body) {
    const p = body.parameter?.find((x) => x.name === name);
    const v = p?.valueString ?? p?.valueCode ?? p?.valueId ?? p?.valueInteger ?? p?.valueUnsignedInt ?? p?.valuePositiveInt;
    return v === undefined ? undefined : String(v);
  }
  return undefined;
}

/** A POSTed operation may carry Parameters (the edge has parsed the body). */
function parametersBody(req: FhirRequest): Parameters | undefined {
  const parsed = req.body as Parameters | undefined;
  return parsed?.resourceType === 'Parameters' ? parsed : undefined;
}

function wholeNumber(raw: string | undefined, name: string): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d{1,15}$/.test(raw)) throw Errors.badRequest(`Parameter ${name} must be a whole number, got "${raw}"`, 'MSG_PARAM_INVALID');
  return Number(raw);
}

async function readable(ctx: OperationsContext, principal: Principal, id: string): Promise<{ sub: Subscription; state: StateDoc | null }> {
  principal.policy.assertAllowed('read', 'Subscription');
  const doc = await ctx.repository.read('Subscription', id);
  if (!doc || doc.deleted || !principal.policy.canRead(doc.res, doc.comp ?? [])) throw Errors.notFound(`Subscription/${id} is not known`);
  return { sub: doc.res as Subscription, state: await ctx.state.state(id) };
}

async function statusOf(ctx: OperationsContext, sub: Subscription, state: StateDoc | null): Promise<Parameters> {
  return statusParameters({
    baseUrl: ctx.baseUrl,
    subscriptionId: sub.id!,
    topic: state?.spec.topic,
    status: (state?.status ?? sub.status) as SubscriptionStatusCode,
    type: 'query-status',
    eventsSinceStart: await ctx.log.lastNumber(sub.id!),
    events: [],
    content: 'empty',
    error: (await ctx.state.runtime(sub.id!))?.lastError,
  });
}

async function status(ctx: OperationsContext, req: FhirRequest, params: string[]): Promise<FhirResponse> {
  const principal = req.principal;
  const ids = (params[0] ?? param(req, 'id') ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (ids.length === 0) throw Errors.badRequest('Subscription/$status needs the id parameter', 'MSG_PARAM_INVALID');
  const entry: BundleEntry[] = [];
  for (const id of ids.slice(0, 100)) {
    const { sub, state } = await readable(ctx, principal, id);
    const p = await statusOf(ctx, sub, state);
    entry.push({ fullUrl: `urn:uuid:${p.id}`, resource: p, search: { mode: 'match' } });
  }
  const bundle: Bundle = { resourceType: 'Bundle', type: 'searchset', total: entry.length, timestamp: ctx.now().toISOString(), entry };
  return ok(bundle);
}

async function events(ctx: OperationsContext, req: FhirRequest, [id]: string[]): Promise<FhirResponse> {
  const principal = req.principal;
  const { sub, state } = await readable(ctx, principal, id);
  const since = wholeNumber(param(req, 'eventsSinceNumber'), 'eventsSinceNumber');
  const until = wholeNumber(param(req, 'eventsUntilNumber'), 'eventsUntilNumber');
  if (since !== undefined && until !== undefined && until < since) {
    throw Errors.badRequest('eventsUntilNumber must not be below eventsSinceNumber', 'MSG_PARAM_INVALID');
  }
  const contentRaw = param(req, 'content');
  if (contentRaw !== undefined && !['empty', 'id-only', 'full-resource'].includes(contentRaw)) {
    throw Errors.badRequest(`Parameter content must be empty, id-only or full-resource, got "${contentRaw}"`, 'MSG_PARAM_INVALID');
  }
  // Until the commit of the Subscription has been processed there is no state and no event yet.
  const content = (contentRaw ?? state?.spec.content ?? 'id-only') as PayloadContent;
  const last = await ctx.log.lastNumber(id);
  // Rows are keyed by number: read the asked range (by default the latest events) by key.
  const from = Math.max(1, since ?? (until !== undefined ? until - MAX_EVENTS + 1 : last - MAX_EVENTS + 1));
  const to = Math.min(last, until ?? last, from + MAX_EVENTS - 1);
  const rows = to >= from ? await ctx.log.readFrom(id, from, to - from + 1) : [];
  // Rows were filtered with the subscriber's policy when recorded; the caller's policy applies too.
  const ids = rows.filter((r) => r.method !== 'DELETE' && !r.erased).map((r) => r.historyId);
  const docs = await ctx.repository.versions(ids);
  const byId = new Map(docs.map((d) => [d._id, d]));
  const found: EventForBundle[] = [];
  for (const r of rows) {
    const h = byId.get(r.historyId);
    if (h?.res && !principal.policy.canRead(h.res, h.comp ?? [])) continue;
    found.push({ num: r.num, ts: r.ts, type: r.type, id: r.id, vid: r.vid, method: r.method, resource: content === 'full-resource' ? h?.res : undefined, erased: r.erased });
  }
  return ok(
    notificationBundle(
      { baseUrl: ctx.baseUrl, subscriptionId: id, topic: state?.spec.topic, status: (state?.status ?? sub.status) as SubscriptionStatusCode, type: 'query-event', eventsSinceStart: last, events: found, content },
      ctx.now(),
    ),
  );
}

async function bindingToken(ctx: OperationsContext, req: FhirRequest, params: string[]): Promise<FhirResponse> {
  const principal = req.principal;
  const ids = (params[0] ?? param(req, 'id') ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (ids.length === 0) throw Errors.badRequest('$get-ws-binding-token needs a Subscription id', 'MSG_PARAM_INVALID');
  for (const id of ids) {
    const { sub } = await readable(ctx, principal, id);
    if (sub.channel?.type !== 'websocket') {
      throw Errors.badRequest(`Subscription/${id} does not use the websocket channel`, 'MSG_SUBSCRIPTION_CHANNEL', ['Subscription.channel.type']);
    }
  }
  const token = randomBytes(24).toString('base64url');
  const exp = new Date(ctx.now().getTime() + ctx.tokenTtlMs);
  await ctx.state.saveToken({ _id: token, subs: ids, principal: { clientId: principal.clientId, scopes: principal.scopes }, exp });
  const out: Parameters = {
    resourceType: 'Parameters',
    parameter: [
      { name: 'token', valueString: token },
      { name: 'expiration', valueDateTime: exp.toISOString() },
      ...ids.map((id) => ({ name: 'subscription', valueString: `${ctx.baseUrl}/Subscription/${id}` })),
      { name: 'websocket-url', valueUrl: ctx.websocketUrl },
    ],
  };
  return ok(out);
}

/**
 * Subscription operations: $status, $events, $get-ws-binding-token. Each first checks that the
 * caller may read the Subscription itself (an unreadable one answers 404, like a missing one).
 */
export function subscriptionOperations(ctx: OperationsContext): OperationRoute[] {
  // GET or POST, as the operation definitions allow (POST may carry a Parameters body).
  const both = (path: string, handle: OperationRoute['handle']): OperationRoute[] => [
    { method: 'GET|HEAD', path, handle },
    { method: 'POST', path, handle },
  ];
  const op = (fn: (ctx: OperationsContext, req: FhirRequest, params: string[]) => Promise<FhirResponse>): OperationRoute['handle'] => (req, params) => fn(ctx, req, params);
  return [
    ...both('Subscription/:id/$status', op(status)),
    ...both('Subscription/$status', op(status)),
    ...both('Subscription/:id/$events', op(events)),
    ...both('Subscription/:id/$get-ws-binding-token', op(bindingToken)),
    ...both('Subscription/$get-ws-binding-token', op(bindingToken)),
  ];
}
