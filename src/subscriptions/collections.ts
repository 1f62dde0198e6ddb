import { createHash } from 'node:crypto';
import type { Collection, Db } from 'mongodb';
import type { WriteMethod } from '../storage/types';
import type { SubscriptionStatusCode } from './constants';
import type { SubscriptionSpec } from './spec';

/** The subscriber as it was when the Subscription was written; its policy is rebuilt from this. */
export interface StoredPrincipal {
  clientId: string;
  scopes: string[];
  patient?: string;
}

export interface SigningSecret {
  value: string;
  /** Set on a previous secret: it keeps signing until then. */
  notAfter?: Date;
}

/** Written before the Subscription commits (beforeWrite): who wrote it and its signing secrets. */
export interface OwnerDoc {
  _id: string;
  principal: StoredPrincipal;
  secrets: SigningSecret[];
  updatedAt: Date;
}

/**
 * What we know of one Subscription, written only when its versions commit (onCommitted).
 * Delivery progress lives apart (RuntimeDoc), written only by the lease holder: FerretDB applies
 * updates as read-modify-write of the whole document, so two writers of one document could
 * silently undo each other's fields.
 */
export interface StateDoc {
  _id: string;
  spec: SubscriptionSpec;
  /** Subscription version this state reflects (stale replays of older versions are ignored). */
  resourceVid: number;
  status: SubscriptionStatusCode;
  deleted: boolean;
  principal: StoredPrincipal;
  secrets: SigningSecret[];
  /** Version that asked for a handshake (status requested); 0 when none was ever asked. */
  handshakeVid: number;
  updatedAt: Date;
}

/** Delivery progress of one Subscription; written only by the holder of its lease. */
export interface RuntimeDoc {
  _id: string;
  failures: number;
  nextAttemptAt: Date;
  nextHeartbeatAt?: Date;
  /** Highest event number delivered (or given up after the retry window). */
  delivered: number;
  /** How many events were given up for push after the retry window (still in $events). */
  expired: number;
  /** Last Subscription version whose handshake succeeded / was attempted. */
  handshakeDoneVid: number;
  handshakeTriedVid: number;
  lastError?: string;
  lastDeliveredAt?: Date;
}

/**
 * Leases form a chain per subscription (`<sub>:<n>`): taking over means inserting link n+1,
 * which the unique _id lets exactly one contender do. The newest link is found by key from a
 * hint (sub_lease_tops) and a forward probe. Conditional updates are not enough on
 * FerretDB (they are not atomic there); unique-key inserts are.
 */
export interface LeaseDoc {
  _id: string;
  sub: string;
  n: number;
  owner: string;
  until: Date;
  released?: boolean;
}

/**
 * One event for one subscription. The id is "<subscription id>#<event number>": numbers are
 * claimed by inserting under a unique key, and delivery reads the next number by key (the only
 * lookup FerretDB answers without scanning). Rows never change after they are written.
 */
export interface NotificationRow {
  _id: string;
  sub: string;
  num: number;
  historyId: string;
  type: string;
  id: string;
  vid: number;
  method: WriteMethod;
  /** Commit time of the version. */
  ts: Date;
  createdAt: Date;
  /**
   * Set when the resource was erased ($purge, $expunge): the row keeps its number (event numbers
   * stay gap-free) but no longer names the resource; notifications carry it without a focus.
   */
  erased?: true;
}

/** A hint of the last number used and the history ids recorded lately (the rows are the truth). */
export interface CounterDoc {
  _id: string;
  last: number;
  recent: string[];
}

/** Marks a subscription with something to deliver (rows, handshake); found by a sweep of this small collection. */
export interface DueDoc {
  _id: string;
  at: Date;
}

export interface PendingOwnerDoc {
  _id: string;
  hash: string;
  principal: StoredPrincipal;
  secrets: SigningSecret[];
  createdAt: Date;
}

export interface TokenDoc {
  _id: string;
  subs: string[];
  principal: StoredPrincipal;
  exp: Date;
}

export interface MetaDoc {
  _id: string;
  n: number;
}

export interface Collections {
  owners: Collection<OwnerDoc>;
  pendingOwners: Collection<PendingOwnerDoc>;
  state: Collection<StateDoc>;
  runtime: Collection<RuntimeDoc>;
  leases: Collection<LeaseDoc>;
  /** Hint of the newest lease link per subscription ({ _id: sub, n }). */
  leaseTops: Collection<{ _id: string; n: number }>;
  rows: Collection<NotificationRow>;
  counters: Collection<CounterDoc>;
  due: Collection<DueDoc>;
  tokens: Collection<TokenDoc>;
  meta: Collection<MetaDoc>;
}

export function collections(db: Db): Collections {
  return {
    owners: db.collection<OwnerDoc>('sub_owner'),
    pendingOwners: db.collection<PendingOwnerDoc>('sub_owner_pending'),
    state: db.collection<StateDoc>('sub_state'),
    runtime: db.collection<RuntimeDoc>('sub_runtime'),
    leases: db.collection<LeaseDoc>('sub_leases'),
    leaseTops: db.collection<{ _id: string; n: number }>('sub_lease_tops'),
    rows: db.collection<NotificationRow>('sub_notifications'),
    counters: db.collection<CounterDoc>('sub_counters'),
    due: db.collection<DueDoc>('sub_due'),
    tokens: db.collection<TokenDoc>('sub_ws_tokens'),
    meta: db.collection<MetaDoc>('sub_meta'),
  };
}

export async function ensureIndexes(c: Collections): Promise<void> {
  await c.rows.createIndex({ sub: 1, num: 1 }, { name: 'sub_num' });
  await c.leases.createIndex({ sub: 1, n: 1 }, { name: 'sub_n' });
  await c.pendingOwners.createIndex({ hash: 1, createdAt: 1 }, { name: 'hash_created' });
}

export const EPOCH = new Date(0);

/**
 * Fingerprint of a resource's content without the parts the store sets (id, versionId,
 * lastUpdated): keys sorted, so the same content always gives the same text.
 */
export function fingerprint(resource: object): string {
  const { id: _id, meta, ...rest } = resource as { id?: string; meta?: Record<string, unknown> };
  const m = { ...(meta ?? {}) };
  delete m.versionId;
  delete m.lastUpdated;
  const body = Object.keys(m).length ? { ...rest, meta: m } : rest;
  const canon = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canon) : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon((v as Record<string, unknown>)[k])])) : v;
  return createHash('sha256').update(JSON.stringify(canon(body))).digest('hex');
}

/** The storage layer's duplicate-key check (one for the whole server). */
export { isDuplicateKey } from '../storage/collections';
