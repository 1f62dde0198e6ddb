import type { Collection, Db } from 'mongodb';
import { COLLECTIONS } from '../collections';
import type { CurrentDoc } from '../types';
import { type Carrier, carries, decodeEntries, encodeEntries, encodeEntry } from './entry-codec';
import type { ErasePlan } from './erase-plan';
import { StoreQueue, mergeInto, token } from './store-queue';

/**
 * The storage of candidate buckets on FerretDB: documents keyed by `_id` (the one filter FerretDB
 * 1.24 serves from an index) holding lists of entries, and directories listing which units (days,
 * hours, minutes) of a key hold entries. What goes where is decided by the bucket kinds
 * (buckets.ts: Observation patient/code buckets and token lists; time-buckets.ts: versions by
 * time); this file only stages, stores and reads.
 *
 * Right after a version's commit point its entries are staged in memory (`stage`, no I/O), where
 * readers see them at once; the outbox worker stores them with one update per bucket and batch
 * (`record`) and unstages them. A crash loses only staged entries of versions whose outbox
 * intents are still there, so the outbox stores them after the restart. Entries are never removed
 * (but by erasure, and the trim of trimmed buckets), so the lists are a superset: readers treat
 * them as candidates only.
 *
 * Only one process writes the buckets (the outbox lease holder, or the start-up rebuild; erasure
 * too, as an outbox job), which matters because `$push`/`$addToSet` are read-modify-write on
 * FerretDB; `record` calls and erasure's rewrites of this process are serialised for the same
 * reason (store-queue.ts).
 */

export const BUCKET_COLLECTION = COLLECTIONS.buckets;

/**
 * A bucket document grows to about this many characters, then its entries go on in parts
 * (`<key>#1`, `<key>#2`, ...; the first document counts them): far from the 16 MiB document
 * limit whatever the rate of readings, and an append (a read-modify-write of the whole
 * document on FerretDB) never rewrites more than this.
 */
export const PART_BYTES = 64_000;
/**
 * Bytes of carried documents one bucket stores: later entries go without (readers then read
 * them by `_id`). About 250 vital signs (CarriedDoc; 100 did as much when they kept their index values).
 */
export const CARRY_BYTES = 300_000;

/** An id and the index values a bucket keeps of it; patient-and-code and value-band entries carry the document too (buckets.ts). */
export interface Entry extends Carrier {
  i: string;
  x: Record<string, unknown>;
}

/**
 * What an entry carries of a current document: everything but `idx`, which is most of its
 * bytes (1.8 of 3 kB for a vital sign) and a pure function of `res`, so a reader recomputes it
 * for the few documents a page uses (about 0.2 ms each) instead of reading it with every entry.
 * At 100k Observations this took the population query from p50 60-64 to 17-39 ms.
 */
export type CarriedDoc = Omit<CurrentDoc, 'idx'>;
/**
 * Stored as text, not as nested documents: FerretDB 1.24 decodes a document's nested objects and
 * arrays one value at a time (a day bucket of 150 entries with their index values took ~66 ms to
 * read), while a string costs about its bytes (the same entries as text: ~3 ms). A bucket holds
 * one chunk of entry lines per stored batch (`entryCodec`); a directory one `unit\tcode` string
 * per pair.
 */
interface BucketDoc {
  _id: string;
  s: string[];
  /** Parts beyond this document (`<key>#1` ...), once it reached PART_BYTES. */
  p?: number;
}
interface DirDoc {
  _id: string;
  u: string[];
}

/** What a set of versions adds: entries per bucket, and units (with their codes) per directory. */
export interface Ops {
  buckets: Map<string, Entry[]>;
  dirs: Map<string, Map<string, Set<string>>>;
}

export function emptyOps(): Ops {
  return { buckets: new Map(), dirs: new Map() };
}

export function pushEntry(ops: Ops, key: string, e: Entry): void {
  const list = ops.buckets.get(key);
  if (list) list.push(e);
  else ops.buckets.set(key, [e]);
}

