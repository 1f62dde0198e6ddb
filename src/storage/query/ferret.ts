import type { Db } from 'mongodb';
import type { AccessPolicy } from '../../auth/types';
import type { Collections } from '../collections';
import type { Engine } from '../engine';
import type { CommittedEvent } from '../outbox';
import { type CurrentDoc, historyId, type IndexEntries } from '../types';
import type { IndexFn } from '../versions';
import { collectCandidates, compareBy, lastnViaBuckets, type WalkInput } from './bucket-walk';
import { BucketStore, type OpenVersions, type Ops, emptyOps } from './bucket-store';
import { BUCKET_LAYOUT, BucketIndex, type BucketSource, TRIMMED_BUCKETS } from './buckets';
import { type ErasePlan, mergeErasePlan } from './erase-plan';
import type { CountQuery, Explanation, HistoryIds, HistoryQuery, LastnQuery, LiveVersion, Maintenance, PageQuery, SearchPage } from './executor';
import { DATE_SORT, keysetCond } from './keys';
import { MongoExecutor, pointReads } from './mongo';
import { reindexStale } from './reindex';
import { upsertById } from '../upsert';
import { backgroundWrites } from '../write-gate';
import { boundedScan } from './scan';
import { type ScanPoint, TimeBuckets } from './time-buckets';

/** `meta` key: the layout and definitions the buckets were built with. */
const BUCKETS_KEY = 'search.buckets';
/** Up to this many ids, point reads beat one `$in` filter (which FerretDB answers with a scan). */
const MAX_POINT_READS = 50;
/** Resources a search page of an unserved query examines at most (see scan.ts). */
export const DEFAULT_SCAN_BUDGET = 500;

type WalkMode = 'none' | 'asc' | 'desc';

/**
 * The embedded engine's strategy (FerretDB 1.24 on SQLite pushes down only a bare `{ _id }`
 * filter): queries are answered from candidate buckets keyed by `_id` (buckets.ts: patient and
 * code buckets, identifier and url lists, pinned ids) plus point reads, each candidate checked
 * exactly; history by time from time buckets (time-buckets.ts). A search the buckets cannot
 * bound is a bounded scan (scan.ts); other unserved work falls back to the filter strategy,
 * which scans here. No secondary indexes are created: they are never used for reads, and
 * maintaining them made single inserts 20-35 % slower.
 */
export class FerretExecutor extends MongoExecutor {
  override readonly engine: Engine = 'ferretdb';
  private readonly store: BucketStore;
  private readonly buckets: BucketIndex;
  private readonly time: TimeBuckets;
  /** Entries of the batch being handed on, from onHandedOn to onCommitted (the outbox hands each consumer the same array). */
  private readonly handedOn = new WeakMap<readonly CommittedEvent[], Ops>();

  constructor(
    db: Db,
    cols: Collections,
    private readonly index: IndexFn,
    private readonly scanBudget = DEFAULT_SCAN_BUDGET,
    open?: OpenVersions,
  ) {
    super(db, cols);
    // Nobody waits for stored entries (readers see them staged): other writes go first.
    this.store = new BucketStore(backgroundWrites(db), open, TRIMMED_BUCKETS);
    this.buckets = new BucketIndex(this.store);
    this.time = new TimeBuckets(this.store);
  }

  private walkInput(type: string, q: { cond: PageQuery['cond']; policy: AccessPolicy }, dateOrder: boolean): WalkInput | undefined {
    const plan = this.buckets.plan(type, q.cond, dateOrder);
    return plan && { buckets: this.buckets, col: this.cols.current(type), plan, cond: q.cond, policy: q.policy, index: this.index };
  }

  /** Bucket walks serve `_id` order and `date` order (then `_id`). */
  private served(q: PageQuery): { mode: WalkMode; w: WalkInput } | undefined {
    const order = q.order ?? [{ field: '_id', dir: 1 }];
    let mode: WalkMode | undefined;
    if (order.length === 1 && order[0].field === '_id') mode = 'none';
    else if (order.length === 2 && order[0].field === DATE_SORT && order[1].field === '_id') mode = order[0].dir === 1 ? 'asc' : 'desc';
    const w = mode && this.walkInput(q.type, q, mode !== 'none');
    return mode && w ? { mode, w } : undefined;
  }

