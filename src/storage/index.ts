import type { Db } from 'mongodb';
import type { Logger } from 'pino';
import { Collections } from './collections';
import { type Engine, detectEngine } from './engine';
import { type CrashPoint, TransactionJournal } from './journal';
import { NamedLocks } from './locks';
import { Outbox } from './outbox';
import { type CommitPointHook, ResourceRepository } from './repository';
import { storedSecret } from './secrets';
import { type IndexFn, Versions } from './versions';

export { isDuplicateKey } from './collections';
export type { Engine } from './engine';
export type { CrashPoint } from './journal';
export type { CommitConsumer, CommittedEvent, Outbox } from './outbox';
export type { CommitOptions, HistoryPage, HistoryPageQuery, ResourceRepository } from './repository';
export type { CurrentDoc, HistoryDoc, IndexEntries, PreparedWrite, WriteMethod } from './types';
export { historyId } from './types';

export interface StorageDeps {
  db: Db;
  logger: Logger;
  /** Search's write-time index: re-derives a version's index values when storage rebuilds it from history. */
  index: IndexFn;
  /** Forces a database kind (tests cover both strategies on one server); detected when absent. */
  engine?: Engine;
  crashPoint?: CrashPoint;
}

/** Everything storage offers the modules above it. */
export interface Storage {
  engine: Engine;
  repository: ResourceRepository;
  outbox: Outbox;
  /** Creates the storage collections' indexes (idempotent). */
  ensureIndexes(types: readonly string[]): Promise<void>;
  /** Start-up recovery of transactions interrupted by a crash. */
  recover(olderThan?: Date): Promise<{ completed: number; rolledBack: number }>;
  /** A server secret kept in the database (generated on first use). */
  secret(key: string): Promise<string>;
  /** Registers the hook run synchronously at each commit point (one owner: the query executor). */
  onCommitPoint(hook: CommitPointHook): void;
}

/** Builds the storage layer around one database; the database kind is decided here, once. */
export async function createStorage(deps: StorageDeps): Promise<Storage> {
  const engine = deps.engine ?? (await detectEngine(deps.db));
  const cols = new Collections(deps.db);
  const versions = new Versions(cols, deps.index);
  const journal = new TransactionJournal(versions, deps.logger, deps.crashPoint);
  const outbox = new Outbox(versions, deps.logger);
  let atCommitPoint: CommitPointHook = () => {};
  const repository = new ResourceRepository(cols, versions, journal, new NamedLocks(cols), {
    atCommitPoint: (w) => atCommitPoint(w),
    committed: () => outbox.nudge(),
  });
  return {
    engine,
    repository,
    outbox,
    async ensureIndexes(types) {
      await cols.history.createIndex({ type: 1, id: 1, vid: -1 });
      await cols.history.createIndex({ ts: -1, _id: -1 });
      await cols.history.createIndex({ type: 1, ts: -1, _id: -1 });
      await cols.outbox.createIndex({ at: 1 });
      for (const t of types) await cols.current(t).createIndex({ ts: -1, _id: -1 });
    },
    recover: (olderThan) => journal.recover(olderThan),
    secret: (key) => storedSecret(cols, key),
    onCommitPoint(hook) {
      atCommitPoint = hook;
    },
  };
}