/** A directory as readers see it: unit -> codes recorded with it (stored and staged). */
export type Dir = Map<string, Set<string>>;

/** Of these history ids, those whose outbox intents are still there (post-commit work pending). */
export type OpenVersions = (historyIds: readonly string[]) => Promise<ReadonlySet<string>>;

/**
 * Buckets kept trimmed rather than appended to (newest.ts): stored by reading the bucket, adding
 * the new entries and writing back what `trim` keeps; `afterRemoval` is what erasure leaves of
 * one (its trim no longer holds over the rest).
 */
export interface TrimmedBuckets {
  is(key: string): boolean;
  trim(entries: readonly Entry[]): Entry[];
  afterRemoval(kept: readonly Entry[]): Entry[];
}

/** Entries staged at a commit point are looked after once this old (the outbox had its chance)... */
const SETTLE_MS = 1000;
/** ...by a sweep at most this often, started by a later stage. */
const SWEEP_MS = 2000;

export class BucketStore {
  private readonly col: Collection<BucketDoc>;
  private readonly dirs: Collection<DirDoc>;
  /** Directory contents known to be stored (only this process writes them). */
  private readonly dirCache = new Map<string, Dir>();
  /** Entries of committed versions not stored yet, by bucket and entry token. */
  private readonly staged = new Map<string, Map<string, Entry>>();
  private readonly stagedDirs = new Map<string, Dir>();
  /** Per bucket this process wrote to: its last part, the characters stored there, carried entries. */
  private readonly written = new Map<string, { part: number; bytes: number; carried: number }>();
  private readonly queue = new StoreQueue((ops, concurrency) => this.store(ops, concurrency));
  /**
   * What was staged at this process's commit points, oldest first, until the outbox is done with
   * those versions. Whoever holds the outbox lease stores (and there unstages) the entries; on
   * any other instance they would stay staged for good, so a sweep unstages them once their
   * intents are gone (an intent is deleted only after every consumer, storing last, is done).
   */
  private awaiting: { ids: readonly string[]; ops: Ops; at: number }[] = [];
  private sweptAt = 0;
  private sweeping = false;

  constructor(
    db: Db,
    private readonly open?: OpenVersions,
    private readonly trimmed?: TrimmedBuckets,
  ) {
    this.col = db.collection<BucketDoc>(BUCKET_COLLECTION);
    this.dirs = db.collection<DirDoc>(BUCKET_COLLECTION);
  }

  /** Entries held in memory and not stored yet (an operator's gauge: a backlog, or a leak). */
  stagedCount(): number {
    let n = 0;
    for (const m of this.staged.values()) n += m.size;
    return n;
  }

  /** Adds units (with a code) to a directory of `ops`, unless known to be stored. */
  addToDir(ops: Ops, dirKey: string, units: readonly string[], code: string): void {
    const known = this.dirCache.get(dirKey);
    for (const u of units) {
      if (known?.get(u)?.has(code)) continue;
      const pending = ops.dirs.get(dirKey) ?? new Map<string, Set<string>>();
      pending.set(u, (pending.get(u) ?? new Set<string>()).add(code));
      ops.dirs.set(dirKey, pending);
    }
  }

  /**
   * Right after the commit point: readers see these entries from now on. `versions` (history
   * ids) are the committed versions they belong to, when this process committed them.
   */
  stage(ops: Ops, versions?: readonly string[]): void {
    if (versions?.length && this.open) {
      this.awaiting.push({ ids: versions, ops, at: Date.now() });
      this.sweepSoon();
    }
    // A snapshot: a carried document must not follow later changes to the writer's objects. An
    // entry staged already (its commit point, then the outbox hand-off on the same instance)
    // is the same entry: it is not copied again.
    mergeInto({ buckets: this.staged, dirs: this.stagedDirs }, ops, (e) => (carries(e) ? snapshot(e) : e));
  }

