import { rowId, type NotificationRow, type SubscriptionState } from '../storage/state/subscriptions';

export type NewRow = Omit<NotificationRow, '_id' | 'num'>;

/** How many recorded history ids per subscription are remembered to recognise re-offered events. */
const RECENT = 512;

interface SubCounter {
  last: number;
  recent: string[];
  recentSet: Set<string>;
}

/**
 * Gives each subscription's notifications gap-free, increasing event numbers without
 * multi-document transactions. A number is claimed by inserting the row under the unique key
 * "<sub>#<n>", only ever for n = last + 1, so two writers cannot take the same number and no
 * number is skipped. The counter document is only a hint: the truth is which keys exist, and a
 * forward probe from the hint repairs a crash between the row inserts and the hint update.
 * Re-offered events are recognised by their history id among the recently recorded ones (the
 * outbox re-offers at most its last unacknowledged batch). Limit: the same event offered to two
 * processes at the same moment could be recorded twice under two numbers; the core's outbox
 * runs one consumer at a time (lease), and within a process recordings of one subscription are
 * serialised here.
 */
export class NotificationLog {
  private cache = new Map<string, SubCounter>();
  /** One recording at a time per subscription in this process (a re-offer racing its original). */
  private locks = new Map<string, Promise<unknown>>();

  constructor(private readonly state: SubscriptionState) {}

  private async load(sub: string, refresh = false): Promise<SubCounter> {
    let st = refresh ? undefined : this.cache.get(sub);
    if (!st) {
      const doc = await this.state.counter(sub);
      st = { last: doc?.last ?? 0, recent: doc?.recent ?? [], recentSet: new Set(doc?.recent ?? []) };
    }
    // Forward probe: rows written after the hint (a crash, or another writer).
    for (;;) {
      const next = await this.state.rowHistoryId(sub, st.last + 1);
      if (next === null) break;
      st.last += 1;
      this.remember(st, [next]);
    }
    this.cache.set(sub, st);
    return st;
  }

  private remember(st: SubCounter, ids: string[]): void {
    for (const id of ids) {
      st.recent.push(id);
      st.recentSet.add(id);
    }
    if (st.recent.length > RECENT) {
      for (const old of st.recent.splice(0, st.recent.length - RECENT)) st.recentSet.delete(old);
    }
  }

  async lastNumber(sub: string): Promise<number> {
    return (await this.load(sub, true)).last;
  }

  /** Inserts rows for one subscription, in the given (commit) order. Returns the rows newly recorded. */
  async record(sub: string, rows: NewRow[]): Promise<NotificationRow[]> {
    const prev = this.locks.get(sub) ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(() => this.recordNow(sub, rows));
    this.locks.set(sub, run);
    try {
      return await run;
    } finally {
      if (this.locks.get(sub) === run) this.locks.delete(sub);
    }
  }

  private async recordNow(sub: string, rows: NewRow[]): Promise<NotificationRow[]> {
    let st = await this.load(sub);
    const recorded: NotificationRow[] = [];
    let todo = rows.filter((r) => !st.recentSet.has(r.historyId));
    for (let attempt = 0; todo.length > 0; attempt++) {
      if (attempt > 50) throw new Error(`could not number notifications of Subscription/${sub}: too much contention`);
      const docs: NotificationRow[] = todo.map((r, k) => ({ ...r, _id: rowId(sub, st.last + 1 + k), num: st.last + 1 + k }));
      if (await this.state.insertRows(docs)) {
        recorded.push(...docs);
        st.last += docs.length;
        this.remember(st, docs.map((d) => d.historyId));
        todo = [];
      } else {
        // Someone else took a number: re-read what exists (ours included), then go on after it.
        st = await this.load(sub, true);
        for (const d of docs) if (st.recentSet.has(d.historyId)) recorded.push(d);
        todo = todo.filter((r) => !st.recentSet.has(r.historyId));
      }
    }
    if (recorded.length) {
      await this.state.saveCounter({ _id: sub, last: st.last, recent: st.recent });
    }
    return recorded;
  }

  /** Rows `from`..`from+count-1` that exist, in order, stopping at the first missing one. */
  readFrom(sub: string, from: number, count: number): Promise<NotificationRow[]> {
    return this.state.rowsFrom(sub, from, count);
  }
}
