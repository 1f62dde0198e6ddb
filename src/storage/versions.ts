import type { Resource } from 'fhir/r4';
import { type Collections, isDuplicateKey } from './collections';
import { GroupInserter } from './group-insert';
import { type Bodies, lean, storedForm } from './bodies';
import { findByIds } from './lookup';
import { historyId, type CurrentDoc, type HistoryDoc, type IndexEntries, type PreparedWrite } from './types';

/**
 * Search's write-time index (owned by src/search), used when a version is rebuilt from history.
 * With `only`, the index values of those search parameters alone (a bucket walk's partial index,
 * see query/carried-index.ts); `comp` is then incomplete and must not be used.
 */
export type IndexFn = (resource: Resource, only?: ReadonlySet<string>) => { idx: IndexEntries; comp: string[] };

/**
 * Storage-internal: committed versions and the current documents derived from them. Shared by
 * the repository, the transaction journal and the outbox; never exported from src/storage.
 */
export class Versions {
  private readonly creations = new Map<string, GroupInserter<CurrentDoc>>();

  /**
   * `read`: a current document is replaced only after a read by `_id` found an older version,
   * never by a `{ _id, vid: { $lt } }` filter: FerretDB 1.24 pushes down only a bare `_id`, so
   * that filter scanned the whole collection on every update (each Subscription status write
   * scanned every Subscription). Its conditional replace is a read-modify-write anyway, so the
   * read widens no race: a version overtaken in between is repaired by the outbox as before.
   * `filter` (MongoDB) keeps the atomic conditional replace.
   */
  constructor(
    readonly cols: Collections,
    private readonly index: IndexFn,
    readonly bodies: Bodies,
    private readonly replaceBy: 'filter' | 'read' = 'filter',
  ) {}

  /**
   * One committed version by its history id (a primary-key lookup on every database);
   * versions of a transaction still in flight are not committed yet.
   */
  async committed(type: string, id: string, vid: number): Promise<HistoryDoc | null> {
    const h = await this.committedStored(type, id, vid);
    return h && this.bodies.loadOne(h);
  }

  /** As `committed`, in stored form (a big resource stays lean). */
  private async committedStored(type: string, id: string, vid: number): Promise<HistoryDoc | null> {
    const h = await this.cols.history.findOne({ _id: historyId(type, id, vid) });
    if (!h?.tx) return h;
    const j = await this.cols.journal.findOne({ _id: h.tx }, { projection: { state: 1 } });
    return !j || j.state === 'committed' ? h : null;
  }

  /** Committed versions by history id (point reads; versions of open transactions left out). */
  async committedByIds(ids: readonly string[]): Promise<HistoryDoc[]> {
    if (ids.length === 0) return [];
    const hs = await findByIds(this.cols.history, ids);
    const open = hs.some((h) => h.tx) ? await this.uncommittedTransactions() : new Set<string>();
    return this.bodies.load(hs.filter((h) => !(h.tx && open.has(h.tx))));
  }

  /** Ids of transactions that have not reached their commit point: their versions are hidden. */
  async uncommittedTransactions(): Promise<Set<string>> {
    const open = await this.cols.journal.find({ state: 'pending' }, { projection: { _id: 1 } }).toArray();
    return new Set(open.map((j) => j._id));
  }

  /** The newest committed version at or above `fromVid`, probing by primary key. */
  async latestCommitted(type: string, id: string, fromVid: number): Promise<HistoryDoc | null> {
    let latest: HistoryDoc | null = null;
    for (let v = Math.max(1, fromVid); ; v++) {
      const h = await this.committedStored(type, id, v);
      if (!h) return latest && this.bodies.loadOne(latest);
      latest = h;
    }
  }

  /** Makes the current document show `doc` unless a newer version is already there. */
  async applyCurrent(type: string, doc: CurrentDoc, expectedVid: number): Promise<void> {
    const col = this.cols.current(type);
    doc = storedForm(doc);
    if (expectedVid === 0) {
      try {
        await this.inserter(type).insert(doc);
        return;
      } catch (e) {
        if (!isDuplicateKey(e)) throw e;
      }
    }
    if (this.replaceBy === 'read') {
      const existing = await col.findOne({ _id: doc._id }, { projection: { vid: 1 } });
      if (existing && existing.vid >= doc.vid) return;
      if (existing) await col.replaceOne({ _id: doc._id }, doc);
      else await col.insertOne(doc).catch((e: unknown) => (isDuplicateKey(e) ? this.applyCurrent(type, doc, doc.vid - 1) : Promise.reject(e)));
      return;
    }
    const r = await col.replaceOne({ _id: doc._id, vid: { $lt: doc.vid } }, doc);
    if (r.matchedCount === 0) {
      // Either a newer version is already current (fine), or the document vanished; in the
      // latter case put ours in place.
      const existing = await col.findOne({ _id: doc._id }, { projection: { vid: 1 } });
      if (!existing) await col.insertOne(doc).catch((e: unknown) => (isDuplicateKey(e) ? undefined : Promise.reject(e)));
    }
  }