  /**
   * Stores entries (one update per bucket) and unstages them, one store at a time: calls that
   * come while one runs are stored together next (store-queue.ts). `concurrency` > 1 (bulk
   * loaders only, with no request traffic beside them) updates that many distinct buckets at once.
   */
  record(ops: Ops, concurrency = 1): Promise<void> {
    return this.queue.add(ops, concurrency);
  }

  private async store(ops: Ops, concurrency: number): Promise<void> {
    // One update at a time: FerretDB 1.24 stalled (every connection, for good) when a multi-update
    // `bulkWrite` ran beside the request path's inserts; single updates off the request path are fine.
    const updates: (() => Promise<unknown>)[] = [];
    for (const [key, entries] of ops.buckets) updates.push(() => (this.trimmed?.is(key) ? this.replaceTrimmed(key, entries) : this.append(key, entries)));
    for (const [key, units] of ops.dirs) {
      const pairs: string[] = [];
      for (const [u, codes] of units) for (const c of codes) pairs.push(`${u}\t${c}`);
      updates.push(() => this.dirs.updateOne({ _id: key }, { $addToSet: { u: { $each: pairs } } }, { upsert: true }));
    }
    for (let i = 0; i < updates.length; i += concurrency) await Promise.all(updates.slice(i, i + concurrency).map((u) => u()));
    this.unstage(ops);
  }

  /** Takes entries out of memory: they are in the database now. */
  private unstage(ops: Ops): void {
    for (const [key, entries] of ops.buckets) {
      const m = this.staged.get(key);
      if (!m) continue;
      for (const e of entries) m.delete(token(e));
      if (m.size === 0) this.staged.delete(key);
    }
    for (const [key, units] of ops.dirs) this.unstageDir(key, units);
  }

  /** Starts a sweep of `awaiting` when one is due and none runs (failures wait for the next). */
  private sweepSoon(): void {
    const now = Date.now();
    if (this.sweeping || now - this.sweptAt < SWEEP_MS || now - this.awaiting[0].at < SETTLE_MS) return;
    this.sweeping = true;
    this.sweptAt = now;
    void this.sweep(now - SETTLE_MS)
      .catch(() => undefined)
      .finally(() => (this.sweeping = false));
  }

  private async sweep(before: number): Promise<void> {
    let n = 0;
    while (n < this.awaiting.length && this.awaiting[n].at <= before) n++;
    const due = this.awaiting.slice(0, n);
    const ids = due.flatMap((a) => a.ids);
    const open = new Set<string>();
    for (let i = 0; i < ids.length; i += 500) for (const id of await this.open!(ids.slice(i, i + 500))) open.add(id);
    const kept: typeof due = [];
    for (const a of due) {
      if (a.ids.some((id) => open.has(id))) kept.push(a);
      else this.unstage(a.ops);
    }
    // Items staged during the reads are behind the first n: they stay as they were.
    this.awaiting = [...kept, ...this.awaiting.slice(n)];
  }

  /**
   * Appends a chunk to a bucket's last part, or starts a part when that one is full. What this
   * process has not written yet counts as empty (nothing is read before a write); a write that
   * fails (a part over the limit after restarts) learns the bucket's parts and goes on in a new one.
   */
  private async append(key: string, entries: readonly Entry[]): Promise<void> {
    if (this.written.size > 100_000) this.written.clear();
    const w = this.written.get(key) ?? { part: 0, bytes: 0, carried: 0 };
    const lines = entries.map((e) => {
      const line = encodeEntry(e);
      if (!carries(e)) return line;
      if (w.carried + line.length > CARRY_BYTES) return encodeEntry({ i: e.i, x: e.x });
      w.carried += line.length;
      return line;
    });
    const chunk = lines.join('\n');
    if (w.bytes > 0 && w.bytes + chunk.length > PART_BYTES) await this.startPart(key, w, w.part + 1);
    try {
      await this.col.updateOne({ _id: partKey(key, w.part) }, { $push: { s: chunk } }, { upsert: true });
    } catch {
      const base = await this.col.findOne({ _id: key });
      await this.startPart(key, w, (base?.p ?? 0) + 1);
      await this.col.updateOne({ _id: partKey(key, w.part) }, { $push: { s: chunk } }, { upsert: true });
    }
    w.bytes += chunk.length;
    this.written.set(key, w);
  }

