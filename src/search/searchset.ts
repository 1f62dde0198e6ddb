import type { Bundle, BundleEntry, Resource } from 'fhir/r4';
import type { AccessPolicy } from '../auth/types';
import { Errors } from '../errors';
import type { CurrentDoc } from '../storage';
import { type SortKey, sortValue } from '../storage/query';
import { type Cond, FALSE } from './cond';
import { canRead, filterCond } from './conditions';
import type { SearchContext } from './context';
import { type Control, parseControl } from './control';
import { type CursorState, decodeCursor, encodeCursor } from './cursor';
import { resolveIncludes } from './includes';
import { entry, hashQuery, link, outcomeEntry, usedPairs } from './links';
import { parseQuery } from './parse';
import { type Ignored, reject } from './query';
import type { SearchRequest } from './service';

/** The search interaction: a searchset Bundle. */
export async function typeSearch(sc: SearchContext, req: SearchRequest & { type: string }): Promise<Bundle> {
  const type = req.type;
  sc.paramsOf(type);
  const ignored: Ignored[] = [];
  const { filters, control } = parseQuery(req.params);
  const ctl = parseControl(sc, type, control, req.handling, ignored);
  if (ctl.types) reject('_type', 'applies only to system-level searches', req.handling, ignored);
  const cond = await filterCond(sc, type, filters, req.policy, req.handling, ignored);
  const used = usedPairs(req.params, ignored);
  const qHash = hashQuery(type, used);
  const self = link(req.baseUrl, type, used);

  const countOnly = ctl.summary === 'count' || ctl.count === 0;
  const bundle: Bundle = { resourceType: 'Bundle', type: 'searchset', link: [{ relation: 'self', url: self }] };
  if (countOnly) bundle.total = await sc.executor.count({ type, cond, policy: req.policy });
  const entries: BundleEntry[] = [];
  if (!countOnly) {
    const page = await fetchPage(sc, type, cond, req.policy, ctl, qHash);
    if (ctl.total !== 'none') {
      // A first page with no next page holds every match: no second query to count them. After a
      // bounded scan an estimate is left out: counting would be the full scan the budget avoids.
      if (ctl.cursor === undefined && !page.next) bundle.total = page.docs.length;
      else if (ctl.total === 'accurate' || !page.scanned) bundle.total = await sc.executor.count({ type, cond, policy: req.policy });
    }
    for (const d of page.docs) entries.push(entry(req.baseUrl, d.res, 'match', ctl));
    const included = await resolveIncludes(sc, page.docs.map((d) => d.res), ctl.includes, req.policy);
    for (const r of included) entries.push(entry(req.baseUrl, r, 'include', ctl));
    const withCursor = (state: CursorState) => link(req.baseUrl, type, [...used.filter(([n]) => n !== '_cursor'), ['_cursor', encodeCursor(sc.cursors, state)]]);
    if (page.next) bundle.link?.push({ relation: 'next', url: withCursor(page.next) });
    if (page.prev) bundle.link?.push({ relation: 'previous', url: withCursor(page.prev) });
  }
  const outcome = outcomeEntry(ignored);
  if (outcome) entries.push(outcome);
  if (entries.length > 0) bundle.entry = entries;
  return bundle;
}

