import type { Collection, Db, Document, Filter, Sort } from 'mongodb';
import type { AccessPolicy } from '../../auth/types';
import { type Cond, evaluate, toMongo } from '../../search/cond';
import type { Collections } from '../collections';
import type { Engine } from '../engine';
import { findByIds } from '../lookup';
import type { CurrentDoc } from '../types';
import type { BucketSource } from './buckets';
import { type ErasePlan, emptyErasePlan } from './erase-plan';
import type { CountQuery, Explanation, HistoryIds, HistoryQuery, IndexSpec, LastnQuery, LiveVersion, Maintenance, PageQuery, QueryExecutor, SearchPage } from './executor';
import type { CommittedEvent } from '../outbox';
import { hasElemRange, keysetCond, relax, sortValue } from './keys';
import { reindexStale } from './reindex';
import { restoreDecimals } from '../../json';

/**
 * The filter strategy: every query becomes one MongoDB filter (the condition, `deleted: false`
 * and the access policy) served by the compound indexes `maintain` creates. Conditions with
 * `$elemMatch` ranges are run relaxed and re-checked in memory, because FerretDB 1.24 does not
 * bind such bounds to one element; on MongoDB the re-check only confirms, so this executor is
 * exact on both and the corpus test runs it on the embedded engine too.
 */
export class MongoExecutor implements QueryExecutor {
  readonly engine: Engine = 'mongodb';

  constructor(
    protected readonly db: Db,
    protected readonly cols: Collections,
  ) {}

  /** Queried untyped: filters are built from conditions over any field of the document. */
  protected col(type: string): Collection<Document> {
    return this.db.collection(type);
  }

  /** The complete filter: the query, not deleted, and what the caller may read. */
  filter(type: string, cond: Cond, policy: AccessPolicy): Filter<Document> {
    const parts: Filter<Document>[] = [{ deleted: false }];
    if (!(cond.k === 'const' && cond.v)) parts.push(toMongo(cond));
    const pc = policy.readCond(type);
    if (pc) parts.push(toMongo(pc));
    return parts.length === 1 ? parts[0] : { $and: parts };
  }

  async page(q: PageQuery): Promise<CurrentDoc[]> {
    const order = q.order ?? [{ field: '_id', dir: 1 }];
    const recheck = hasElemRange(q.cond);
    const projection = q.fields ? projectionOf([...q.fields, ...(recheck ? ['idx', 'comp'] : [])], order) : undefined;
    const sort: Sort = Object.fromEntries(order.map((k) => [k.field, k.dir]));
    const filter = this.filter(q.type, recheck ? relax(q.cond, true) : q.cond, q.policy);
    const out: CurrentDoc[] = [];
    let after = q.after;
    const batch = recheck ? Math.max(q.limit, 100) : q.limit;
    for (;;) {
      const f = after ? { $and: [filter, toMongo(keysetCond(order, after))] } : filter;
      const rows = (await this.col(q.type).find(f, { projection, sort, limit: batch }).toArray()) as unknown as CurrentDoc[];
      for (const r of rows) {
        if (!recheck || evaluate(q.cond, r)) out.push(restoreDecimals(r));
        if (out.length >= q.limit) return out;
      }
      if (!recheck || rows.length < batch) return out;
      const lastRow = rows[rows.length - 1];
      after = order.map((k) => (k.field === '_id' ? lastRow._id : sortValue(lastRow, k.field)));
    }
  }

  async count(q: CountQuery): Promise<number> {
    if (!hasElemRange(q.cond)) return this.col(q.type).countDocuments(this.filter(q.type, q.cond, q.policy));
    let n = 0;
    for await (const r of this.col(q.type).find(this.filter(q.type, relax(q.cond, true), q.policy), { projection: { idx: 1, comp: 1 } })) {
      if (evaluate(q.cond, r)) n++;
    }
    return n;
  }

  /** The exact check of a current document: not deleted, matching, readable (`policyCond`: the policy's readCond). */
  protected matches(cond: Cond, policyCond: Cond | undefined, d: CurrentDoc): boolean {
    return !d.deleted && evaluate(cond, d) && (!policyCond || evaluate(policyCond, d));
  }

  async searchPage(q: PageQuery): Promise<SearchPage> {
    return { docs: await this.page(q), scanned: false };
  }

  /** Served from the history indexes (storage's history-plan.ts runs the filter). */
  async historyIds(_q: HistoryQuery): Promise<HistoryIds | undefined> {
    return undefined;
  }

  async recordTrail(_versions: readonly LiveVersion[]): Promise<void> {
    // Nothing beside the current documents.
  }

  async byIds(type: string, ids: readonly string[], policy: AccessPolicy): Promise<CurrentDoc[]> {
    return this.page({ type, cond: { k: 'in', f: '_id', v: [...ids] }, policy, limit: ids.length, fields: ['res', 'comp'] });
  }

