import { MongoBulkWriteError, type Collection, type Document, type OptionalUnlessRequiredId } from 'mongodb';

interface Waiter<T> {
  doc: T;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/**
 * Group commit for single-document inserts: while one insertMany is in flight, inserts that
 * arrive queue up and go together in the next one (unordered), and each caller learns the
 * fate of its own document (a duplicate key fails only that caller). Under concurrency this
 * turns N commits into a few, which is what an SQLite-backed FerretDB (one fsync per commit)
 * and MongoDB alike reward; a lone insert is sent at once, so latency does not grow.
 */
export class GroupInserter<T extends Document> {
  private queue: Waiter<T>[] = [];
  private inFlight = false;

  constructor(
    private readonly col: Collection<T>,
    private readonly maxBatch = 500,
  ) {}

  insert(doc: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ doc, resolve, reject });
      if (!this.inFlight) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.inFlight = true;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      await this.send(batch);
    }
    this.inFlight = false;
  }

  private async send(batch: Waiter<T>[]): Promise<void> {
    try {
      if (batch.length === 1) {
        await this.col.insertOne(batch[0].doc as OptionalUnlessRequiredId<T>);
      } else {
        await this.col.insertMany(batch.map((w) => w.doc as OptionalUnlessRequiredId<T>), { ordered: false });
      }
      for (const w of batch) w.resolve();
    } catch (e) {
      if (batch.length > 1 && e instanceof MongoBulkWriteError) {
        const failed = new Map<number, unknown>();
        const errs = Array.isArray(e.writeErrors) ? e.writeErrors : [e.writeErrors];
        for (const we of errs) failed.set(we.index, Object.assign(new Error(we.errmsg ?? 'write failed'), { code: we.code }));
        // A failure with no per-document detail is the whole batch's.
        if (failed.size === 0) batch.forEach((w) => w.reject(e));
        else batch.forEach((w, i) => (failed.has(i) ? w.reject(failed.get(i)) : w.resolve()));
      } else {
        batch.forEach((w) => w.reject(e));
      }
    }
  }
}