/** Keyset paging: count + 1 rows after (or before) the cursor's boundary in the sort order. */
async function fetchPage(
  sc: SearchContext,
  type: string,
  cond: Cond,
  policy: AccessPolicy,
  ctl: Control,
  qHash: string,
): Promise<{ docs: CurrentDoc[]; next?: CursorState; prev?: CursorState; scanned?: boolean }> {
  const keys: SortKey[] = [...ctl.sort, { field: '_id', dir: 1 }];
  const state = ctl.cursor !== undefined ? decodeCursor(sc.cursors, ctl.cursor, qHash) : undefined;
  if (state && state.k.length !== keys.length - 1) throw Errors.badRequest('Invalid or expired paging cursor (_cursor)', 'MSG_PARAM_INVALID', ['_cursor']);
  const back = state?.d === 'p';
  const order = keys.map((k) => ({ field: k.field, dir: (back ? -k.dir : k.dir) as 1 | -1 }));
  const q = { type, cond, policy, order, after: state && !state.s ? [...state.k, state.id] : undefined, limit: ctl.count + 1, fields: ['res'] };
  const got = await sc.executor.searchPage(q, state?.s);
  if (got.scanned) {
    // A bounded scan (an unserved query): the page may hold fewer entries; `next` resumes the scan.
    const resume = got.resume;
    return { docs: got.docs, scanned: true, next: resume ? { k: [], id: '', d: 'n', q: qHash, s: resume } : undefined };
  }
  let docs = got.docs;
  const more = docs.length > ctl.count;
  docs = docs.slice(0, ctl.count);
  if (back) docs.reverse();
  if (docs.length === 0) return { docs };
  const boundary = (d: CurrentDoc, dir: 'n' | 'p'): CursorState => ({
    k: keys.slice(0, -1).map((k) => sortValue(d, k.field)),
    id: d._id,
    d: dir,
    q: qHash,
  });
  const first = docs[0];
  const last = docs[docs.length - 1];
  const next = back ? boundary(last, 'n') : more ? boundary(last, 'n') : undefined;
  const prev = back ? (more ? boundary(first, 'p') : undefined) : state ? boundary(first, 'p') : undefined;
  return { docs, next, prev };
}

/** System-level search: common parameters over several types, ordered by type then id. */
export async function systemSearch(sc: SearchContext, req: SearchRequest): Promise<Bundle> {
  const ignored: Ignored[] = [];
  const { filters, control } = parseQuery(req.params);
  const ctl = parseControl(sc, undefined, control, req.handling, ignored);
  const types = ctl.types ?? sc.supportedTypes;
  for (const t of types) {
    if (!sc.registry.byType.has(t)) throw Errors.badRequest(`_type names an unsupported resource type "${t}"`, 'MSG_PARAM_INVALID', ['_type']);
  }
  const readable = types.filter((t) => canRead(req.policy, t));
  // Only parameters every type knows are usable across types.
  const common = filters.filter((fp) => {
    const ok = readable.every((t) => sc.registry.byType.get(t)?.has(fp.code)) && !fp.has && fp.chain === undefined;
    if (!ok) reject(fp.name, 'is not a parameter of every type searched', req.handling, ignored);
    return ok;
  });
  const used = usedPairs(req.params, ignored);
  const qHash = hashQuery('*', used);
  const state = ctl.cursor !== undefined ? decodeCursor(sc.cursors, ctl.cursor, qHash) : undefined;
  const countOnly = ctl.summary === 'count' || ctl.count === 0;
  const conds = new Map<string, Cond>();
  for (const t of readable) conds.set(t, await filterCond(sc, t, common, req.policy, req.handling, []));
  const bundle: Bundle = { resourceType: 'Bundle', type: 'searchset', link: [{ relation: 'self', url: link(req.baseUrl, undefined, used) }] };
  if (countOnly || ctl.total !== 'none') {
    let total = 0;
    for (const t of readable) total += await sc.executor.count({ type: t, cond: conds.get(t) ?? FALSE, policy: req.policy });
    bundle.total = total;
  }
  const entries: BundleEntry[] = [];
  if (!countOnly) {
    const rows: Resource[] = [];
    let more = false;
    let lastType = 0;
    const startType = state ? (state.t ?? 0) : 0;
    for (let i = startType; i < readable.length && !more; i++) {
      const t = readable[i];
      const docs = await sc.executor.page({
        type: t,
        cond: conds.get(t) ?? FALSE,
        policy: req.policy,
        after: state && i === startType ? [state.id] : undefined,
        limit: ctl.count - rows.length + 1,
        fields: ['res'],
      });
      for (const d of docs) {
        if (rows.length === ctl.count) {
          more = true;
          break;
        }
        rows.push(d.res);
        lastType = i;
      }
    }
    for (const r of rows) entries.push(entry(req.baseUrl, r, 'match', ctl));
    if (more && rows.length > 0) {
      const last = rows[rows.length - 1];
      const cur = encodeCursor(sc.cursors, { k: [], id: last.id ?? '', d: 'n', q: qHash, t: lastType });
      bundle.link?.push({ relation: 'next', url: link(req.baseUrl, undefined, [...used, ['_cursor', cur]]) });
    }
  }
  const outcome = outcomeEntry(ignored);
  if (outcome) entries.push(outcome);
  if (entries.length > 0) bundle.entry = entries;
  return bundle;
}
