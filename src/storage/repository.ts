import { randomUUID } from 'node:crypto';
import { Errors, type FhirError } from '../errors';
import { type Collections, isDuplicateKey } from './collections';
import { GroupInserter } from './group-insert';
import type { HistoryPlan } from './history-plan';
import { findByIds } from './lookup';
import type { TransactionJournal } from './journal';
import type { NamedLocks } from './locks';
import { STALE_INTENT_MS } from './outbox';
import { historyId, type CurrentDoc, type HistoryDoc, type OutboxDoc, type PreparedWrite } from './types';
import { historyDocOf, type Versions } from './versions';
import type { Bodies } from './bodies';
import type { EraseCounts, EraseKey, StorageErasure } from './erase';

/** How a set of prepared versions is committed. */
export interface CommitOptions {
  /**
   * `auto` (default): one write commits alone, several commit all-or-nothing (the journal);
   * `atomic`: all-or-nothing even for one write (transaction Bundles);
   * `trail`: append-only server records (the audit trail) in one batch, with no outbox intents:
   * they feed no post-commit consumer.
   */
  mode?: 'auto' | 'atomic' | 'trail';
}

/** One page of committed history, newest first on (ts, _id). */
export interface HistoryPageQuery {
  type?: string;
  id?: string;
  since?: Date;
  at?: Date;
  /** Keyset boundary: only versions strictly before (ts, _id). */
  before?: { ts: Date; id: string };
  limit: number;
}

export interface HistoryPage {
  /** Committed versions of the page (versions of open transactions left out). */
  versions: HistoryDoc[];
  /** The last version read, committed or not: where the next page starts. */
  last?: { ts: Date; id: string };
  /** True when the page read fewer than `limit` versions: nothing older is left. */
  exhausted: boolean;
}

/** Called synchronously at the commit point of versions (the FerretDB executor stages its candidates). */
export type CommitPointHook = (committed: readonly PreparedWrite[]) => void;

/**
 * The resource face of storage: reads of current and historical versions and the ONE commit
 * path for every write (single interactions, Bundles, the audit trail, server-side writes).
 * The commit point of a single write is the insert of its history document, preceded by its
 * outbox intent so post-commit work survives a crash (see shared/design.md section 2).
 */
export class ResourceRepository {
  private readonly intents: GroupInserter<OutboxDoc>;
  private readonly historyInserts: GroupInserter<HistoryDoc>;

  constructor(
    private readonly cols: Collections,
    private readonly store: Versions,
    private readonly journal: TransactionJournal,
    private readonly locks: NamedLocks,
    private readonly hooks: { atCommitPoint: CommitPointHook; committed: () => void; history: HistoryPlan; trailCommitted: (real: readonly PreparedWrite[]) => Promise<void> },
    /** Erasure's face of storage (erase.ts): markers checked before every commit point, and the sweep. */
    readonly erasure: StorageErasure,
  ) {
    this.intents = new GroupInserter(cols.outbox);
    this.historyInserts = new GroupInserter(cols.history);
  }

  private get bodies(): Bodies {
    return this.store.bodies;
  }

  // ---------------------------------------------------------------- reads

  /** The current document of type/id (deleted ones included), or null. */
  async read(type: string, id: string): Promise<CurrentDoc | null> {
    return this.bodies.loadOne(await this.cols.current(type).findOne({ _id: id }));
  }

  /** Current documents of several ids of one type (concurrent point reads: `$in` scans on FerretDB). */
  async readMany(type: string, ids: readonly string[]): Promise<Map<string, CurrentDoc>> {
    const docs = await this.bodies.load(await findByIds(this.cols.current(type), ids));
    return new Map(docs.map((d) => [d._id, d]));
  }

  /** One committed version, or null (unknown, or its transaction has not committed). */
  vread(type: string, id: string, vid: number): Promise<HistoryDoc | null> {
    return this.store.committed(type, id, vid);
  }

  /** Committed versions by history id ("<type>/<id>/<vid>"), by primary key. */
  versions(historyIds: readonly string[]): Promise<HistoryDoc[]> {
    return this.store.committedByIds(historyIds);
  }

  /** A page of history at instance, type or system level, newest first (see history-plan.ts). */
  historyPage(q: HistoryPageQuery): Promise<HistoryPage> {
    return this.hooks.history.page(q);
  }

