import { randomBytes } from 'node:crypto';
import type { Bundle, BundleEntry, Parameters, Resource, Subscription } from 'fhir/r4';
import express from 'express';
import type { Db } from 'mongodb';
import type { Principal } from '../auth/types';
import { Errors } from '../errors';
import { outcomeOf, toFhirError } from '../http/outcome';
import type { CurrentDoc, HistoryDoc } from '../storage/types';
import { notificationBundle, statusParameters, type EventForBundle } from './bundle';
import type { Collections, StateDoc } from './collections';
import type { PayloadContent, SubscriptionStatusCode } from './constants';
import type { NotificationLog } from './numbering';

export interface RouterContext {
  db: Db;
  c: Collections;
  log: NotificationLog;
  baseUrl: string;
  websocketUrl: string;
  tokenTtlMs: number;
  now(): Date;
}

/** Largest number of events one $events call returns. */
const MAX_EVENTS = 1000;

function principalOf(res: express.Response): Principal {
  const p = res.locals.principal as Principal | undefined;
  if (!p) throw Errors.unauthorized('Authentication required');
  return p;
}

function send(res: express.Response, body: Resource): void {
  res.status(200).type('application/fhir+json').send(JSON.stringify(body));
}

/** Query or form parameter (operations may be called by GET or by POST with a Parameters body). */
function param(req: express.Request, name: string): string | undefined {
  const q = req.query[name];
  if (typeof q === 'string') return q;
  const body = parametersBody(req);
  if (body) {
    const p = body.parameter?.find((x) => x.name === name);
    const v = p?.valueString ?? p?.valueCode ?? p?.valueId ?? p?.valueInteger ?? p?.valueUnsignedInt ?? p?.valuePositiveInt;
    return v === undefined ? undefined : String(v);
  }
  return undefined;
}

/** The core hands operations a raw body (Buffer); a POSTed operation may carry Parameters. */
function parametersBody(req: express.Request): Parameters | undefined {
  const raw: unknown = req.body;
  let parsed: unknown = raw;
  if (Buffer.isBuffer(raw)) {
    if (raw.length === 0) return undefined;
    try {
      parsed = JSON.parse(raw.toString('utf8'));
    } catch {
      throw Errors.badRequest('The operation body is not valid JSON', 'MSG_BODY_INVALID');
    }
  }
  return (parsed as Parameters | undefined)?.resourceType === 'Parameters' ? (parsed as Parameters) : undefined;
}

function wholeNumber(raw: string | undefined, name: string): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d{1,15}$/.test(raw)) throw Errors.badRequest(`Parameter ${name} must be a whole number, got "${raw}"`, 'MSG_PARAM_INVALID');
  return Number(raw);
}

/**
 * Subscription operations: $status, $events, $get-ws-binding-token. Each first checks that the
 * caller may read the Subscription itself (an unreadable one answers 404, like a missing one).
 */
