import type { Bundle, BundleEntry, FhirResource } from 'fhir/r4';
import type { Filter } from 'mongodb';
import type { AccessPolicy } from '../auth/types';
import { Errors } from '../errors';
import type { CursorCodec } from './cursor';
import type { ResourceStore } from './store';
import type { HistoryDoc } from './types';

export interface HistoryQuery {
  type?: string;
  id?: string;
  since?: Date;
  at?: Date;
  count: number;
  /** Opaque keyset cursor from a previous page. */
  page?: string;
}

interface HistoryCursor {
  ts: string;
  id: string;
}

/** Parses a FHIR instant/dateTime for _since/_at; partial dates mean their start. */
export function parseHistoryDate(value: string, param: string): Date {
  if (!/^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/.test(value)) {
    throw Errors.badRequest(`Invalid ${param} value "${value}": expected a FHIR instant such as 2024-01-31T10:00:00Z`, 'MSG_PARAM_INVALID');
  }
  const d = new Date(value.length === 4 ? `${value}-01-01` : value.length === 7 ? `${value}-01` : value);
  if (Number.isNaN(d.getTime())) throw Errors.badRequest(`Invalid ${param} value "${value}"`, 'MSG_PARAM_INVALID');
  return d;
}

/**
 * History at instance, type or system level, newest first, paged with a keyset cursor on
 * (ts, _id) so concurrent writes never shift a page. Entries the caller may not read are left out.
 */
export async function readHistory(
  store: ResourceStore,
  cursors: CursorCodec,
  q: HistoryQuery,
  policy: AccessPolicy,
  baseUrl: string,
  selfUrl: string,
  nextUrl: (page: string) => string,
): Promise<Bundle> {
  const filter: Filter<HistoryDoc> & Record<string, unknown> = {};
  const uncommitted = await store.uncommittedTransactions();
  if (q.type) filter.type = q.type;
  if (q.id) filter.id = q.id;
  const tsCond: Record<string, Date> = {};
  if (q.since) tsCond.$gte = q.since;
  if (q.at) tsCond.$lte = q.at;
  if (Object.keys(tsCond).length) filter.ts = tsCond;
  if (q.page) {
    const c = cursors.decode<HistoryCursor>(q.page, '_page');
    const ts = new Date(c.ts);
    filter.$or = [{ ts: { $lt: ts } }, { ts, _id: { $lt: c.id } }];
  }
  const out: HistoryDoc[] = [];
  let more = false;
  let lastSeen: HistoryDoc | undefined;
  // Fetch count+1 to know whether another page exists; policy filtering may drop entries,
  // so keep reading (bounded) until the page is full.
  for (let round = 0; round < 5 && out.length <= q.count; round++) {
    const f = lastSeen
      ? { ...filter, $and: [{ $or: [{ ts: { $lt: lastSeen.ts } }, { ts: lastSeen.ts, _id: { $lt: lastSeen._id } }] }] }
      : filter;
    const batch = await store.history
      .find(f as Filter<HistoryDoc>)
      .sort({ ts: -1, _id: -1 })
      .limit(q.count + 1)
      .toArray();
    for (const h of batch) {
      lastSeen = h;
      if (h.tx && uncommitted.has(h.tx)) continue;
      if (await visible(store, h, policy)) out.push(h);
    }
    if (batch.length < q.count + 1) break;
  }
  if (out.length > q.count) {
    more = true;
    out.length = q.count;
  }
  const entries: BundleEntry[] = out.map((h) => historyEntry(h, baseUrl));
  const bundle: Bundle = {
    resourceType: 'Bundle',
    type: 'history',
    link: [{ relation: 'self', url: selfUrl }],
    entry: entries,
  };
  if (more) {
    const last = out[out.length - 1];
    bundle.link!.push({ relation: 'next', url: nextUrl(cursors.encode({ ts: last.ts.toISOString(), id: last._id })) });
  }
  if (!q.page && !q.since && !q.at && out.length <= q.count && !more) bundle.total = entries.length;
  return bundle;
}

async function visible(store: ResourceStore, h: HistoryDoc, policy: AccessPolicy): Promise<boolean> {
  if (h.res) return policy.canRead(h.res, h.comp);
  return store.canSeeDeleted(h.type, h.id, h.vid, policy);
}

export function historyEntry(h: HistoryDoc, baseUrl: string): BundleEntry {
  const e: BundleEntry = { fullUrl: `${baseUrl}/${h.type}/${h.id}` };
  if (h.res) e.resource = h.res as FhirResource;
  const method = h.method === 'PATCH' ? 'PATCH' : h.method;
  e.request = { method, url: h.method === 'POST' ? h.type : `${h.type}/${h.id}` };
  e.response = {
    status: h.deleted ? '204 No Content' : h.vid === 1 ? '201 Created' : '200 OK',
    etag: `W/"${h.vid}"`,
    lastModified: h.ts.toISOString(),
  };
  return e;
}