  override async page(q: PageQuery): Promise<CurrentDoc[]> {
    const s = this.served(q);
    if (!s) return super.page(q);
    const order = q.order ?? [{ field: '_id', dir: 1 }];
    const afterCond = q.after ? keysetCond(order, q.after) : undefined;
    const from = s.mode !== 'none' && q.after?.[0] instanceof Date ? q.after[0].getTime() : undefined;
    const afterId = s.mode === 'none' && typeof q.after?.[0] === 'string' ? q.after[0] : undefined;
    const found = await collectCandidates(s.w, s.mode, from, afterCond, q.limit, afterId, order[0].dir);
    return found.sort(compareBy(order)).slice(0, q.limit);
  }

  /** Served queries page as `page`; unserved ones in the default order are bounded scans. */
  override async searchPage(q: PageQuery, resume?: ScanPoint): Promise<SearchPage> {
    const defaultOrder = !q.order || (q.order.length === 1 && q.order[0].field === '_id' && q.order[0].dir === 1);
    if (this.served(q) || !defaultOrder) return { docs: await this.page(q), scanned: false };
    const policyCond = q.policy.readCond(q.type);
    const r = await boundedScan({
      time: this.time,
      col: this.cols.current(q.type),
      type: q.type,
      accept: (d) => this.matches(q.cond, policyCond, d),
      want: Math.max(1, q.limit - 1),
      budget: this.scanBudget,
      resume,
    });
    return { docs: r.docs, resume: r.resume, scanned: true };
  }

  override async count(q: CountQuery): Promise<number> {
    const w = this.walkInput(q.type, q, false);
    if (!w) return super.count(q);
    return (await collectCandidates(w, 'none', undefined, undefined, Infinity)).length;
  }

  override async byIds(type: string, ids: readonly string[], policy: AccessPolicy): Promise<CurrentDoc[]> {
    if (ids.length > MAX_POINT_READS) return super.byIds(type, ids, policy);
    return pointReads(this.cols.current(type), ids, undefined, policy);
  }

  /** From a patient's buckets when the query pins one; otherwise one scan grouped in memory. */
  override async lastn(q: LastnQuery): Promise<CurrentDoc[]> {
    const w = this.walkInput('Observation', q, true);
    if (w?.plan.patients) return lastnViaBuckets(w, q.max);
    return this.lastnScan(q);
  }

  override async historyIds(q: HistoryQuery): Promise<HistoryIds> {
    const types = q.type ? [q.type] : [...(await this.store.readDirs(['H'])).flatMap((d) => [...d.keys()])];
    const hi = Math.min(q.at?.getTime() ?? Infinity, q.before?.ts.getTime() ?? Infinity);
    const key = (t: number, id: string): [number, string] => [t, id];
    const before = q.before && key(q.before.ts.getTime(), q.before.id);
    const hid = (v: { type: string; id: string; vid: number }) => `${v.type}/${v.id}/${v.vid}`;
    const r = await this.time.newest(types, q.since?.getTime() ?? -Infinity, hi, q.limit, (v) => !before || v.t < before[0] || (v.t === before[0] && hid(v) < before[1]));
    r.versions.sort((a, b) => b.t - a.t || (hid(a) < hid(b) ? 1 : hid(a) > hid(b) ? -1 : 0));
    const page = r.versions.slice(0, q.limit).map((v) => ({ id: hid(v), ts: new Date(v.t) }));
    return { versions: page, exhausted: r.exhausted && r.versions.length <= q.limit };
  }

  override async explain(q: PageQuery): Promise<Explanation> {
    const x = await super.explain(q);
    const buckets = this.buckets.plan(q.type, q.cond, false);
    return buckets ? { ...x, buckets } : x;
  }

  override async maintain(m: Maintenance): Promise<void> {
    await reindexStale(this.cols, m, { pointUpdates: true });
    await this.rebuildBucketsIfNeeded(m);
  }

  override async ensureIndexes(): Promise<void> {
    // None: FerretDB 1.24 never uses secondary indexes for reads (see the class comment).
  }

  private opsOf(type: string, docs: readonly BucketSource[], ops: Ops = emptyOps()): Ops {
    this.buckets.opsOf(type, docs, ops);
    this.time.opsOf(type, docs, ops);
    if (docs.length > 0) this.store.addToDir(ops, 'H', [type], '');
    return ops;
  }

  private opsOfVersions(versions: readonly LiveVersion[]): Ops {
    const ops = emptyOps();
    for (const v of versions) this.opsOf(v.type, [v.doc], ops);
    return ops;
  }

  override atCommitPoint(versions: readonly LiveVersion[]): void {
    this.store.stage(
      this.opsOfVersions(versions),
      versions.flatMap((v) => (v.doc.vid ? [historyId(v.type, v.doc._id, v.doc.vid)] : [])),
    );
  }

  override staged(): number {
    return this.store.stagedCount();
  }

