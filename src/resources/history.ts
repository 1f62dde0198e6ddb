import type { Bundle, BundleEntry, FhirResource } from 'fhir/r4';
import type { AccessPolicy } from '../auth/types';
import { Errors } from '../errors';
import type { CursorCodec } from './cursor';
import type { ResourceStore } from './store';
import type { HistoryDoc } from '../storage';

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
  let before: { ts: Date; id: string } | undefined;
  if (q.page) {
    const c = cursors.decode<HistoryCursor>(q.page, () => Errors.badRequest('Invalid or tampered paging cursor in _page', 'MSG_BAD_CURSOR'));
    before = { ts: new Date(c.ts), id: c.id };
  }
  const out: HistoryDoc[] = [];
  let more = false;
  // Fetch count+1 to know whether another page exists; policy filtering may drop entries,
  // so keep reading (bounded) until the page is full.
  for (let round = 0; round < 5 && out.length <= q.count; round++) {
    const page = await store.repository.historyPage({ type: q.type, id: q.id, since: q.since, at: q.at, before, limit: q.count + 1 });
    for (const h of page.versions) if (await visible(store, h, policy)) out.push(h);
    before = page.last;
    if (page.exhausted) break;
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
