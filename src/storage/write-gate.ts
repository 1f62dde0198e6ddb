import type { Collection, Db, Document } from 'mongodb';
import type { Engine } from './engine';

/**
 * The driver calls that write. On FerretDB/SQLite each is one SQLite write transaction, and
 * SQLite admits one writer at a time: a second one that finds the lock taken sleeps in SQLite's
 * busy handler (1, 2, 5, 10 ... ms) and tries again. Measured on the embedded engine, single
 * inserts from 2 concurrent callers had a p99 of 39 ms against 5 ms from one, from 8 callers
 * 106 ms: the sleeping, not the work, makes the tail.
 */
const WRITES = new Set([
  'insertOne', 'insertMany', 'updateOne', 'updateMany', 'replaceOne', 'deleteOne', 'deleteMany',
  'findOneAndUpdate', 'findOneAndReplace', 'findOneAndDelete', 'bulkWrite',
]);

const gated = new WeakMap<Db, { gate: WriteGate; db: Db }>();

/** The same database whose writes go through the same gate as background writes (or `db` itself, ungated). */
export function backgroundWrites(db: Db): Db {
  const g = gated.get(db);
  return g ? g.gate.wrap(g.db, { background: true }) : db;
}

/**
 * Admits at most `limit` writes at once, in arrival order, except that writes marked
 * `background` (storage's own search entries, which nobody waits for) go only when no other
 * write waits. Reads never wait here: SQLite's readers do not block its writer.
 */
export class WriteGate {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly background: Array<() => void> = [];

  constructor(private readonly limit: number) {}

  async run<T>(fn: () => Promise<T>, background = false): Promise<T> {
    if (this.active >= this.limit || this.waiting.length > 0 || (background && this.background.length > 0)) {
      await new Promise<void>((resolve) => (background ? this.background : this.waiting).push(resolve));
    } else {
      this.active++;
    }
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  /** Hands the slot straight to the next waiter (the count stays), or frees it. */
  private release(): void {
    const next = this.waiting.shift() ?? this.background.shift();
    if (next) next();
    else this.active--;
  }

  /** A view of `db` whose collections pass their writes through this gate. */
  wrap(db: Db, opts: { background?: boolean } = {}): Db {
    const gate = this;
    const view = new Proxy(db, {
      get(target, prop, receiver) {
        if (prop !== 'collection') return Reflect.get(target, prop, receiver);
        return (name: string, o?: object) => gate.wrapCollection(target.collection(name, o), opts.background ?? false);
      },
    });
    gated.set(view, { gate, db });
    return view;
  }

  private wrapCollection<T extends Document>(col: Collection<T>, background: boolean): Collection<T> {
    const gate = this;
    return new Proxy(col, {
      get(target, prop, receiver) {
        const v: unknown = Reflect.get(target, prop, receiver);
        if (typeof prop !== 'string' || !WRITES.has(prop) || typeof v !== 'function') return v;
        return (...args: unknown[]) => gate.run(() => (v as (...a: unknown[]) => Promise<unknown>).apply(target, args), background);
      },
    });
  }
}

/**
 * The database as everything above storage should use it: on FerretDB, its writes pass one
 * gate of `writers` (what SQLite's one writer rewards); MongoDB's are not held back.
 */
export function gateWritesForEngine(db: Db, engine: Engine, writers: number): Db {
  return engine === 'ferretdb' ? new WriteGate(writers).wrap(db) : db;
}
