import type { Db } from 'mongodb';
import type { AccessPolicy } from '../../auth/types';
import type { Collections } from '../collections';
import type { Engine } from '../engine';
import type { CommittedEvent } from '../outbox';
import type { CurrentDoc } from '../types';
import type { IndexFn } from '../versions';
import { collectCandidates, compareBy, lastnViaBuckets, type WalkInput } from './bucket-walk';
import { BUCKET_LAYOUT, BucketIndex, type BucketSource } from './buckets';
import type { CountQuery, Explanation, LastnQuery, LiveVersion, Maintenance, PageQuery } from './executor';
import { DATE_SORT, keysetCond } from './keys';
import { MongoExecutor, pointReads } from './mongo';
import { reindexStale } from './reindex';
import { upsertById } from '../upsert';

/** `meta` key: the layout and Observation definitions the buckets were built with. */
const BUCKETS_KEY = 'search.buckets';
/** Up to this many ids, point reads beat one `$in` filter (which FerretDB answers with a scan). */
const MAX_POINT_READS = 50;

/**
 * The embedded engine's strategy (FerretDB 1.24 on SQLite pushes down only a bare `{ _id }`
 * filter): the remote-monitoring queries are answered from candidate buckets keyed by `_id`
 * (buckets.ts) plus point reads, each candidate checked exactly; what the buckets cannot bound
 * falls back to the filter strategy, which scans here. No secondary indexes are created: they
 * are never used for reads, and maintaining them made single inserts 20-35 % slower.
 */
export class FerretExecutor extends MongoExecutor {
  override readonly engine: Engine = 'ferretdb';
  private readonly buckets: BucketIndex;

  constructor(
    db: Db,
    cols: Collections,
    private readonly index: IndexFn,
  ) {
    super(db, cols);
    this.buckets = new BucketIndex(db);
  }

  private walkInput(type: string, q: { cond: PageQuery['cond']; policy: AccessPolicy }): WalkInput | undefined {
    const plan = this.buckets.plan(type, q.cond);
    return plan && { buckets: this.buckets, col: this.cols.current(type), plan, cond: q.cond, policy: q.policy };
  }

  /** Bucket walks serve `_id` order and `date` order (then `_id`); anything else uses the filter. */
  override async page(q: PageQuery): Promise<CurrentDoc[]> {
    const order = q.order ?? [{ field: '_id', dir: 1 }];
    let mode: 'none' | 'asc' | 'desc' | undefined;
    if (order.length === 1 && order[0].field === '_id') mode = 'none';
    else if (order.length === 2 && order[0].field === DATE_SORT && order[1].field === '_id') mode = order[0].dir === 1 ? 'asc' : 'desc';
    const w = mode && this.walkInput(q.type, q);
    if (!mode || !w) return super.page(q);
    const afterCond = q.after ? keysetCond(order, q.after) : undefined;
    const from = mode !== 'none' && q.after?.[0] instanceof Date ? q.after[0].getTime() : undefined;
    const afterId = mode === 'none' && typeof q.after?.[0] === 'string' ? q.after[0] : undefined;
    const found = await collectCandidates(w, mode, from, afterCond, q.limit, afterId);
    return found.sort(compareBy(order)).slice(0, q.limit);
  }

  override async count(q: CountQuery): Promise<number> {
    const w = this.walkInput(q.type, q);
    if (!w) return super.count(q);
    return (await collectCandidates(w, 'none', undefined, undefined, Infinity)).length;
  }

  override async byIds(type: string, ids: readonly string[], policy: AccessPolicy): Promise<CurrentDoc[]> {
    if (ids.length > MAX_POINT_READS) return super.byIds(type, ids, policy);
    return pointReads(this.cols.current(type), ids, undefined, policy);
  }

  /** From a patient's buckets when the query pins one; otherwise one scan grouped in memory. */
  override async lastn(q: LastnQuery): Promise<CurrentDoc[]> {
    const w = this.walkInput('Observation', q);
    if (w?.plan.patients) return lastnViaBuckets(w, q.max);
    return this.lastnScan(q);
  }

  override async explain(q: PageQuery): Promise<Explanation> {
    const x = await super.explain(q);
    const buckets = this.buckets.plan(q.type, q.cond);
    return buckets ? { ...x, buckets } : x;
  }

  override async maintain(m: Maintenance): Promise<void> {
    await reindexStale(this.cols, m, { pointUpdates: true });
    await this.rebuildBucketsIfNeeded(m);
  }

  override async ensureIndexes(): Promise<void> {
    // None: FerretDB 1.24 never uses secondary indexes for reads (see the class comment).
  }

  override atCommitPoint(versions: readonly LiveVersion[]): void {
    const byType = new Map<string, BucketSource[]>();
    for (const v of versions) byType.set(v.type, [...(byType.get(v.type) ?? []), v.doc]);
    for (const [type, docs] of byType) this.buckets.stage(type, docs);
  }

  /** Stores the bucket entries of committed Observation versions (staged at their commit point). */
  override async onCommitted(events: readonly CommittedEvent[]): Promise<void> {
    const docs: BucketSource[] = [];
    for (const e of events) {
      if (e.type !== 'Observation' || !e.resource) continue;
      docs.push({ _id: e.id, ...this.index(e.resource) });
    }
    await this.buckets.record('Observation', docs);
  }

  override async erase(type: string, docs: readonly BucketSource[], ids: ReadonlySet<string>, patients: readonly string[]): Promise<number> {
    return this.buckets.erase(type, docs, ids, patients);
  }

  override async record(type: string, docs: readonly BucketSource[]): Promise<void> {
    await this.buckets.record(type, docs);
  }

  /**
   * Fills the candidate buckets from the stored Observations when they were never built or were
   * built with other definitions or another layout (one streaming pass; before serving).
   */
  private async rebuildBucketsIfNeeded(m: Maintenance): Promise<void> {
    if (!m.types.includes('Observation')) return;
    const want = `${BUCKET_LAYOUT}:${m.definitions('Observation')}`;
    if ((await this.cols.meta.findOne({ _id: BUCKETS_KEY }))?.value === want) return;
    await this.buckets.clear();
    const col = this.cols.current('Observation');
    const total = await col.countDocuments({ deleted: false });
    if (total > 0) m.progress(`building search buckets for ${total} Observations`);
    let batch: BucketSource[] = [];
    let done = 0;
    for await (const d of col.find({ deleted: false }, { projection: { idx: 1, comp: 1 }, batchSize: 1000 })) {
      batch.push(d);
      if (batch.length === 1000) {
        await this.buckets.record('Observation', batch);
        done += batch.length;
        batch = [];
        m.progress(`search buckets: ${done}/${total}`);
      }
    }
    await this.buckets.record('Observation', batch);
    // Instances starting together both get here on a fresh database (FerretDB's upsert is not atomic).
    await upsertById(this.cols.meta, BUCKETS_KEY, { set: { value: want } });
  }
}