  /** Per subject and code, the newest `max` from the lastn_subject_code_date index. */
  async lastn(q: LastnQuery): Promise<CurrentDoc[]> {
    if (hasElemRange(q.cond)) return this.lastnScan(q);
    const col = this.col('Observation');
    const filter = this.filter('Observation', q.cond, q.policy);
    const noSubject = { 'idx.subject': { $exists: false } };
    const subjects = ((await col.distinct('idx.subject', filter)) as unknown[]).filter((x): x is string => typeof x === 'string');
    const keys: (string | null)[] = subjects;
    if (keys.length === 0 || (await col.countDocuments({ $and: [filter, noSubject] }, { limit: 1 })) > 0) keys.push(null);
    const out: CurrentDoc[] = [];
    for (const subj of keys) {
      const sf: Filter<Document> = { $and: [filter, subj === null ? noSubject : { 'idx.subject': subj }] };
      const codes = ((await col.distinct('idx.code:s', sf)) as unknown[]).filter((c): c is string => typeof c === 'string');
      for (const c of codes) {
        const sort: Sort = { 'idx.date.l': -1, _id: 1 };
        out.push(...((await col.find({ $and: [sf, { 'idx.code:s': c }] }, { projection: { res: 1, dec: 1, body: 1 }, sort, limit: q.max }).toArray()) as unknown as CurrentDoc[]).map(restoreDecimals));
      }
    }
    return out;
  }

  /** $lastn in one pass, newest first, grouped in memory (one scan beats a query per code where every query scans). */
  protected async lastnScan(q: LastnQuery): Promise<CurrentDoc[]> {
    const recheck = hasElemRange(q.cond);
    const filter = this.filter('Observation', relax(q.cond, true), q.policy);
    const taken = new Map<string, number>();
    const projection = recheck ? { res: 1, dec: 1, idx: 1, comp: 1 } : { res: 1, dec: 1, 'idx.subject': 1, 'idx.code:s': 1 };
    const out: CurrentDoc[] = [];
    for await (const d of this.col('Observation').find(filter, { projection, sort: { 'idx.date.l': -1, _id: 1 } })) {
      if (recheck && !evaluate(q.cond, d)) continue;
      const key = `${String(d.idx?.subject ?? '')} ${String(d.idx?.['code:s'] ?? '')}`;
      const n = taken.get(key) ?? 0;
      if (n >= q.max) continue;
      taken.set(key, n + 1);
      out.push(restoreDecimals(d as unknown as CurrentDoc));
    }
    return out;
  }

  async explain(q: PageQuery): Promise<Explanation> {
    const filter = this.filter(q.type, hasElemRange(q.cond) ? relax(q.cond, true) : q.cond, q.policy);
    const sort: Sort = Object.fromEntries((q.order ?? [{ field: '_id', dir: 1 }]).map((k) => [k.field, k.dir])) as Record<string, 1 | -1>;
    const plan = await this.col(q.type).find(filter, { sort, limit: q.limit }).explain('queryPlanner');
    return { filter, sort, limit: q.limit, plan };
  }

  async maintain(m: Maintenance): Promise<void> {
    await reindexStale(this.cols, m, { pointUpdates: false });
  }

  async ensureIndexes(specs: ReadonlyMap<string, IndexSpec[]>): Promise<void> {
    for (const [type, list] of specs) await this.createIndexes(type, list);
  }

  /** Creates the search indexes of a type, replacing one of the same name with another definition. */
  private async createIndexes(type: string, specs: IndexSpec[]): Promise<void> {
    const col = this.col(type);
    for (const s of specs) {
      try {
        await col.createIndex(s.key, { name: s.name });
      } catch (e) {
        const code = (e as { code?: number }).code;
        if (code !== 85 && code !== 86) throw e;
        await col.dropIndex(s.name);
        await col.createIndex(s.key, { name: s.name });
      }
    }
  }

  atCommitPoint(_versions: readonly LiveVersion[]): void {
    // MongoDB serves every query from indexes: nothing to stage.
  }

  staged(): number {
    return 0;
  }

  async onHandedOn(_events: readonly CommittedEvent[]): Promise<void> {
    // Nothing beside the current documents.
  }

  async onCommitted(_events: readonly CommittedEvent[]): Promise<void> {
    // Nothing beside the current documents.
  }

  /** Nothing engine-side to erase: MongoDB answers from its own indexes of the current documents. */
  eraseStaged(_type: string, _docs: readonly BucketSource[], _ids: ReadonlySet<string>, _patients: readonly string[]): ErasePlan {
    return emptyErasePlan();
  }

  async applyErase(_plan: ErasePlan): Promise<number> {
    return 0;
  }

  async record(_type: string, _docs: readonly BucketSource[], _concurrency?: number): Promise<void> {
    // Nothing beside the current documents.
  }
}

/** A projection of top-level fields plus the (dotted) sort fields. */
function projectionOf(fields: string[], order: { field: string }[]): Document {
  const p: Document = {};
  for (const f of fields) p[f] = 1;
  if (p.res) p.dec = 1; // the decimal texts travel with the resource
  for (const k of order) if (k.field !== '_id') p[k.field] = 1;
  return p;
}

/** Point reads by id, then the checks a filter would make (current, matching, readable). */
export async function pointReads(col: Collection<CurrentDoc>, ids: readonly string[], cond: Cond | undefined, policy: AccessPolicy): Promise<CurrentDoc[]> {
  const docs = (await findByIds(col, ids)).map(restoreDecimals);
  const pc = policy.readCond(col.collectionName);
  return docs.filter((d) => !d.deleted && (!cond || evaluate(cond, d)) && (!pc || evaluate(pc, d)));
}

