import type { Filter } from 'mongodb';
import type { Collections } from './collections';
import type { QueryExecutor } from './query';
import type { HistoryPage, HistoryPageQuery } from './repository';
import { type HistoryDoc, historyId } from './types';
import type { Versions } from './versions';

/**
 * How history pages are read, newest first on (ts, _id), without scanning the history
 * collection on an engine that cannot filter it (FerretDB serves only `{ _id }` from an index):
 *
 * - instance history (`[type]/[id]/_history`): point reads of `<type>/<id>/<vid>` from the
 *   current version down (on every engine: a version's `_id` is known);
 * - type and system history: the executor's time buckets where it keeps them (FerretDB), then
 *   point reads; otherwise (MongoDB) one filter served by the `(type, ts, _id)` and `(ts, _id)`
 *   indexes.
 */
export class HistoryPlan {
  constructor(
    private readonly cols: Collections,
    private readonly store: Versions,
    private readonly executor: QueryExecutor,
  ) {}

  async page(q: HistoryPageQuery): Promise<HistoryPage> {
    if (q.type && q.id) return this.instancePage(q, q.type, q.id);
    const planned = await this.executor.historyIds({ type: q.type, since: q.since, at: q.at, before: q.before, limit: q.limit });
    if (!planned) return this.filterPage(q);
    const found = new Map((await this.store.committedByIds(planned.versions.map((v) => v.id))).map((h) => [h._id, h]));
    return {
      versions: planned.versions.map((v) => found.get(v.id)).filter((h): h is HistoryDoc => h !== undefined),
      last: planned.versions[planned.versions.length - 1],
      exhausted: planned.exhausted,
    };
  }

  /**
   * A resource's versions from the newest down by version number (the order of `ts` for one
   * resource): `limit` point reads a page. The boundary of the previous page names its version.
   */
  private async instancePage(q: HistoryPageQuery, type: string, id: string): Promise<HistoryPage> {
    const cur = await this.cols.current(type).findOne({ _id: id }, { projection: { vid: 1 } });
    if (!cur) return { versions: [], exhausted: true };
    let top = cur.vid;
    if (q.before) {
      const prefix = `${type}/${id}/`;
      const v = q.before.id.startsWith(prefix) ? Number(q.before.id.slice(prefix.length)) : NaN;
      top = Number.isInteger(v) ? Math.min(top, v - 1) : 0;
    }
    const versions: HistoryDoc[] = [];
    let vid = top;
    let last: { ts: Date; id: string } | undefined;
    while (vid >= 1 && versions.length < q.limit) {
      const ids: string[] = [];
      for (let v = vid; v >= 1 && ids.length < q.limit - versions.length; v--) ids.push(historyId(type, id, v));
      vid -= ids.length;
      const byId = new Map((await this.store.committedByIds(ids)).map((h) => [h._id, h]));
      for (const hid of ids) {
        const h = byId.get(hid);
        last = { ts: h?.ts ?? q.before?.ts ?? new Date(0), id: hid };
        if (!h) continue;
        // Versions are written in time order: below `since`, every older one is too.
        if (q.since && h.ts < q.since) return { versions, last, exhausted: true };
        if (!q.at || h.ts <= q.at) versions.push(h);
      }
    }
    return { versions, last, exhausted: vid < 1 };
  }

  /** One filter on the history collection (served by its indexes on MongoDB). */
  private async filterPage(q: HistoryPageQuery): Promise<HistoryPage> {
    const filter: Filter<HistoryDoc> & Record<string, unknown> = {};
    if (q.type) filter.type = q.type;
    const ts: Record<string, Date> = {};
    if (q.since) ts.$gte = q.since;
    if (q.at) ts.$lte = q.at;
    if (Object.keys(ts).length) filter.ts = ts;
    if (q.before) filter.$or = [{ ts: { $lt: q.before.ts } }, { ts: q.before.ts, _id: { $lt: q.before.id } }];
    const uncommitted = await this.store.uncommittedTransactions();
    // Big versions keep their full form out of line: the one load path brings it back.
    const batch = await this.store.bodies.load(await this.cols.history.find(filter).sort({ ts: -1, _id: -1 }).limit(q.limit).toArray());
    const lastDoc = batch[batch.length - 1];
    return {
      versions: batch.filter((h) => !(h.tx && uncommitted.has(h.tx))),
      last: lastDoc ? { ts: lastDoc.ts, id: lastDoc._id } : undefined,
      exhausted: batch.length < q.limit,
    };
  }
}
