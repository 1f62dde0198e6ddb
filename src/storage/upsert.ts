import type { Collection, Document, Filter, MatchKeysAndValues, UpdateFilter } from 'mongodb';
import { isDuplicateKey } from './collections';

/**
 * Creates or updates one document by `_id`, safe when several instances do it at once (start-up
 * seeding: registration files, meta keys). FerretDB's upsert is not atomic: of two racing
 * upserts of a missing document both may try the insert, and the loser fails on the unique
 * `_id` the winner just wrote. The loser then applies its change as a plain update, so each
 * caller's `set` lands and the document exists once; `onInsert` is the winner's alone.
 */
export async function upsertById<T extends Document & { _id: string }>(
  col: Collection<T>,
  id: string,
  change: { set: Partial<T>; unset?: readonly string[]; onInsert?: Partial<T> },
): Promise<void> {
  const filter = { _id: id } as Filter<T>;
  const unset = change.unset?.length ? { $unset: Object.fromEntries(change.unset.map((k) => [k, ''])) } : {};
  const update = { $set: change.set as MatchKeysAndValues<T>, ...unset } as UpdateFilter<T>;
  const withInsert = change.onInsert && Object.keys(change.onInsert).length ? { ...update, $setOnInsert: change.onInsert } : update;
  try {
    await col.updateOne(filter, withInsert as UpdateFilter<T>, { upsert: true });
  } catch (e) {
    if (!isDuplicateKey(e)) throw e;
    await col.updateOne(filter, update);
  }
}

/** Inserts a document whose `_id` is its identity; false when one with that `_id` exists already. */
export async function insertUnique<T extends Document & { _id: string }>(col: Collection<T>, doc: T): Promise<boolean> {
  try {
    await col.insertOne(doc as never);
    return true;
  } catch (e) {
    if (isDuplicateKey(e)) return false;
    throw e;
  }
}
