import type { Collection, Db } from 'mongodb';
import type { SubscriptionStatusCode } from '../../subscriptions/constants';
import type { SubscriptionSpec } from '../../subscriptions/spec';
import { isDuplicateKey } from '../collections';
import { LeaseChain, type LeaseLinkDoc, type LeaseTopDoc } from '../lease-chain';
import type { WriteMethod } from '../types';

/**
 * The subscriptions module's own state, behind the storage wall: collection names, stored shapes
 * and the few reads and writes the module needs, as named functions. Correctness rests only on
 * unique `_id` inserts and `_id` point reads (FerretDB applies conditional updates as
 * read-modify-write without atomicity), so each document below has one writer, numbers and leases
 * are claimed by inserting under a unique key, and the hot path reads by key only.
 */
export const SUBSCRIPTION_COLLECTIONS = {
  owners: 'sub_owner',
  pendingOwners: 'sub_owner_pending',
  state: 'sub_state',
  runtime: 'sub_runtime',
  leases: 'sub_leases',
  leaseTops: 'sub_lease_tops',
  rows: 'sub_notifications',
  counters: 'sub_counters',
  due: 'sub_due',
  tokens: 'sub_ws_tokens',
  meta: 'sub_meta',
} as const;

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

/** A writer parked under the content's fingerprint until the commit of that content claims it. */
export interface PendingOwnerDoc {
  _id: string;
  hash: string;
  principal: StoredPrincipal;
  secrets: SigningSecret[];
  createdAt: Date;
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

/** Delivery progress of one Subscription; written only by the holder of its delivery lease. */
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
 * One event for one subscription. The id is "<subscription id>#<event number>": numbers are
 * claimed by inserting under a unique key, and delivery reads the next number by key (the only
 * lookup FerretDB answers without scanning). Rows never change after they are written (erasure
 * aside, see tombstoneRows).
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

export interface TokenDoc {
  _id: string;
  subs: string[];
  principal: StoredPrincipal;
  exp: Date;
}

/** `generation` is the hint of the newest generation link `generation:<n>` (links are the truth). */
interface MetaDoc {
  _id: string;
  n: number;
}

const GENERATION = 'generation';

export function rowId(sub: string, num: number): string {
  return `${sub}#${num}`;
}

/** Typed access to the subscriptions module's collections (one per Db). */
export class SubscriptionState {
  private readonly owners: Collection<OwnerDoc>;
  private readonly pendingOwners: Collection<PendingOwnerDoc>;
  private readonly states: Collection<StateDoc>;
  private readonly runtimes: Collection<RuntimeDoc>;
  private readonly leases: Collection<LeaseLinkDoc>;
  private readonly leaseTops: Collection<LeaseTopDoc>;
  private readonly rows: Collection<NotificationRow>;
  private readonly counters: Collection<CounterDoc>;
  private readonly due: Collection<DueDoc>;
  private readonly tokens: Collection<TokenDoc>;
  private readonly meta: Collection<MetaDoc>;

  constructor(db: Db) {
    const c = SUBSCRIPTION_COLLECTIONS;
    this.owners = db.collection(c.owners);
    this.pendingOwners = db.collection(c.pendingOwners);
    this.states = db.collection(c.state);
    this.runtimes = db.collection(c.runtime);
    this.leases = db.collection(c.leases);
    this.leaseTops = db.collection(c.leaseTops);
    this.rows = db.collection(c.rows);
    this.counters = db.collection(c.counters);
    this.due = db.collection(c.due);
    this.tokens = db.collection(c.tokens);
    this.meta = db.collection(c.meta);
  }

  async ensureIndexes(): Promise<void> {
    await this.rows.createIndex({ sub: 1, num: 1 }, { name: 'sub_num' });
    await this.leases.createIndex({ name: 1, n: 1 }, { name: 'name_n' });
    await this.pendingOwners.createIndex({ hash: 1, createdAt: 1 }, { name: 'hash_created' });
  }

  // ---------------------------------------------------------------- writers and secrets

  owner(id: string): Promise<OwnerDoc | null> {
    return this.owners.findOne({ _id: id });
  }

