import type { Collection, Document, Filter, FindOptions, WithId } from 'mongodb';

/**
 * Fetches documents by `_id`, one point lookup each. FerretDB (SQLite) answers only a filter
 * that is exactly `{ _id: value }` from its primary key; `{ _id: { $in: [...] } }` scans the
 * whole collection. Parallel point lookups are fast on both FerretDB and MongoDB.
 */
export async function findByIds<T extends Document & { _id: string }>(
  col: Collection<T>,
  ids: readonly string[],
  options?: FindOptions,
): Promise<WithId<T>[]> {
  const unique = [...new Set(ids)];
  const docs = await Promise.all(unique.map((id) => col.findOne({ _id: id } as Filter<T>, options)));
  const out: WithId<T>[] = [];
  for (const d of docs) if (d !== null) out.push(d as WithId<T>);
  return out;
}
