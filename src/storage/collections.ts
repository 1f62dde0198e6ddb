import type { Collection, Db } from 'mongodb';
import type { LeaseLinkDoc, LeaseTopDoc } from './lease-chain';
import type { BodyDoc } from './bodies';
import type { ErasedDoc } from './erase';
import type { CurrentDoc, HistoryDoc, JournalDoc, OutboxDoc } from './types';

/**
 * Every collection the resource storage owns, by name, in one place. Nothing outside
 * `src/storage/` opens these; the search buckets and the `meta` keys live here too.
 * (Module state, such as auth's, is declared in src/storage/state/<module>.ts.)
 */
export const COLLECTIONS = {
  history: 'history',
  outbox: 'outbox',
  journal: 'tx_journal',
  locks: 'locks',
  leases: 'leases',
  leaseTops: 'lease_tops',
  meta: 'meta',
  buckets: 'search_buckets',
  bodies: 'bodies',
  erased: 'erased_compartments',
} as const;

export interface LockDoc {
  _id: string;
  until: Date;
}

export interface MetaDoc {
  _id: string;
  value: string;
}

/** Typed handles on the storage collections (storage-internal). */
export class Collections {
  readonly history: Collection<HistoryDoc>;
  readonly outbox: Collection<OutboxDoc>;
  readonly journal: Collection<JournalDoc>;
  readonly locks: Collection<LockDoc>;
  readonly leases: Collection<LeaseLinkDoc>;
  readonly leaseTops: Collection<LeaseTopDoc>;
  readonly meta: Collection<MetaDoc>;
  readonly bodies: Collection<BodyDoc>;
  readonly erased: Collection<ErasedDoc>;

  constructor(readonly db: Db) {
    this.history = db.collection<HistoryDoc>(COLLECTIONS.history);
    this.outbox = db.collection<OutboxDoc>(COLLECTIONS.outbox);
    this.journal = db.collection<JournalDoc>(COLLECTIONS.journal);
    this.locks = db.collection<LockDoc>(COLLECTIONS.locks);
    this.leases = db.collection<LeaseLinkDoc>(COLLECTIONS.leases);
    this.leaseTops = db.collection<LeaseTopDoc>(COLLECTIONS.leaseTops);
    this.meta = db.collection<MetaDoc>(COLLECTIONS.meta);
    this.bodies = db.collection<BodyDoc>(COLLECTIONS.bodies);
    this.erased = db.collection<ErasedDoc>(COLLECTIONS.erased);
  }

  /**
   * Handles on the current-version collections, opened once per type: on the embedded engine
   * `db` is the write gate's view, whose `collection` builds a new proxy on every call (the
   * types are the served ones: requests for any other are refused above storage).
   */
  private readonly currents = new Map<string, Collection<CurrentDoc>>();

  /** Current versions: one collection per resource type, named for the type. */
  current(type: string): Collection<CurrentDoc> {
    let col = this.currents.get(type);
    if (!col) this.currents.set(type, (col = this.db.collection<CurrentDoc>(type)));
    return col;
  }
}

/**
 * The one duplicate-key check: MongoDB and FerretDB both answer E11000 for a unique-key clash,
 * on the error itself, its server response or one of a bulk write's errors.
 */
export function isDuplicateKey(e: unknown): boolean {
  const err = e as { code?: number; writeErrors?: Array<{ code?: number }>; errorResponse?: { code?: number } } | null | undefined;
  return err?.code === 11000 || err?.errorResponse?.code === 11000 || (err?.writeErrors ?? []).some((w) => w.code === 11000);
}