  async saveOwner(doc: OwnerDoc): Promise<void> {
    await this.owners.replaceOne({ _id: doc._id }, doc, { upsert: true });
  }

  async parkPendingOwner(doc: PendingOwnerDoc): Promise<void> {
    await this.pendingOwners.insertOne(doc);
  }

  /** Moves the oldest writer parked under `hash` to Subscription `id` (an owner already there wins). */
  async claimPendingOwner(hash: string, id: string): Promise<OwnerDoc | null> {
    const pending = await this.pendingOwners.findOneAndDelete({ hash }, { sort: { createdAt: 1 } });
    if (!pending) return null;
    const owner: OwnerDoc = { _id: id, principal: pending.principal, secrets: pending.secrets, updatedAt: pending.createdAt };
    try {
      await this.owners.insertOne(owner);
    } catch (e) {
      if (!isDuplicateKey(e)) throw e;
    }
    return this.owners.findOne({ _id: id });
  }

  // ---------------------------------------------------------------- committed state (written by onCommitted)

  state(id: string): Promise<StateDoc | null> {
    return this.states.findOne({ _id: id });
  }

  /** Every Subscription that is not deleted and has one of `statuses` (a scan of a small collection). */
  liveStates(statuses: readonly SubscriptionStatusCode[]): Promise<StateDoc[]> {
    return this.states.find({ deleted: false, status: { $in: [...statuses] } }).toArray();
  }

  /** Channel types of the active Subscriptions, one entry each (metrics). */
  async activeChannelTypes(): Promise<string[]> {
    const docs = await this.states.find({ status: 'active', deleted: false }, { projection: { 'spec.channelType': 1 } }).toArray();
    return docs.map((d) => d.spec.channelType);
  }

  /**
   * Stores the state of a newer version. `previousVid` is the version the caller read (undefined:
   * none existed); a racing replay that got there first wins, which is harmless: both hold the
   * same committed version. The replace is by bare `_id`: the one writer (the outbox consumer,
   * in commit order) has checked the stored version just before, and a filter on `resourceVid`
   * would be a read-modify-write on FerretDB anyway, at the cost of a slower plan.
   */
  async putState(doc: StateDoc, previousVid: number | undefined): Promise<void> {
    try {
      if (previousVid !== undefined) await this.states.replaceOne({ _id: doc._id }, doc);
      else await this.states.insertOne(doc);
    } catch (e) {
      if (!isDuplicateKey(e)) throw e;
    }
  }

  async markStateDeleted(id: string, vid: number, now: Date): Promise<void> {
    await this.states.updateOne({ _id: id }, { $set: { deleted: true, status: 'off', resourceVid: vid, updatedAt: now } });
  }

  // ---------------------------------------------------------------- delivery progress (written by the lease holder)

  runtime(id: string): Promise<RuntimeDoc | null> {
    return this.runtimes.findOne({ _id: id });
  }

  async saveRuntime(rt: RuntimeDoc): Promise<void> {
    await this.runtimes.replaceOne({ _id: rt._id }, rt, { upsert: true });
  }

  /** The delivery leases, one chain per Subscription id (links `<sub>:<n>`). */
  deliveryLeases(owner: string, ttlMs: number, now: () => number): LeaseChain {
    return new LeaseChain(this.leases, this.leaseTops, owner, ttlMs, now);
  }

  // ---------------------------------------------------------------- notification rows and their numbering

  /** The history id recorded under number `num`, or null when that number is not taken. */
  async rowHistoryId(sub: string, num: number): Promise<string | null> {
    return (await this.rows.findOne({ _id: rowId(sub, num) }, { projection: { historyId: 1 } }))?.historyId ?? null;
  }

  /** Rows `from`..`from+count-1` by key, in order, stopping at the first missing one. */
  async rowsFrom(sub: string, from: number, count: number): Promise<NotificationRow[]> {
    const found = await Promise.all(Array.from({ length: count }, (_, k) => this.rows.findOne({ _id: rowId(sub, from + k) })));
    const out: NotificationRow[] = [];
    for (const r of found) {
      if (!r) break;
      out.push(r);
    }
    return out;
  }