export function subscriptionRouter(ctx: RouterContext): express.Router {
  const router = express.Router();
  const Subscriptions = ctx.db.collection<CurrentDoc>('Subscription');

  async function readable(principal: Principal, id: string): Promise<{ sub: Subscription; state: StateDoc | null }> {
    principal.policy.assertAllowed('read', 'Subscription');
    const doc = await Subscriptions.findOne({ _id: id, deleted: false });
    if (!doc || !principal.policy.canRead(doc.res, doc.comp ?? [])) throw Errors.notFound(`Subscription/${id} is not known`);
    return { sub: doc.res as Subscription, state: await ctx.c.state.findOne({ _id: id }) };
  }

  async function statusOf(sub: Subscription, state: StateDoc | null): Promise<Parameters> {
    return statusParameters({
      baseUrl: ctx.baseUrl,
      subscriptionId: sub.id!,
      topic: state?.spec.topic,
      status: (state?.status ?? sub.status) as SubscriptionStatusCode,
      type: 'query-status',
      eventsSinceStart: await ctx.log.lastNumber(sub.id!),
      events: [],
      content: 'empty',
      error: (await ctx.c.runtime.findOne({ _id: sub.id! }))?.lastError,
    });
  }

  // Errors are answered here, as OperationOutcomes, so no outer handler can mistake a FhirError's status for something else.
  const wrap =
    (fn: (req: express.Request, res: express.Response) => Promise<void>): express.RequestHandler =>
    (req, res) => {
      fn(req, res).catch((e: unknown) => {
        const fe = toFhirError(e);
        res.status(fe.status);
        for (const [k, v] of Object.entries(fe.headers ?? {})) res.setHeader(k, v);
        res.type('application/fhir+json; charset=utf-8').send(JSON.stringify(outcomeOf(fe)));
      });
    };

  const statusHandler = wrap(async (req, res) => {
    const principal = principalOf(res);
    const ids = (req.params[0] ?? param(req, 'id') ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    if (ids.length === 0) throw Errors.badRequest('Subscription/$status needs the id parameter', 'MSG_PARAM_INVALID');
    const entry: BundleEntry[] = [];
    for (const id of ids.slice(0, 100)) {
      const { sub, state } = await readable(principal, id);
      const p = await statusOf(sub, state);
      entry.push({ fullUrl: `urn:uuid:${p.id}`, resource: p, search: { mode: 'match' } });
    }
    const bundle: Bundle = { resourceType: 'Bundle', type: 'searchset', total: entry.length, timestamp: ctx.now().toISOString(), entry };
    send(res, bundle);
  });

  const eventsHandler = wrap(async (req, res) => {
    const principal = principalOf(res);
    const id = req.params[0];
    const { sub, state } = await readable(principal, id);
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
    const ids = rows.filter((r) => r.method !== 'DELETE').map((r) => r.historyId);
    const docs = ids.length ? await ctx.db.collection<HistoryDoc>('history').find({ _id: { $in: ids } }).toArray() : [];
    const byId = new Map(docs.map((d) => [d._id, d]));
    const events: EventForBundle[] = [];
    for (const r of rows) {
      const h = byId.get(r.historyId);
      if (h?.res && !principal.policy.canRead(h.res, h.comp ?? [])) continue;
      events.push({ num: r.num, ts: r.ts, type: r.type, id: r.id, vid: r.vid, method: r.method, resource: content === 'full-resource' ? h?.res : undefined });
    }
    send(
      res,
      notificationBundle(
        { baseUrl: ctx.baseUrl, subscriptionId: id, topic: state?.spec.topic, status: (state?.status ?? sub.status) as SubscriptionStatusCode, type: 'query-event', eventsSinceStart: last, events, content },
        ctx.now(),
      ),
    );
  });

  const tokenHandler = wrap(async (req, res) => {
    const principal = principalOf(res);
    const ids = (req.params[0] ?? param(req, 'id') ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    if (ids.length === 0) throw Errors.badRequest('$get-ws-binding-token needs a Subscription id', 'MSG_PARAM_INVALID');
    for (const id of ids) {
      const { sub } = await readable(principal, id);
      if (sub.channel?.type !== 'websocket') {
        throw Errors.badRequest(`Subscription/${id} does not use the websocket channel`, 'MSG_SUBSCRIPTION_CHANNEL', ['Subscription.channel.type']);
      }
    }
    const token = randomBytes(24).toString('base64url');
    const exp = new Date(ctx.now().getTime() + ctx.tokenTtlMs);
    await ctx.c.tokens.insertOne({ _id: token, subs: ids, principal: { clientId: principal.clientId, scopes: principal.scopes }, exp });
    const out: Parameters = {
      resourceType: 'Parameters',
      parameter: [
        { name: 'token', valueString: token },
        { name: 'expiration', valueDateTime: exp.toISOString() },
        ...ids.map((id) => ({ name: 'subscription', valueString: `${ctx.baseUrl}/Subscription/${id}` })),
        { name: 'websocket-url', valueUrl: ctx.websocketUrl },
      ],
    };
    send(res, out);
  });

  const ID = '([A-Za-z0-9\\-.]{1,64})';
  router.all(new RegExp(`^/Subscription/${ID}/\\$status$`), statusHandler);
  router.all(/^\/Subscription\/\$status$/, statusHandler);
  router.all(new RegExp(`^/Subscription/${ID}/\\$events$`), eventsHandler);
  router.all(new RegExp(`^/Subscription/${ID}/\\$get-ws-binding-token$`), tokenHandler);
  router.all(/^\/Subscription\/\$get-ws-binding-token$/, tokenHandler);
  return router;
}
