import type { Db } from 'mongodb';

/**
 * The database kinds storage knows. They differ in what the query planner can use (see
 * src/storage/README.md): MongoDB serves filters from compound indexes; FerretDB 1.24 pushes
 * down only a bare `{ _id }` filter, so its executor reads candidate buckets and point reads.
 */
export type Engine = 'mongodb' | 'ferretdb';

export async function detectEngine(db: Db): Promise<Engine> {
  try {
    const info = await db.admin().command({ buildInfo: 1 });
    return 'ferretdbVersion' in info ? 'ferretdb' : 'mongodb';
  } catch {
    return 'mongodb';
  }
}