  /** Inserts rows in order; false when a number was taken already (nothing after it is inserted). */
  async insertRows(docs: NotificationRow[]): Promise<boolean> {
    try {
      await this.rows.insertMany(docs, { ordered: true });
      return true;
    } catch (e) {
      if (isDuplicateKey(e)) return false;
      throw e;
    }
  }

  counter(sub: string): Promise<CounterDoc | null> {
    return this.counters.findOne({ _id: sub });
  }

  async saveCounter(doc: CounterDoc): Promise<void> {
    await this.counters.replaceOne({ _id: doc._id }, doc, { upsert: true });
  }

  /**
   * Erasure: rows naming any of `names` ("Type/id") keep their number but lose what they said;
   * returns how many rows name them (changed unless `dryRun`).
   */
  async tombstoneRows(names: ReadonlySet<string>, dryRun: boolean): Promise<number> {
    let n = 0;
    for await (const r of this.rows.find({ erased: { $ne: true } }, { projection: { type: 1, id: 1 } })) {
      if (!names.has(`${r.type}/${r.id}`)) continue;
      n++;
      if (dryRun) continue;
      const full = await this.rows.findOne({ _id: r._id });
      if (!full) continue;
      await this.rows.replaceOne({ _id: r._id }, { sub: full.sub, num: full.num, historyId: '', type: '', id: '', vid: 0, method: 'DELETE', ts: full.ts, createdAt: full.createdAt, erased: true });
    }
    return n;
  }

  // ---------------------------------------------------------------- due marks

  /** Marks Subscriptions as having work (idempotent: a mark already there stays). */
  async markDue(ids: readonly string[], at: Date): Promise<void> {
    if (ids.length === 0) return;
    await this.due.insertMany(ids.map((_id) => ({ _id, at })), { ordered: false }).catch((e: unknown) => {
      if (!isDuplicateKey(e)) throw e;
    });
  }

  async clearDue(id: string): Promise<void> {
    await this.clearDueMany([id]);
  }

  /** Clears many marks in one write (`$in` scans, but this collection holds only what is due). */
  async clearDueMany(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    if (ids.length === 1) await this.due.deleteOne({ _id: ids[0] });
    else await this.due.deleteMany({ _id: { $in: [...ids] } });
  }

  /** Every marked Subscription id (a small collection: marks go as soon as the work is looked at). */
  async dueIds(): Promise<string[]> {
    return (await this.due.find({}, { projection: { _id: 1 } }).toArray()).map((d) => d._id);
  }

  // ---------------------------------------------------------------- websocket binding tokens

  async saveToken(doc: TokenDoc): Promise<void> {
    await this.tokens.insertOne(doc);
  }

  token(id: string): Promise<TokenDoc | null> {
    return this.tokens.findOne({ _id: id });
  }

  // ---------------------------------------------------------------- generation (tells instances to reload)

  /**
   * The newest generation: a chain of inserted links `generation:<n>` found from a hint by key,
   * because an `$inc` is not atomic on FerretDB (two bumps could count as one).
   */
  async generation(): Promise<number> {
    let n = (await this.meta.findOne({ _id: GENERATION }))?.n ?? 0;
    while (await this.meta.findOne({ _id: `${GENERATION}:${n + 1}` }, { projection: { _id: 1 } })) n++;
    return n;
  }

  /** Claims the next generation; returns its number. */
  async bumpGeneration(): Promise<number> {
    for (;;) {
      const n = (await this.generation()) + 1;
      try {
        await this.meta.insertOne({ _id: `${GENERATION}:${n}`, n });
      } catch (e) {
        if (isDuplicateKey(e)) continue; // another instance took n: go after it
        throw e;
      }
      await this.meta.replaceOne({ _id: GENERATION }, { n }, { upsert: true }).catch((e: unknown) => {
        if (!isDuplicateKey(e)) throw e; // a racing first upsert: the hint is only a hint
      });
      return n;
    }
  }
}
