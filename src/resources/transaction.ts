import type { Filter } from 'mongodb';
import type { Logger } from 'pino';
import { findByIds } from '../db/lookup';
import { Errors } from '../errors';
import { isDuplicateKey, type PreparedWrite, type ResourceStore } from './store';
import { historyId, type CurrentDoc, type HistoryDoc } from './types';

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
    private readonly store: ResourceStore,
    private readonly logger: Logger,
    /** Fault injection for the crash tests: called at named points of a commit. */
    private readonly crashPoint: (point: 'after-history' | 'after-commit') => void = () => {},
  ) {}

  async commitAll(txId: string, writes: PreparedWrite[]): Promise<void> {
    const real = writes.filter((w) => !w.noop);
    if (real.length === 0) return;
    const journal = this.store.journals;
    await journal.insertOne({
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
    await journal.updateOne({ _id: txId }, { $set: { state: 'committed' } });
    this.store.stageCandidates(real);
    this.crashPoint('after-commit');
    await this.applyCurrents(real.map((w) => ({ type: w.type, doc: w.doc, expectedVid: w.expectedVid })));
    await journal.deleteOne({ _id: txId });
    this.store.deps.onCommit?.();
  }

  /** Current documents of new resources go in one insertMany per type; the rest one by one. */
  private async applyCurrents(items: { type: string; doc: CurrentDoc; expectedVid: number }[]): Promise<void> {
    const fresh = new Map<string, CurrentDoc[]>();
    const rest: typeof items = [];
    for (const it of items) {
      if (it.expectedVid === 0) fresh.set(it.type, [...(fresh.get(it.type) ?? []), it.doc]);
      else rest.push(it);
    }
    for (const [type, docs] of fresh) {
      try {
        await this.store.current(type).insertMany(docs, { ordered: false });
      } catch (e) {
        if (!isDuplicateKey(e)) throw e;
        // Some ids existed (e.g. a deleted resource revived): place those one by one.
        for (const d of docs) await this.store.applyCurrent(type, d, 0);
      }
    }
    for (const it of rest) await this.store.applyCurrent(it.type, it.doc, it.expectedVid);
  }

  /** Removes what a transaction wrote before its commit point: only our own intents and versions. */
  private async rollback(txId: string, ids: string[]): Promise<void> {
    await Promise.all(
      ids.map(async (_id) => {
        await this.store.history.deleteOne({ _id, tx: txId } as Filter<HistoryDoc>);
        await this.store.outbox.deleteOne({ _id, tx: txId });
      }),
    );
    await this.store.journals.deleteOne({ _id: txId });
  }

  /** Start-up recovery: finish committed transactions, roll back the rest. */
  async recover(olderThan?: Date): Promise<{ completed: number; rolledBack: number }> {
    let completed = 0;
    let rolledBack = 0;
    const journals = await this.store.journals.find(olderThan ? { created: { $lt: olderThan } } : {}).toArray();
    for (const j of journals) {
      const ids = j.versions.map((v) => historyId(v.type, v.id, v.vid));
      if (j.state === 'committed') {
        const hs = await findByIds(this.store.history, ids);
        for (const h of hs) {
          const v = j.versions.find((x) => x.type === h.type && x.id === h.id && x.vid === h.vid);
          const prev = h.deleted ? (await this.store.history.findOne({ _id: historyId(h.type, h.id, h.vid - 1) }))?.res : undefined;
          await this.store.applyCurrent(h.type, this.store.currentDocOf(h, prev), v?.expectedVid ?? h.vid - 1);
        }
        await this.store.journals.deleteOne({ _id: j._id });
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
}