  /** A trimmed bucket: what it keeps of the stored entries and these, in one document. */
  private async replaceTrimmed(key: string, entries: readonly Entry[]): Promise<void> {
    const base = await this.col.findOne({ _id: key });
    const kept = this.trimmed!.trim([...decodeEntries(base?.s), ...entries]);
    await this.col.replaceOne({ _id: key }, { s: [encodeEntries(kept)] }, { upsert: true });
  }

  /** Counts part `n` in the first document (after which readers read it) and writes there from now on. */
  private async startPart(key: string, w: { part: number; bytes: number }, n: number): Promise<void> {
    await this.col.updateOne({ _id: key }, { $max: { p: n } }, { upsert: true });
    w.part = n;
    w.bytes = 0;
  }

  /** A bucket's stored parts, the first document first. */
  private async readParts(key: string): Promise<BucketDoc[]> {
    const base = await this.col.findOne({ _id: key });
    if (!base?.p) return base ? [base] : [];
    const rest = await Promise.all(Array.from({ length: base.p }, (_, k) => this.col.findOne({ _id: partKey(key, k + 1) })));
    return [base, ...rest.filter((d): d is BucketDoc => d !== null)];
  }

  private unstageDir(key: string, units: Dir): void {
    let known = this.dirCache.get(key);
    if (!known) {
      if (this.dirCache.size > 50_000) this.dirCache.clear();
      known = new Map();
      this.dirCache.set(key, known);
    }
    const m = this.stagedDirs.get(key);
    for (const [u, codes] of units) {
      known.set(u, new Set([...(known.get(u) ?? []), ...codes]));
      const st = m?.get(u);
      if (st) for (const c of codes) st.delete(c);
      if (st && st.size === 0) m?.delete(u);
    }
    if (m && m.size === 0) this.stagedDirs.delete(key);
  }

  /**
   * Directories by key, stored and staged. Staged contents are taken before the reads: the
   * outbox unstages only after storing them, so whatever is no longer staged is in the database.
   */
  async readDirs(keys: readonly string[]): Promise<Dir[]> {
    const staged = keys.map((k) => [...(this.stagedDirs.get(k) ?? [])].map(([u, c]) => [u, [...c]] as [string, string[]]));
    const docs = await Promise.all(keys.map((k) => this.dirs.findOne({ _id: k })));
    return keys.map((_, i) => {
      const out: Dir = new Map();
      for (const [u, codes] of [...dirPairs(docs[i]), ...staged[i]]) out.set(u, new Set([...(out.get(u) ?? []), ...codes]));
      return out;
    });
  }

  /** Entries of buckets by key, stored and staged (staged taken first, as in readDirs). */
  async readEntries(keys: readonly string[]): Promise<Entry[][]> {
    if (keys.length === 0) return [];
    // Copies of staged carried documents: each reader gets its own, as from the database.
    const staged = keys.map((k) => [...(this.staged.get(k)?.values() ?? [])].map((e) => (carries(e) ? snapshot(e) : e)));
    const docs = await Promise.all(keys.map((k) => this.readParts(k)));
    return keys.map((_, i) => [...docs[i].flatMap((d) => decodeEntries(d.s)), ...staged[i]]);
  }

