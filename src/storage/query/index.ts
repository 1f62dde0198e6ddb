import type { Db } from 'mongodb';
import { Collections } from '../collections';
import type { Engine } from '../engine';
import type { IndexFn } from '../versions';
import type { QueryExecutor } from './executor';
import type { OpenVersions } from './bucket-store';
import { FerretExecutor } from './ferret';
import { MongoExecutor } from './mongo';

export type { CountQuery, Explanation, HistoryIds, HistoryQuery, IndexSpec, LastnQuery, LiveVersion, Maintenance, PageQuery, QueryExecutor, SearchPage } from './executor';
export type { BucketPlan } from './bucket-plan';
export type { BucketSource } from './buckets';
export { BUCKET_COLLECTION } from './bucket-store';
export type { ScanPoint } from './time-buckets';
export { DATE_SORT, hasElemRange, keysetCond, relax, sortValue, type KeyValue, type SortKey } from './keys';

/** The executor of a database kind (chosen once, at start-up). */
export function createExecutor(engine: Engine, db: Db, index: IndexFn, opts: { scanBudget?: number; open?: OpenVersions } = {}): QueryExecutor {
  const cols = new Collections(db);
  return engine === 'ferretdb' ? new FerretExecutor(db, cols, index, opts.scanBudget, opts.open) : new MongoExecutor(db, cols);
}