  override async recordTrail(versions: readonly LiveVersion[]): Promise<void> {
    await this.store.record(this.opsOfVersions(versions));
  }

  /**
   * Stages the bucket entries of a batch's versions on this instance (they were staged where they
   * were committed, which may be another instance), so that the consumers after this one read
   * them; `onCommitted` stores the same entries at the end of the batch.
   */
  override async onHandedOn(events: readonly CommittedEvent[]): Promise<void> {
    const ops = this.opsOfVersions(await this.versionsOf(events));
    this.store.stage(ops);
    this.handedOn.set(events, ops);
  }

  /** Stores the bucket entries of committed versions (staged at their commit point and in onHandedOn). */
  override async onCommitted(events: readonly CommittedEvent[]): Promise<void> {
    const ops = this.handedOn.get(events) ?? this.opsOfVersions(await this.versionsOf(events));
    this.handedOn.delete(events);
    await this.store.record(ops);
  }

  private versionsOf(events: readonly CommittedEvent[]): Promise<LiveVersion[]> {
    return Promise.all(
      events.map(async (e) => ({
        type: e.type,
        doc: {
          _id: e.id,
          ...(e.resource ? this.index(e.resource) : { idx: {}, comp: [] }),
          vid: e.vid,
          ts: e.ts,
          deleted: !e.resource,
          ...(e.resource ? { res: e.resource, dec: e.dec, body: e.body } : {}),
          // Where older entries of a rewritten Observation lie (buckets.ts, "touched"); rare.
          ...(e.type === 'Observation' && e.vid > 1 ? { prior: await this.priorOf(e) } : {}),
        },
      })),
    );
  }

  private async priorOf(e: CommittedEvent): Promise<{ idx: IndexEntries; comp: string[] } | null> {
    const prev = await e.previous();
    return prev ? this.index(prev) : null;
  }

  override eraseStaged(type: string, docs: readonly BucketSource[], ids: ReadonlySet<string>, patients: readonly string[]): ErasePlan {
    const plan = mergeErasePlan({ entries: [{ keys: [...this.time.opsOf(type, docs).buckets.keys()], ids: [...ids] }], dirs: [], dirCodes: [] }, this.buckets.erasePlan(type, docs, ids, patients));
    this.store.dropStaged(plan);
    return plan;
  }

  override applyErase(plan: ErasePlan): Promise<number> {
    return this.store.applyErase(plan);
  }

  override async record(type: string, docs: readonly BucketSource[], concurrency = 1): Promise<void> {
    await this.store.record(this.opsOf(type, docs), concurrency);
  }

  /**
   * Fills the buckets from the stored documents and versions when they were never built or were
   * built with other definitions or another layout (one streaming pass each; before serving).
   */
  private async rebuildBucketsIfNeeded(m: Maintenance): Promise<void> {
    const want = `${BUCKET_LAYOUT}:${m.types.map((t) => `${t}=${m.definitions(t)}`).join(',')}`;
    if ((await this.cols.meta.findOne({ _id: BUCKETS_KEY }))?.value === want) return;
    await this.store.clear();
    for (const type of m.types) {
      const col = this.cols.current(type);
      const total = await col.countDocuments({});
      if (total > 0) m.progress(`building search buckets for ${total} ${type} resources`);
      // Current documents list their own version too (the scan's key order needs every one,
      // including those written around storage); a version met again in history reads once.
      await this.inBatches(col.find({}, { projection: { idx: 1, comp: 1, vid: 1, ts: 1, deleted: 1, res: 1, dec: 1, body: 1 }, batchSize: 1000 }), (batch) => this.store.record(this.opsOf(type, batch)));
    }
    m.progress('building history time buckets');
    const versions = this.cols.history.find({}, { projection: { type: 1, id: 1, vid: 1, ts: 1 }, batchSize: 1000 });
    await this.inBatches(versions, async (batch) => {
      const ops = emptyOps();
      for (const h of batch) this.opsOf(String(h.type), [{ _id: String(h.id), idx: {}, comp: [], vid: Number(h.vid), ts: h.ts as Date, deleted: true }], ops);
      await this.store.record(ops);
    });
    // Instances starting together both get here on a fresh database (FerretDB's upsert is not atomic).
    await upsertById(this.cols.meta, BUCKETS_KEY, { set: { value: want } });
  }

  private async inBatches<T>(docs: AsyncIterable<T>, fn: (batch: T[]) => Promise<void>): Promise<void> {
    let batch: T[] = [];
    for await (const d of docs) {
      batch.push(d);
      if (batch.length === 1000) {
        await fn(batch);
        batch = [];
      }
    }
    if (batch.length > 0) await fn(batch);
  }
}
