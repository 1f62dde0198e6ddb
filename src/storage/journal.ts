import type { Filter } from 'mongodb';
import type { Logger } from 'pino';
import { Errors } from '../errors';
import { isDuplicateKey } from './collections';
import { findByIds } from './lookup';
import { historyId, type HistoryDoc, type PreparedWrite } from './types';
import { historyDocOf, type Versions } from './versions';

/** Named points of a transaction commit where the crash tests kill the process. */
export type CrashPoint = (point: 'after-history' | 'after-commit') => void;

/**
 * All-or-nothing writes without multi-document transactions (FerretDB, standalone MongoDB):
 *
 * 1. a journal document is written (`pending`), then the outbox intents and every new history
 *    version tagged with the journal id; versions of a pending journal are hidden from readers;
 *    a conflict (duplicate key) rolls back;
 * 2. flipping the journal to `committed` is the commit point: the versions become visible;
 * 3. the current documents are updated and the journal is removed.
 *
 * A crash before 2 is rolled back at start-up, a crash after 2 is completed. Between 2 and 3
 * a concurrent reader of current versions may briefly see some entries applied before others;
 * nothing is ever visible from a transaction that does not commit. The whole commit costs a
 * handful of bulk writes, whatever the number of entries.
 */
export class TransactionJournal {
  constructor(
    private readonly versions: Versions,
    private readonly logger: Logger,
    /** Fault injection for the crash tests: called at named points of a commit. */
    private readonly crashPoint: CrashPoint = () => {},
  ) {}

  private get cols() {
    return this.versions.cols;
  }

  /** Commits `writes` (none of them no-ops) as one unit; `atCommitPoint` runs right after the commit point. */
  async commitAll(txId: string, real: readonly PreparedWrite[], beforeCommitPoint: () => Promise<void>, atCommitPoint: () => void): Promise<void> {
    const journal = this.cols.journal;
    const ids = real.map((w) => historyId(w.type, w.id, w.doc.vid));
    // Big resources' bodies first: the journal names them, so a rollback removes them.
    await this.versions.bodies.place(real.map((w, i) => ({ hid: ids[i], doc: w.doc })));
    await journal.insertOne({
      _id: txId,
      state: 'pending',
      created: new Date(),
      versions: real.map((w) => ({ type: w.type, id: w.id, vid: w.doc.vid, expectedVid: w.expectedVid, ...(w.doc.body ? { body: w.doc.body } : {}) })),
    });
    try {
      // Intents first (see outbox.ts), tagged with the transaction so a rollback finds them.
      const at = new Date();
      await this.cols.outbox.insertMany(ids.map((_id) => ({ _id, at, tx: txId })), { ordered: true });
      await beforeCommitPoint();
      await this.cols.history.insertMany(
        real.map((w) => historyDocOf(w, txId)),
        { ordered: true },
      );
    } catch (e) {
      await this.rollback(txId, ids, []);
      await this.versions.bodies.unplace(real.map((w) => w.doc));
      if (isDuplicateKey(e)) {
        throw Errors.conflict('A resource in the transaction was changed by another request at the same time; nothing was applied', 'MSG_VERSION_CONFLICT');
      }
      throw e;
    }
    this.crashPoint('after-history');
    await journal.updateOne({ _id: txId }, { $set: { state: 'committed' } });
    atCommitPoint();
    this.crashPoint('after-commit');
    await this.versions.applyCurrents(real.map((w) => ({ type: w.type, doc: w.doc, expectedVid: w.expectedVid })));
    await journal.deleteOne({ _id: txId });
  }

  /** Removes what a transaction wrote before its commit point: only our own intents and versions. */
  private async rollback(txId: string, ids: string[], bodies: readonly (string | undefined)[]): Promise<void> {
    await this.versions.bodies.remove(bodies);
    await Promise.all(
      ids.map(async (_id) => {
        await this.cols.history.deleteOne({ _id, tx: txId } as Filter<HistoryDoc>);
        await this.cols.outbox.deleteOne({ _id, tx: txId });
      }),
    );
    await this.cols.journal.deleteOne({ _id: txId });
  }

  /** Start-up recovery: finish committed transactions, roll back the rest. */
  async recover(olderThan?: Date): Promise<{ completed: number; rolledBack: number }> {
    let completed = 0;
    let rolledBack = 0;
    const journals = await this.cols.journal.find(olderThan ? { created: { $lt: olderThan } } : {}).toArray();
    for (const j of journals) {
      const ids = j.versions.map((v) => historyId(v.type, v.id, v.vid));
      if (j.state === 'committed') {
        // Full resources (big ones from their bodies): the current documents are indexed from them.
        for (const h of await this.versions.bodies.load(await findByIds(this.cols.history, ids))) {
          const v = j.versions.find((x) => x.type === h.type && x.id === h.id && x.vid === h.vid);
          await this.versions.applyCurrent(h.type, await this.versions.currentOf(h), v?.expectedVid ?? h.vid - 1);
        }
        await this.cols.journal.deleteOne({ _id: j._id });
        completed++;
      } else {
        await this.rollback(j._id, ids, j.versions.map((v) => v.body));
        rolledBack++;
      }
    }
    if (completed || rolledBack) {
      this.logger.warn({ completed, rolledBack }, 'recovered transactions interrupted by a crash');
    }
    return { completed, rolledBack };
  }
}
