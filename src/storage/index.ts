import type { Db } from 'mongodb';
import type { Logger } from 'pino';
import { Bodies, DEFAULT_INLINE_MAX } from './bodies';
import { eventBodies, withBodies } from './bodies-read';
import { Collections } from './collections';
import { StorageErasure } from './erase';
import { type Engine, detectEngine } from './engine';
import { type QueryExecutor, createExecutor } from './query';
import { type CrashPoint, TransactionJournal } from './journal';
import { NamedLocks } from './locks';
import { Outbox } from './outbox';
import { HistoryPlan } from './history-plan';
import { type CommitPointHook, ResourceRepository } from './repository';
import type { PreparedWrite } from './types';
import { serverSecret, storedSecret } from './secrets';
import { type IndexFn, Versions } from './versions';

export { isDuplicateKey } from './collections';
export { streamCurrent } from './bodies-read';
export { isErasedCompartment, type EraseCounts, type EraseKey, type StorageErasure } from './erase';
export { type Engine, detectEngine } from './engine';
export { gateWritesForEngine } from './write-gate';
export { serverSecret };
export type { CrashPoint } from './journal';
export type { BatchInfo, CommitConsumer, CommittedEvent, Outbox } from './outbox';
export type { CommitOptions, HistoryPage, HistoryPageQuery, ResourceRepository } from './repository';
export type { CurrentDoc, HistoryDoc, IndexEntries, PreparedWrite, WriteMethod } from './types';
export { historyId } from './types';

export interface StorageDeps {
  db: Db;
  logger: Logger;
  /**
   * Search's write-time index (cached per version object): re-derives a version's index values
   * when storage rebuilds it from history or stores engine-side entries of committed versions.
   */
  index: IndexFn;
  /** Forces a database kind (tests cover both strategies on one server); detected when absent. */
  engine?: Engine;
  crashPoint?: CrashPoint;
  /** Resources over this many characters of JSON keep their full form out of line (STORAGE_INLINE_MAX, bodies.ts). */
  inlineMax?: number;
}

/** Everything storage offers the modules above it. */
export interface Storage {
  engine: Engine;
  repository: ResourceRepository;
  /** The query face, of the kind `engine` needs (fed the search module's conditions). */
  executor: QueryExecutor;
  /** Post-commit consumers register here (the executor stages its entries first and stores them last). */
  outbox: Outbox;
  /** Creates the storage collections' indexes (idempotent). */
  ensureIndexes(types: readonly string[]): Promise<void>;
  /**
   * Start-up recovery (before serving): transactions interrupted by a crash are completed or
   * rolled back, and versions whose post-commit work is pending are staged again.
   */
  recover(olderThan?: Date): Promise<{ completed: number; rolledBack: number }>;
  /** A server secret kept in the database (generated on first use). */
  secret(key: string): Promise<string>;
}

/** Builds the storage layer around one database; the database kind is decided here, once. */
export async function createStorage(deps: StorageDeps): Promise<Storage> {
  const engine = deps.engine ?? (await detectEngine(deps.db));
  const cols = new Collections(deps.db);
  const bodies = new Bodies(cols.bodies, deps.inlineMax ?? DEFAULT_INLINE_MAX);
  const versions = new Versions(cols, deps.index, bodies, engine === 'ferretdb' ? 'read' : 'filter');
  const journal = new TransactionJournal(versions, deps.logger, deps.crashPoint);
  const outbox = new Outbox(versions, deps.logger);
  // The executor unstages entries of this instance's commits once the outbox is done with them
  // (stored by whichever instance holds its lease).
  const inner = createExecutor(engine, deps.db, deps.index, { open: (ids) => outbox.openIntents(ids) });
  const executor = withBodies(inner, bodies);
  // Events of big versions get their full resource first; the executor's entries of committed
  // versions are staged for this instance's readers before any other consumer runs, and stored
  // after them all, so that notifications never wait for the buckets' writes.
  outbox.addConsumer(eventBodies(cols, bodies));
  outbox.addConsumer((events) => executor.onHandedOn(events));
  outbox.addConsumer((events) => executor.onCommitted(events), 'last');
  const live = (writes: readonly PreparedWrite[]) => writes.filter((w) => !w.noop).map((w) => ({ type: w.type, doc: { ...w.doc, prior: w.current } }));
  const atCommitPoint: CommitPointHook = (writes) => executor.atCommitPoint(live(writes));
  const erasure = new StorageErasure(cols, inner, deps.index, deps.logger, outbox.jobs);
  const repository = new ResourceRepository(
    cols,
    versions,
    journal,
    new NamedLocks(cols),
    {
      atCommitPoint,
      committed: () => outbox.nudge(),
      history: new HistoryPlan(cols, versions, executor),
      trailCommitted: (writes) => executor.recordTrail(live(writes)),
    },
    erasure,
  );
  return {
    engine,
    repository,
    executor,
    outbox,
    async ensureIndexes(types) {
      await cols.history.createIndex({ type: 1, id: 1, vid: -1 });
      await cols.history.createIndex({ ts: -1, _id: -1 });
      await cols.history.createIndex({ type: 1, ts: -1, _id: -1 });
      await cols.outbox.createIndex({ at: 1 });
      for (const t of types) await cols.current(t).createIndex({ ts: -1, _id: -1 });
    },
    async recover(olderThan) {
      const r = await journal.recover(olderThan);
      // Committed before a crash, their executor entries were only staged in memory: staged
      // again before serving (the outbox stores them shortly after it starts).
      const pending = await outbox.pendingCommitted();
      const staged = await Promise.all(
        pending.map(async (h) => {
          const prior = h.vid > 1 ? (await versions.committed(h.type, h.id, h.vid - 1))?.res : undefined;
          const live = h.res && !h.deleted ? { ...deps.index(h.res), res: h.res, dec: h.dec, body: h.body } : { idx: {}, comp: [] };
          return { type: h.type, doc: { _id: h.id, ...live, vid: h.vid, ts: h.ts, deleted: h.deleted, prior: prior ? deps.index(prior) : null } };
        }),
      );
      executor.atCommitPoint(staged);
      return r;
    },
    secret: (key) => storedSecret(cols, key),
  };
}