  /** Current documents go in one insertMany (new resources) and one bulk of replaces (updates) per type. */
  async applyCurrents(items: readonly { type: string; doc: CurrentDoc; expectedVid: number }[]): Promise<void> {
    const fresh = new Map<string, CurrentDoc[]>();
    const rest: { type: string; doc: CurrentDoc; expectedVid: number }[] = [];
    for (const it of items.map((x) => ({ ...x, doc: storedForm(x.doc) }))) {
      if (it.expectedVid === 0) fresh.set(it.type, [...(fresh.get(it.type) ?? []), it.doc]);
      else rest.push(it);
    }
    for (const [type, docs] of fresh) {
      try {
        await this.cols.current(type).insertMany(docs, { ordered: false });
      } catch (e) {
        if (!isDuplicateKey(e)) throw e;
        // Some ids existed (e.g. a deleted resource revived): place those one by one.
        for (const d of docs) await this.applyCurrent(type, d, 0);
      }
    }
    const updates = new Map<string, CurrentDoc[]>();
    for (const it of rest) updates.set(it.type, [...(updates.get(it.type) ?? []), it.doc]);
    for (const [type, docs] of updates) {
      if (this.replaceBy === 'read') {
        // One wave of point reads, then one bulk of replaces by bare `_id` (see the constructor).
        const col = this.cols.current(type);
        const vids = new Map((await findByIds(col, docs.map((d) => d._id), { projection: { vid: 1 } })).map((c) => [c._id, c.vid]));
        const older = docs.filter((d) => (vids.get(d._id) ?? Infinity) < d.vid);
        if (older.length > 0) await col.bulkWrite(older.map((d) => ({ replaceOne: { filter: { _id: d._id }, replacement: d } })), { ordered: false });
        for (const d of docs) if (!vids.has(d._id)) await this.applyCurrent(type, d, d.vid - 1);
        continue;
      }
      // One bulk of plain replaces (no upserts: a bulk of upserts beside concurrent inserts
      // once stalled FerretDB, see README); anything not matched is placed one by one.
      const ops = docs.map((d) => ({ replaceOne: { filter: { _id: d._id, vid: { $lt: d.vid } }, replacement: d } }));
      const r = await this.cols.current(type).bulkWrite(ops, { ordered: false });
      if (r.matchedCount < docs.length) for (const d of docs) await this.applyCurrent(type, d, d.vid - 1);
    }
  }

  /** Rebuilds the current document of type/id from its newest committed history version. */
  async applyFromHistory(type: string, id: string): Promise<void> {
    const cur = await this.cols.current(type).findOne({ _id: id }, { projection: { vid: 1, res: 1 } });
    const latest = await this.latestCommitted(type, id, (cur?.vid ?? 0) + 1);
    if (!latest) return;
    await this.applyCurrent(type, await this.currentOf(latest), latest.vid - 1);
  }

  /** The current document a committed version stands for (a deletion keeps the deleted content). */
  async currentOf(h: HistoryDoc): Promise<CurrentDoc> {
    if (h.deleted || !h.res) {
      // The deleted content stays in its stored form (lean, with the previous version's body).
      const previous = h.vid > 1 ? await this.cols.history.findOne({ _id: historyId(h.type, h.id, h.vid - 1) }) : null;
      const doc: CurrentDoc = {
        _id: h.id,
        res: previous?.res ?? ({ resourceType: h.type, id: h.id } as Resource),
        vid: h.vid,
        ts: h.ts,
        deleted: true,
        idx: {},
        comp: h.comp,
      };
      if (previous?.body) doc.body = previous.body;
      return doc;
    }
    const { idx, comp } = this.index(h.res);
    const doc: CurrentDoc = { _id: h.id, res: h.res, vid: h.vid, ts: h.ts, deleted: false, idx, comp };
    if (h.dec) doc.dec = h.dec;
    if (h.body) doc.body = h.body;
    return doc;
  }

  private inserter(type: string): GroupInserter<CurrentDoc> {
    let g = this.creations.get(type);
    if (!g) this.creations.set(type, (g = new GroupInserter(this.cols.current(type))));
    return g;
  }
}

/** The history document of a prepared version. */
export function historyDocOf(w: PreparedWrite, txId?: string): HistoryDoc {
  const h: HistoryDoc = {
    _id: historyId(w.type, w.id, w.doc.vid),
    type: w.type,
    id: w.id,
    vid: w.doc.vid,
    ts: w.doc.ts,
    deleted: w.doc.deleted,
    method: w.method,
    comp: w.doc.comp,
  };
  if (!w.doc.deleted && w.doc.body) {
    // A big resource: its full form is in `bodies` (placed before the commit point).
    h.res = lean(w.doc.res);
    h.body = w.doc.body;
  } else if (!w.doc.deleted) {
    h.res = w.doc.res;
    if (w.doc.dec) h.dec = w.doc.dec;
  }
  if (txId) h.tx = txId;
  return h;
}
