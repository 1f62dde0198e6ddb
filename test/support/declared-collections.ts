import type { Db } from 'mongodb';
import { SERVED_TYPES } from '../../src/resources/registry';
import { declaredCollections } from '../../src/storage/state';

/**
 * Collections in `db` that are neither a served resource type nor declared behind the storage
 * wall (src/storage/state/index.ts): code that opened a collection around the wall.
 */
export async function undeclaredCollections(db: Db): Promise<string[]> {
  const known = new Set([...SERVED_TYPES, ...declaredCollections()]);
  const names = (await db.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name);
  return names.filter((n) => !known.has(n) && !n.startsWith('system.')).sort();
}