  /** Erasure (erase-plan.ts): what this process holds in memory of the plan goes at once (no I/O). */
  dropStaged(plan: ErasePlan): void {
    for (const { keys, ids } of plan.entries) {
      const gone = new Set(ids);
      for (const key of keys) {
        const staged = this.staged.get(key);
        if (staged) for (const [tok, e] of staged) if (gone.has(e.i)) staged.delete(tok);
      }
    }
    for (const { key } of plan.dirs) {
      this.dirCache.delete(key);
      this.stagedDirs.delete(key);
    }
    for (const { keys, unit, values } of plan.dirCodes) {
      for (const key of keys) {
        for (const known of [this.stagedDirs.get(key), this.dirCache.get(key)]) {
          const set = known?.get(unit);
          if (set) for (const v of values) set.delete(v);
        }
      }
    }
  }

  /**
   * Erasure: applies the plan to the stored buckets with no store of this process beside it
   * (store-queue.ts), so no append to a bucket lands between its read and its rewrite here. Only
   * the bucket writer (the outbox lease holder) calls this; returns how many entries went.
   */
  applyErase(plan: ErasePlan): Promise<number> {
    return this.queue.exclusive(async () => {
      this.dropStaged(plan);
      let removed = 0;
      for (const { keys, ids } of plan.entries) removed += await this.eraseEntries(keys, new Set(ids));
      for (const d of plan.dirs) await this.eraseDir(d.key, d.extra);
      for (const c of plan.dirCodes) {
        const values = new Set(c.values);
        for (const key of c.keys) await this.eraseDirCodes(key, c.unit, values);
      }
      return removed;
    });
  }

  /** Removes stored entries of `ids` from these buckets; how many went. */
  private async eraseEntries(keys: Iterable<string>, ids: ReadonlySet<string>): Promise<number> {
    let removed = 0;
    for (const key of keys) {
      for (const doc of await this.readParts(key)) {
        const all = decodeEntries(doc.s);
        let kept = all.filter((e) => !ids.has(e.i));
        removed += all.length - kept.length;
        // The first document keeps its part count, even when emptied.
        if (kept.length === all.length) continue;
        if (kept.length > 0 && this.trimmed?.is(key)) kept = this.trimmed.afterRemoval(kept);
        if (kept.length === 0 && !doc.p) await this.col.deleteOne({ _id: doc._id });
        else await this.col.replaceOne({ _id: doc._id }, { s: kept.length > 0 ? [encodeEntries(kept)] : [], ...(doc.p ? { p: doc.p } : {}) });
      }
    }
    return removed;
  }

  /** Removes a directory and the buckets of its units (plus `extra` unit names). */
  private async eraseDir(dirKey: string, extra: readonly string[]): Promise<void> {
    const dir = await this.dirs.findOne({ _id: dirKey });
    for (const u of new Set([...dirPairs(dir).map(([unit]) => unit), ...extra])) {
      for (const part of await this.readParts(`${dirKey}|${u}`)) await this.col.deleteOne({ _id: part._id });
    }
    await this.dirs.deleteOne({ _id: dirKey });
  }

  /** Removes (unit, value) pairs of these values from a directory shared with others. */
  private async eraseDirCodes(dirKey: string, unit: string, values: ReadonlySet<string>): Promise<void> {
    const dir = await this.dirs.findOne({ _id: dirKey });
    if (!dir) return;
    const kept = dir.u.filter((p) => !(p.startsWith(`${unit}\t`) && values.has(p.slice(unit.length + 1))));
    if (kept.length < dir.u.length) await this.dirs.replaceOne({ _id: dirKey }, { u: kept });
  }

  /** Removes every bucket (before a rebuild). */
  async clear(): Promise<void> {
    await this.col.deleteMany({});
    this.dirCache.clear();
    this.written.clear();
  }
}

function partKey(key: string, part: number): string {
  return part === 0 ? key : `${key}#${part}`;
}

function snapshot(e: Entry): Entry {
  return decodeEntries([encodeEntries([e])])[0];
}

/** A stored directory's (unit, [code]) pairs. */
function dirPairs(doc: DirDoc | null): [string, string[]][] {
  return (doc?.u ?? []).map((p) => {
    const tab = p.indexOf('\t');
    return [p.slice(0, tab), [p.slice(tab + 1)]];
  });
}