  // ---------------------------------------------------------------- commit

  /** Commits prepared versions (no-ops are skipped); a lost race is a 409 FhirError. */
  async commit(writes: readonly PreparedWrite[], opts: CommitOptions = {}): Promise<void> {
    const real = writes.filter((w) => !w.noop);
    if (real.length === 0) return;
    const mode = opts.mode ?? 'auto';
    if (mode === 'trail') await this.commitTrail(real);
    else if (mode === 'auto' && real.length === 1) await this.commitOne(real[0]);
    else await this.journal.commitAll(randomUUID(), real, () => this.erasure.refuseErased(real), () => this.hooks.atCommitPoint(real));
    this.hooks.committed();
  }

  /**
   * Erasure's sweep (see `erasure` for the markers and waits around it): every version of the
   * resources, their current documents, bodies, outbox intents, search bucket entries and journal
   * entries; `patients` are erased compartments.
   */
  erase(keys: readonly EraseKey[], patients: readonly string[]): Promise<EraseCounts> {
    return this.erasure.sweep(keys, patients);
  }

  /** Runs `fn` holding a named lock (conditional interactions serialise through these). */
  withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.with(name, fn);
  }

  /**
   * One version: the outbox intent first (so post-commit work survives a crash), then the
   * history insert, the commit point; a duplicate key on either means another writer took
   * this version first (409).
   */
  private async commitOne(w: PreparedWrite): Promise<void> {
    const hid = historyId(w.type, w.id, w.doc.vid);
    await this.claimIntent(hid, w);
    try {
      // After the intent (erasure waits for the intents it saw), before the commit point.
      await this.erasure.refuseErased([w]);
      await this.bodies.place([{ hid, doc: w.doc }]);
    } catch (e) {
      await this.cols.outbox.deleteOne({ _id: hid });
      throw e;
    }
    try {
      await this.historyInserts.insert(historyDocOf(w));
    } catch (e) {
      if (isDuplicateKey(e)) {
        await this.cols.outbox.deleteOne({ _id: hid });
        await this.bodies.unplace([w.doc]);
        throw await this.lostRace(w);
      }
      throw e;
    }
    // Right after the commit point, no await in between: readers see the candidates at once.
    this.hooks.atCommitPoint([w]);
    await this.store.applyCurrent(w.type, w.doc, w.expectedVid);
  }

  /** Server records nobody else writes (fresh ids): one history batch, then one current batch. */
  private async commitTrail(real: readonly PreparedWrite[]): Promise<void> {
    await this.bodies.place(real.map((w) => ({ hid: historyId(w.type, w.id, w.doc.vid), doc: w.doc })));
    await this.cols.history.insertMany(real.map((w) => historyDocOf(w)));
    const byType = new Map<string, CurrentDoc[]>();
    for (const w of real) byType.set(w.type, [...(byType.get(w.type) ?? []), w.doc]);
    for (const [type, docs] of byType) await this.cols.current(type).insertMany(docs);
    await this.hooks.trailCommitted(real);
  }

  /** Writes the outbox intent of a version, taking over one left by a writer that died. */
  private async claimIntent(hid: string, w: PreparedWrite): Promise<void> {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await this.intents.insert({ _id: hid, at: new Date() });
        return;
      } catch (e) {
        if (!isDuplicateKey(e)) throw e;
      }
      if (await this.cols.history.findOne({ _id: hid }, { projection: { _id: 1 } })) throw await this.lostRace(w);
      const intent = await this.cols.outbox.findOne({ _id: hid });
      if (intent && Date.now() - intent.at.getTime() < STALE_INTENT_MS) throw await this.lostRace(w);
      await this.cols.outbox.deleteOne({ _id: hid });
    }
    throw await this.lostRace(w);
  }

  /** Someone else committed this version: make current reflect it, then report the conflict. */
  private async lostRace(w: PreparedWrite): Promise<FhirError> {
    await this.store.applyFromHistory(w.type, w.id);
    return Errors.conflict(
      `${w.type}/${w.id} was changed by another request at the same time; read it and try again`,
      'MSG_VERSION_CONFLICT',
      [w.type],
    );
  }
}
