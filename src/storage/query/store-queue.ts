import type { Dir, Entry, Ops } from './bucket-store';

/**
 * The queue in front of BucketStore's stores: one store at a time (`$push`/`$addToSet` are
 * read-modify-write on FerretDB), and what queued meanwhile goes in the next one together, one
 * update per bucket for all of it. Under a stream of readings the buckets every reading touches
 * (a code's, the history minute's) are then rewritten once per store, not once per outbox batch,
 * and that rewrite is most of what storing costs.
 */

/** Stores a set of ops, updating up to `concurrency` distinct buckets at once. */
export type StoreOps = (ops: Ops, concurrency: number) => Promise<void>;

interface QueuedStore {
  ops: Ops;
  concurrency: number;
  settle: (e?: unknown) => void;
}
/** Work that must see the buckets with no store in progress (erasure's rewrites of shared buckets). */
interface QueuedTask {
  task: () => Promise<void>;
}

export class StoreQueue {
  private queued: (QueuedStore | QueuedTask)[] = [];
  private storing = false;

  constructor(private readonly store: StoreOps) {}

  /** Settles once `ops` are stored, together with whatever queued beside them. */
  add(ops: Ops, concurrency: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queued.push({ ops, concurrency, settle: (e) => (e === undefined ? resolve() : reject(e)) });
      if (!this.storing) void this.storeQueued();
    });
  }

  /**
   * Runs `task` alone, after the stores queued before it and before those queued after it: a
   * read-modify-write of a bucket must not interleave with an append to it, or the append is lost.
   */
  exclusive<T>(task: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queued.push({ task: () => task().then(resolve, reject) });
      if (!this.storing) void this.storeQueued();
    });
  }

  private async storeQueued(): Promise<void> {
    this.storing = true;
    try {
      while (this.queued.length > 0) {
        const first = this.queued[0];
        if ('task' in first) {
          this.queued.shift();
          await first.task();
          continue;
        }
        // The stores up to the next task go together.
        const end = this.queued.findIndex((q) => 'task' in q);
        const group = this.queued.splice(0, end < 0 ? this.queued.length : end) as QueuedStore[];
        const ops = group.length === 1 ? group[0].ops : mergeOps(group.map((g) => g.ops));
        try {
          await this.store(ops, Math.max(...group.map((g) => g.concurrency)));
          for (const g of group) g.settle();
        } catch (e) {
          for (const g of group) g.settle(e ?? new Error('storing search entries failed'));
        }
      }
    } finally {
      this.storing = false;
    }
  }
}

/** Ops with each bucket's entries keyed by token (staged entries, or a merge in progress). */
export interface OpsByToken {
  buckets: Map<string, Map<string, Entry>>;
  dirs: Map<string, Dir>;
}

/**
 * The one way ops are merged: adds `ops` to `into`, where an entry whose token is there already
 * (a version staged twice, a batch offered again) stays as it was, and a directory gets the union
 * of the codes (new sets: `into` never shares one with `ops`). `copy` makes what goes in of a new entry.
 */
export function mergeInto(into: OpsByToken, ops: Ops, copy: (e: Entry) => Entry = (e) => e): void {
  for (const [key, entries] of ops.buckets) {
    const m = into.buckets.get(key) ?? new Map<string, Entry>();
    for (const e of entries) {
      const t = token(e);
      if (!m.has(t)) m.set(t, copy(e));
    }
    // A bucket goes in with its first entry (a merge stores no empty bucket).
    if (m.size > 0) into.buckets.set(key, m);
  }
  for (const [key, units] of ops.dirs) {
    const m = into.dirs.get(key) ?? new Map<string, Set<string>>();
    for (const [u, codes] of units) m.set(u, new Set([...(m.get(u) ?? []), ...codes]));
    into.dirs.set(key, m);
  }
}

/** Several batches' ops as one, in order; an entry twice (a batch offered again) goes once. */
function mergeOps(all: readonly Ops[]): Ops {
  const into: OpsByToken = { buckets: new Map(), dirs: new Map() };
  for (const ops of all) mergeInto(into, ops);
  return { buckets: new Map([...into.buckets].map(([key, m]) => [key, [...m.values()]])), dirs: into.dirs };
}

/** Identifies an entry's content, so staging and storing the same version twice is harmless. */
export function token(e: Entry): string {
  return `${e.i} ${e.d?.vid ?? ''} ${JSON.stringify(e.x)}`;
}
