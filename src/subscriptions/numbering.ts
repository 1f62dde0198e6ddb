import type { Collections, NotificationRow } from './collections';
import { isDuplicateKey } from './collections';

export type NewRow = Omit<NotificationRow, 'num'>;

/**
 * Gives each subscription's notification rows gap-free, increasing event numbers without
 * multi-document transactions. The numbers live only in the rows: the next number is the
 * highest stored one plus one, a unique (sub, num) index stops two writers from taking the same
 * number, and the row id (subscription + history id) makes a re-offered event a no-op. A crash
 * between two inserts therefore leaves no gap: the next writer continues from the last row.
 * The last number per subscription is cached; a collision refreshes it from the database.
 */
export class NotificationLog {
  private last = new Map<string, number>();

  constructor(private readonly c: Collections) {}

  async lastNumber(sub: string): Promise<number> {
    const top = await this.c.rows.find({ sub }, { projection: { num: 1 } }).sort({ num: -1 }).limit(1).next();
    return top?.num ?? 0;
  }

  /** Inserts rows for one subscription, in the given (commit) order. Returns the rows newly recorded. */
  async record(sub: string, rows: NewRow[]): Promise<NotificationRow[]> {
    let todo = rows;
    let next = (this.last.get(sub) ?? (await this.lastNumber(sub))) + 1;
    const recorded: NotificationRow[] = [];
    for (let attempt = 0; todo.length > 0; attempt++) {
      if (attempt > 50) throw new Error(`could not number notifications of Subscription/${sub}: too much contention`);
      const docs = todo.map((r, k) => ({ ...r, num: next + k }) as NotificationRow);
      try {
        await this.c.rows.insertMany(docs, { ordered: true });
        recorded.push(...docs);
        this.last.set(sub, next + docs.length - 1);
        return recorded;
      } catch (e) {
        if (!isDuplicateKey(e)) throw e;
        // Which of ours exist now (inserted before the failure, or recorded by an earlier offer)?
        const ids = todo.map((r) => r._id);
        const present = await this.c.rows.find({ _id: { $in: ids } }).toArray();
        const presentIds = new Set(present.map((p) => p._id));
        for (const d of docs) {
          const stored = present.find((p) => p._id === d._id);
          if (stored && stored.num === d.num) recorded.push(d);
        }
        todo = todo.filter((r) => !presentIds.has(r._id));
        next = (await this.lastNumber(sub)) + 1;
      }
    }
    this.last.set(sub, next - 1);
    return recorded;
  }

  forget(sub: string): void {
    this.last.delete(sub);
  }
}
