import type { Collection, Filter } from 'mongodb';
import type { Logger } from 'pino';
import { Errors } from '../errors';
import { isDuplicateKey, type PreparedWrite, type ResourceStore } from './store';
import { historyId, type HistoryDoc } from './types';
import { findByIds } from '../db/lookup';

interface JournalDoc {
  _id: string;
  state: 'pending' | 'committed';
  created: Date;
  /** type/id/vid of every version the transaction writes. */
  versions: { type: string; id: string; vid: number; expectedVid: number }[];
}

/**
 * All-or-nothing writes without multi-document transactions (FerretDB, standalone MongoDB):
 *
 * 1. a journal document is written (`pending`), then the outbox intents and every new history
 *    version with `txp` set, which hides it from readers; a conflict (duplicate key) rolls back;
 * 2. flipping the journal to `committed` is the commit point;
 * 3. the current documents are updated and `txp` cleared; the journal is removed.
 *
 * A crash before 2 is rolled back at start-up, a crash after 2 is completed. Between 2 and 3
 * a concurrent reader may briefly see some entries applied before others; nothing is ever
 * visible from a transaction that does not commit.
 */
export class TransactionJournal {
  private readonly journal: Collection<JournalDoc>;

  constructor(
    private readonly store: ResourceStore,
    private readonly logger: Logger,
    /** Fault injection for the crash tests: called at named points of a commit. */
    private readonly crashPoint: (point: 'after-history' | 'after-commit') => void = () => {},
  ) {
    this.journal = store.deps.db.collection<JournalDoc>('tx_journal');
  }

  async commitAll(txId: string, writes: PreparedWrite[]): Promise<void> {
    const real = writes.filter((w) => !w.noop);
    if (real.length === 0) return;
    await this.journal.insertOne({
      _id: txId,
      state: 'pending',
      created: new Date(),
      versions: real.map((w) => ({ type: w.type, id: w.id, vid: w.doc.vid, expectedVid: w.expectedVid })),
    });
    const ids = real.map((w) => historyId(w.type, w.id, w.doc.vid));
    try {
      // Intents first (see outbox.ts), tagged with the transaction so a rollback finds them.
      const at = new Date();
      await this.store.outbox.insertMany(ids.map((_id) => ({ _id, at, tx: txId })), { ordered: true });
      await this.store.history.insertMany(
        real.map((w) => this.store.historyDocOf(w, txId)),
        { ordered: true },
      );
    } catch (e) {
      await this.rollback(txId, ids);
      if (isDuplicateKey(e)) {
        throw Errors.conflict('A resource in the transaction was changed by another request at the same time; nothing was applied', 'MSG_VERSION_CONFLICT');
      }
      throw e;
    }
    this.crashPoint('after-history');
    await this.journal.updateOne({ _id: txId }, { $set: { state: 'committed' } });
    this.crashPoint('after-commit');
    await this.complete(txId, real);
    this.store.deps.onCommit?.();
  }

  private async complete(txId: string, writes: PreparedWrite[]): Promise<void> {
    for (const w of writes) await this.store.applyCurrent(w.type, w.doc, w.expectedVid);
    await this.reveal(writes.map((w) => historyId(w.type, w.id, w.doc.vid)));
    await this.journal.deleteOne({ _id: txId });
  }

  /** Clears `txp`, one primary-key update per version (FerretDB scans for any other filter). */
  private async reveal(ids: string[]): Promise<void> {
    await Promise.all(ids.map((_id) => this.store.history.updateOne({ _id }, { $unset: { txp: '' } })));
  }

  /** Removes what a transaction wrote before its commit point: only our own intents and versions. */
  private async rollback(txId: string, ids: string[]): Promise<void> {
    await Promise.all(
      ids.map(async (_id) => {
        await this.store.history.deleteOne({ _id, tx: txId } as Filter<HistoryDoc>);
        await this.store.outbox.deleteOne({ _id, tx: txId });
      }),
    );
    await this.journal.deleteOne({ _id: txId });
  }

  /** Start-up recovery: finish committed transactions, roll back the rest. */
  async recover(olderThan?: Date): Promise<{ completed: number; rolledBack: number }> {
    let completed = 0;
    let rolledBack = 0;
    const filter: Filter<JournalDoc> = olderThan ? { created: { $lt: olderThan } } : {};
    for (const j of await this.journal.find(filter).toArray()) {
      const ids = j.versions.map((v) => historyId(v.type, v.id, v.vid));
      if (j.state === 'committed') {
        const hs = await findByIds(this.store.history, ids);
        for (const h of hs) {
          const v = j.versions.find((x) => x.type === h.type && x.id === h.id && x.vid === h.vid);
          await this.store.applyCurrent(h.type, this.store.currentDocOf(h, await this.previousRes(h)), v?.expectedVid ?? h.vid - 1);
        }
        await this.reveal(ids);
        await this.journal.deleteOne({ _id: j._id });
        completed++;
      } else {
        await this.rollback(j._id, ids);
        rolledBack++;
      }
    }
    if (completed || rolledBack) {
      this.logger.warn({ completed, rolledBack }, 'recovered transactions interrupted by a crash');
    }
    return { completed, rolledBack };
  }

  private async previousRes(h: HistoryDoc) {
    if (!h.deleted) return undefined;
    return (await this.store.history.findOne({ _id: historyId(h.type, h.id, h.vid - 1) }))?.res;
  }
}
