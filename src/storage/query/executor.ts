import type { Resource } from 'fhir/r4';
import type { Document, Filter, Sort } from 'mongodb';
import type { AccessPolicy } from '../../auth/types';
import type { Cond } from '../../search/cond';
import type { Engine } from '../engine';
import type { CommittedEvent } from '../outbox';
import type { CurrentDoc, IndexEntries } from '../types';
import type { BucketPlan } from './bucket-plan';
import type { BucketSource } from './buckets';
import type { ErasePlan } from './erase-plan';
import type { KeyValue, SortKey } from './keys';
import type { ScanPoint } from './time-buckets';

/**
 * A page of current (not deleted) documents of one type matching `cond` and readable under
 * `policy`, in keyset order. `cond` comes from the search module (src/search/cond.ts); the
 * executor alone turns it into database work.
 */
export interface PageQuery {
  type: string;
  cond: Cond;
  policy: AccessPolicy;
  /** Result order, `_id` last (default: `_id` ascending). */
  order?: SortKey[];
  /** Keyset boundary: values of `order` of the last row of the previous page. */
  after?: KeyValue[];
  limit: number;
  /** Top-level fields to return (default: the whole document); sort fields are always added. */
  fields?: string[];
}

export interface CountQuery {
  type: string;
  cond: Cond;
  policy: AccessPolicy;
}

/**
 * A search page. Where the database cannot bound the work of a query (no index, no bucket), the
 * page may stop after a budget of work with fewer than `limit - 1` matches and a `resume` point
 * the next page continues from (opaque, JSON-safe); without `resume` it is a keyset page as
 * `page` gives (`limit` rows, the last telling whether more follow).
 */
export interface SearchPage {
  docs: CurrentDoc[];
  /** Set when the page came from a bounded scan and the scan has not reached the end. */
  resume?: ScanPoint;
  /** True when the page came from a bounded scan (then there is no going back, and no keyset). */
  scanned: boolean;
}

/** History by time (type or system level) where storage keeps engine-side lists of versions. */
export interface HistoryQuery {
  /** Undefined: every type. */
  type?: string;
  since?: Date;
  at?: Date;
  before?: { ts: Date; id: string };
  limit: number;
}

/** A page of history by time: history ids ("Type/id/vid") with their times, newest first. */
export interface HistoryIds {
  versions: { id: string; ts: Date }[];
  /** True when nothing older is left. */
  exhausted: boolean;
}

/** Observation/$lastn: per subject and `code:s`, the newest `max` matches. */
export interface LastnQuery {
  cond: Cond;
  policy: AccessPolicy;
  max: number;
}

/** An index the search module asks for (fields of `idx` it filters and sorts on). */
export interface IndexSpec {
  key: Record<string, 1 | -1>;
  name: string;
}

/** A live version at its commit point: the parts engine-side structures need. */
export interface LiveVersion {
  type: string;
  doc: BucketSource;
}

/** Start-up maintenance: what the search module's definitions need from storage. */
export interface Maintenance {
  types: readonly string[];
  /** Fingerprint of a type's search definitions: stored index values are rebuilt when it changes. */
  definitions(type: string): string;
  index(resource: Resource): { idx: IndexEntries; comp: string[] };
  progress(msg: string): void;
}

/** For benchmarks and operators: the main database query of a page and the database's plan. */
export interface Explanation {
  filter: Filter<Document>;
  sort: Sort;
  limit: number;
  plan: Document;
  buckets?: BucketPlan;
}

/**
 * The query face of storage: one implementation per database kind, chosen once at start-up
 * (see src/storage/README.md). Every implementation returns exactly what the in-memory
 * evaluator (`evaluate` in src/search/cond.ts) accepts over the same documents.
 */
export interface QueryExecutor {
  readonly engine: Engine;
  page(q: PageQuery): Promise<CurrentDoc[]>;
  /** The search interaction's page: `page`, or a bounded scan continued from `resume` (see SearchPage). */
  searchPage(q: PageQuery, resume?: ScanPoint): Promise<SearchPage>;
  /**
   * History ids of a page by time, newest first on (ts, id), `limit` when there are; undefined when the engine serves history from its indexes instead.
   */
  historyIds(q: HistoryQuery): Promise<HistoryIds | undefined>;
  /** Versions committed without outbox intents (the audit trail): their engine-side entries, stored now. */
  recordTrail(versions: readonly LiveVersion[]): Promise<void>;
  count(q: CountQuery): Promise<number>;
  /** Current, readable documents of a type by id (any order). */
  byIds(type: string, ids: readonly string[], policy: AccessPolicy): Promise<CurrentDoc[]>;
  lastn(q: LastnQuery): Promise<CurrentDoc[]>;
  explain(q: PageQuery): Promise<Explanation>;
  /** The indexes to serve each type's queries from (idempotent; engines without usable indexes skip them). */
  ensureIndexes(specs: ReadonlyMap<string, IndexSpec[]>): Promise<void>;
  /** Stale index values and engine-side structures, rebuilt before serving (idempotent). */
  maintain(m: Maintenance): Promise<void>;
  /** Entries of committed versions held in memory and not stored yet (0 where nothing is staged). */
  staged(): number;
  /** Synchronously at a commit point (storage calls it): entries readers need at once. */
  atCommitPoint(versions: readonly LiveVersion[]): void;
  /**
   * Outbox consumer, first: what readers of this instance need of the batch's versions, in memory
   * (the lease holder may not be the instance that committed them), before the other consumers run.
   */
  onHandedOn(events: readonly CommittedEvent[]): Promise<void>;
  /**
   * Outbox consumer, last: engine-side structures of committed versions, stored durably. Last,
   * so that no notification waits for them: readers of this instance saw them since onHandedOn.
   */
  onCommitted(events: readonly CommittedEvent[]): Promise<void>;
  /**
   * Loaders and tests: stores engine-side entries of documents written around storage
   * (`concurrency`: distinct buckets updated at once, for bulk loads with no traffic beside them).
   */
  record(type: string, docs: readonly BucketSource[], concurrency?: number): Promise<void>;
  /**
   * Erasure: drops what this process holds in memory of resources `ids` (their versions `docs`)
   * and of the structures kept per patient of `patients`, and returns the plan for what is
   * stored (erase-plan.ts), which the bucket writer applies.
   */
  eraseStaged(type: string, docs: readonly BucketSource[], ids: ReadonlySet<string>, patients: readonly string[]): ErasePlan;
  /** Erasure, on the outbox lease holder: removes the stored entries of a plan; how many went. */
  applyErase(plan: ErasePlan): Promise<number>;
}
