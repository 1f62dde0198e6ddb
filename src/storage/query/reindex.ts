import { isDuplicateKey, type Collections } from '../collections';
import { findByIds } from '../lookup';
import type { Maintenance } from './executor';

/** `meta` key of the fingerprint of a type's search definitions the stored index values were built with. */
const HASH_KEY = (type: string) => `search.indexHash.${type}`;

/**
 * Re-indexes stored resources of every type whose search definitions changed since the last
 * run (before serving). One pass for the ids, then point reads and writes: on FerretDB any
 * other filter scans the collection, which would make a batched walk quadratic.
 */
export async function reindexStale(cols: Collections, m: Maintenance, opts: { pointUpdates: boolean }): Promise<void> {
  for (const type of m.types) {
    const hash = m.definitions(type);
    const cur = await cols.meta.findOne({ _id: HASH_KEY(type) });
    if (cur?.value === hash) continue;
    const col = cols.current(type);
    const total = await col.countDocuments({ deleted: false });
    if (total > 0) m.progress(`re-indexing ${total} ${type} resources (search definitions changed)`);
    const ids = (await col.find({ deleted: false }, { projection: { _id: 1 } }).toArray()).map((d) => String(d._id));
    let done = 0;
    for (let i = 0; i < ids.length; i += 200) {
      const batch = await findByIds(col, ids.slice(i, i + 200), { projection: { res: 1, vid: 1, deleted: 1 } });
      await Promise.all(
        batch
          .filter((d) => !d.deleted)
          .map((d) => {
            const { idx, comp } = m.index(d.res);
            // A concurrent write of a newer version indexes itself; only this version is updated
            // (FerretDB: a bare _id filter, since this runs before serving and nothing else writes).
            return col.updateOne(opts.pointUpdates ? { _id: d._id } : { _id: d._id, vid: d.vid }, { $set: { idx, comp } });
          }),
      );
      done += batch.length;
      if (done % 5000 < 200 || i + 200 >= ids.length) m.progress(`re-indexed ${done}/${total} ${type}`);
    }
    // Two instances starting on a fresh database both get here; FerretDB's upsert is not atomic,
    // so the loser's insert half fails on the key the winner just wrote: then a plain update.
    await cols.meta.updateOne({ _id: HASH_KEY(type) }, { $set: { value: hash } }, { upsert: true }).catch(async (e: unknown) => {
      if (!isDuplicateKey(e)) throw e;
      await cols.meta.updateOne({ _id: HASH_KEY(type) }, { $set: { value: hash } });
    });
  }
}
