import { Errors } from '../errors';
import { type Collections, isDuplicateKey } from './collections';

/** Named locks expire so a crashed holder cannot block the others forever. */
const LOCK_TTL_MS = 30_000;

/**
 * Named locks built on a unique `_id` insert (atomic on every engine); an expired lock is taken
 * over by a conditional update. Used to serialise conditional creates and updates.
 */
export class NamedLocks {
  constructor(private readonly cols: Collections) {}

  /** Runs `fn` holding the named lock, released however `fn` ends. */
  async with<T>(name: string, fn: () => Promise<T>): Promise<T> {
    await this.acquire(name);
    try {
      return await fn();
    } finally {
      await this.cols.locks.deleteOne({ _id: name });
    }
  }

  /** Takes a named lock, waiting while another request holds it; stale locks are taken over. */
  private async acquire(name: string): Promise<void> {
    const deadline = Date.now() + LOCK_TTL_MS;
    for (let wait = 5; ; wait = Math.min(wait * 2, 100)) {
      const now = new Date();
      try {
        await this.cols.locks.insertOne({ _id: name, until: new Date(now.getTime() + LOCK_TTL_MS) });
        return;
      } catch (e) {
        if (!isDuplicateKey(e)) throw e;
      }
      const stolen = await this.cols.locks.updateOne(
        { _id: name, until: { $lt: now } },
        { $set: { until: new Date(now.getTime() + LOCK_TTL_MS) } },
      );
      if (stolen.modifiedCount === 1) return;
      if (Date.now() > deadline) throw Errors.unavailable('The server is busy with the same conditional request; try again', 'MSG_LOCK_TIMEOUT');
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}
