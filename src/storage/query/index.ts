import type { Db } from 'mongodb';
import { Collections } from '../collections';
import type { Engine } from '../engine';
import type { IndexFn } from '../versions';
import type { QueryExecutor } from './executor';
import { FerretExecutor } from './ferret';
import { MongoExecutor } from './mongo';

export type { CountQuery, Explanation, IndexSpec, LastnQuery, LiveVersion, Maintenance, PageQuery, QueryExecutor } from './executor';
export type { BucketPlan, BucketSource } from './buckets';
export { BUCKET_COLLECTION } from './buckets';
export { DATE_SORT, hasElemRange, keysetCond, relax, sortValue, type KeyValue, type SortKey } from './keys';

/** The executor of a database kind (chosen once, at start-up). */
export function createExecutor(engine: Engine, db: Db, index: IndexFn): QueryExecutor {
  const cols = new Collections(db);
  return engine === 'ferretdb' ? new FerretExecutor(db, cols, index) : new MongoExecutor(db, cols);
}
