import type { Collection, Document, Filter, WithoutId } from 'mongodb';
import { isDuplicateKey } from '../storage';

/**
 * Replaces a document by `_id`, inserting it when absent. FerretDB runs an upsert as "find, then
 * insert", so two racing upserts of a new `_id` make one fail with a duplicate key: the
 * document exists by then, and a plain replace finishes the job.
 */
export async function putById<T extends Document & { _id: string }>(col: Collection<T>, id: string, doc: WithoutId<T>): Promise<void> {
  const filter = { _id: id } as Filter<T>;
  try {
    await col.replaceOne(filter, doc, { upsert: true });
  } catch (e) {
    if (!isDuplicateKey(e)) throw e;
    await col.replaceOne(filter, doc);
  }
}
