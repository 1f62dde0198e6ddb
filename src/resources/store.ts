import type { Resource } from 'fhir/r4';
import type { Collection, Db } from 'mongodb';
import type { AccessPolicy, Principal } from '../auth/types';
import { Errors, FhirError } from '../errors';
import { GroupInserter } from '../db/group-insert';
import { findByIds } from '../db/lookup';
import { jsonEqual } from './equality';
import { typeDef } from './registry';
import { historyId, type CurrentDoc, type HistoryDoc, type IndexEntries, type JournalDoc, type OutboxDoc, type WriteMethod } from './types';

/** What the store needs from the search engine. */
export interface Indexer {
  index(resource: Resource): { idx: IndexEntries; comp: string[] };
}
/** Candidate lists a search engine keeps beside the current documents (staged at each commit point). */
export interface CandidateRecorder {
  stageCandidates(type: string, docs: readonly CurrentDoc[]): void;
}
export interface Matcher {
  findMatches(type: string, query: string, policy: AccessPolicy, limit: number): Promise<CurrentDoc[]>;
}
export type Validator = (
  resource: unknown,
  opts: { expectedType: string; mode: 'create' | 'update'; id?: string },
) => Resource;
export type BeforeWrite = (
  ctx: { principal: Principal; method: 'POST' | 'PUT' | 'PATCH' },
  resource: Resource,
  previous?: Resource,
) => Promise<Resource>;

export interface StoreDeps {
  db: Db;
  clock: () => Date;
  newId: () => string;
  indexer: Indexer;
  matcher: Matcher;
  candidates?: CandidateRecorder;
  validate: Validator;
  beforeWrite?: BeforeWrite;
  /** Called after every commit so the outbox worker picks the version up without waiting. */
  onCommit?: () => void;
}

export interface WriteCtx {
  principal: Principal;
  /** Set when the write belongs to a transaction Bundle (see transaction.ts). */
  txId?: string;
  /** Server-side writes (audit trail, shipped topics) may write server-only types. */
  internal?: boolean;
}

/** The outcome of a write, enough to build any response form. */
export interface WriteResult {
  status: 200 | 201 | 204;
  type: string;
  id: string;
  vid: number;
  ts: Date;
  resource?: Resource;
  comp: string[];
  /** False when the write was a no-op (identical content, or an existing match for If-None-Exist). */
  changed: boolean;
}

/** A version ready to be committed: validated, stamped and indexed. */
export interface PreparedWrite {
  type: string;
  id: string;
  method: WriteMethod;
  expectedVid: number;
  current: CurrentDoc | null;
  doc: CurrentDoc;
  noop: boolean;
}

/** Conditional-create locks expire so a crashed writer cannot block a query forever. */
const LOCK_TTL_MS = 30_000;
/** An outbox intent without its history version this old belongs to a writer that died. */
export const STALE_INTENT_MS = 10_000;

export function parseVersionTag(etag: string | undefined, header = 'If-Match'): number | undefined {
  if (etag === undefined) return undefined;
  const m = /^(?:W\/)?"?(\d+)"?$/.exec(etag.trim());
  if (!m) throw Errors.badRequest(`Invalid ${header} header "${etag}": expected W/"<versionId>"`, 'MSG_BAD_ETAG');
  return Number(m[1]);
}

export function isDuplicateKey(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === 11000;
}

export function requireWritableType(type: string): void {
  const def = typeDef(type);
  if (!def) throw Errors.notFound(`Resource type "${type}" is not supported`, 'MSG_UNKNOWN_TYPE');
  if (!def.clientWritable) {
    throw Errors.methodNotAllowed(`${type} resources are written by the server only`, 'MSG_OP_NOT_ALLOWED');
  }
}

/**
 * Versioned resource storage. The commit point of every write is the insert of its history
 * document; the current document is updated right after, and the outbox worker repairs it if a
 * crash came in between. See shared/design.md section 2.
 */
export class ResourceStore {
  readonly history: Collection<HistoryDoc>;
  readonly outbox: Collection<OutboxDoc>;
  readonly journals: Collection<JournalDoc>;
  private readonly locks: Collection<{ _id: string; until: Date }>;
  /** Group commit of the hot-path inserts (see group-insert.ts). */
  private readonly intents: GroupInserter<OutboxDoc>;
  private readonly versions: GroupInserter<HistoryDoc>;
  private readonly creations = new Map<string, GroupInserter<CurrentDoc>>();

  constructor(readonly deps: StoreDeps) {
    this.history = deps.db.collection<HistoryDoc>('history');
    this.outbox = deps.db.collection<OutboxDoc>('outbox');
    this.journals = deps.db.collection<JournalDoc>('tx_journal');
    this.locks = deps.db.collection('locks');
    this.intents = new GroupInserter(this.outbox);
    this.versions = new GroupInserter(this.history);
  }

  private createInserter(type: string): GroupInserter<CurrentDoc> {
    let g = this.creations.get(type);
    if (!g) this.creations.set(type, (g = new GroupInserter(this.current(type))));
    return g;
  }

  /**
   * One committed version by its history id (a primary-key lookup on every database);
   * versions of a transaction still in flight are not committed yet.
   */
  async committedVersion(type: string, id: string, vid: number): Promise<HistoryDoc | null> {
    const h = await this.history.findOne({ _id: historyId(type, id, vid) });
    if (!h?.tx) return h;
    const j = await this.journals.findOne({ _id: h.tx }, { projection: { state: 1 } });
    return !j || j.state === 'committed' ? h : null;
  }

  /** Ids of transactions that have not reached their commit point: their versions are hidden. */
  async uncommittedTransactions(): Promise<Set<string>> {
    const open = await this.journals.find({ state: 'pending' }, { projection: { _id: 1 } }).toArray();
    return new Set(open.map((j) => j._id));
  }

  /** Committed versions whose post-commit work (outbox intents) is still pending, e.g. after a crash. */
  async pendingCommitted(): Promise<HistoryDoc[]> {
    const intents = await this.outbox.find({}, { projection: { _id: 1 } }).toArray();
    if (intents.length === 0) return [];
    const versions = await findByIds(this.history, intents.map((i) => i._id));
    const open = versions.some((h) => h.tx) ? await this.uncommittedTransactions() : new Set<string>();
    return versions.filter((h) => !(h.tx && open.has(h.tx)));
  }

  /** The newest committed version at or above `fromVid`, probing by primary key. */
  async latestCommitted(type: string, id: string, fromVid: number): Promise<HistoryDoc | null> {
    let latest: HistoryDoc | null = null;
    for (let v = Math.max(1, fromVid); ; v++) {
      const h = await this.committedVersion(type, id, v);
      if (!h) return latest;
      latest = h;
    }
  }

  current(type: string): Collection<CurrentDoc> {
    return this.deps.db.collection<CurrentDoc>(type);
  }

  async ensureIndexes(types: readonly string[]): Promise<void> {
    await this.history.createIndex({ type: 1, id: 1, vid: -1 });
    await this.history.createIndex({ ts: -1, _id: -1 });
    await this.history.createIndex({ type: 1, ts: -1, _id: -1 });
    await this.outbox.createIndex({ at: 1 });
    for (const t of types) await this.current(t).createIndex({ ts: -1, _id: -1 });
  }

  // ---------------------------------------------------------------- reads

  /** The current version, as the caller may see it: 404 when absent or out of reach, 410 when deleted. */
  async read(type: string, id: string, policy: AccessPolicy): Promise<CurrentDoc> {
    const doc = await this.current(type).findOne({ _id: id });
    if (!doc || !policy.canRead(doc.res, doc.comp)) {
      throw Errors.notFound(`${type}/${id} is not known`, 'MSG_NO_EXIST', [type]);
    }
    if (doc.deleted) {
      const e = Errors.gone(`${type}/${id} has been deleted`, 'MSG_DELETED_ID', [type]);
      throw new FhirError(e.status, e.code, e.messageCode, e.message, e.expression, {
        ETag: `W/"${doc.vid}"`,
        'Last-Modified': doc.ts.toUTCString(),
      });
    }
    return doc;
  }

  async vread(type: string, id: string, vid: number, policy: AccessPolicy): Promise<HistoryDoc> {
    const doc = await this.committedVersion(type, id, vid);
    const visible = doc && (doc.res ? policy.canRead(doc.res, doc.comp) : await this.canSeeDeleted(type, id, vid, policy));
    if (!doc || !visible) {
      throw Errors.notFound(`Version ${vid} of ${type}/${id} is not known`, 'MSG_NO_EXIST', [type]);
    }
    if (doc.deleted) throw Errors.gone(`Version ${vid} of ${type}/${id} is a deletion`, 'MSG_DELETED_ID', [type]);
    return doc;
  }

  /** A deletion is visible to whoever could read the version it deleted. */
  async canSeeDeleted(type: string, id: string, vid: number, policy: AccessPolicy): Promise<boolean> {
    const prev = vid > 1 ? await this.committedVersion(type, id, vid - 1) : null;
    return Boolean(prev?.res && policy.canRead(prev.res, prev.comp));
  }

  // ---------------------------------------------------------------- write preparation

  /**
   * Validates, stamps and indexes a new version of `type/id` on top of `current` (null when the
   * resource does not exist yet). Throws FhirErrors for anything the client got wrong.
   */
  async prepare(
    type: string,
    id: string,
    incoming: unknown,
    current: CurrentDoc | null,
    method: 'POST' | 'PUT' | 'PATCH',
    ctx: WriteCtx,
    now: Date,
  ): Promise<PreparedWrite> {
    if (!ctx.internal) requireWritableType(type);
    let resource = this.deps.validate(incoming, {
      expectedType: type,
      mode: method === 'POST' ? 'create' : 'update',
      id: method === 'POST' ? undefined : id,
    });
    const previous = current && !current.deleted ? current.res : undefined;
    if (this.deps.beforeWrite && !ctx.internal) {
      resource = await this.deps.beforeWrite({ principal: ctx.principal, method }, { ...resource, id } as Resource, previous);
    }
    const expectedVid = current?.vid ?? 0;
    const vid = expectedVid + 1;
    const meta = { ...(resource.meta ?? {}) };
    delete meta.versionId;
    delete meta.lastUpdated;
    const body = { ...resource, id } as Resource;
    if (Object.keys(meta).length > 0) body.meta = meta;
    else delete body.meta;

    // An update identical to the current content makes no new version.
    if (previous && !current?.deleted && jsonEqual(stripServerMeta(previous), body)) {
      return { type, id, method, expectedVid, current, doc: current as CurrentDoc, noop: true };
    }

    const stamped = {
      ...body,
      meta: { ...meta, versionId: String(vid), lastUpdated: now.toISOString() },
    } as Resource;
    // Key order: resourceType, id, meta first, as readers expect.
    const { resourceType, id: _id, meta: m, ...rest } = stamped as Resource & Record<string, unknown>;
    const ordered = { resourceType, id: _id, meta: m, ...rest } as Resource;
    const { idx, comp } = this.deps.indexer.index(ordered);
    if (!ctx.principal.policy.canWrite(ordered, comp)) {
      throw Errors.forbidden(`Your access does not allow writing this ${type}`, 'MSG_FORBIDDEN', [type]);
    }
    if (previous && current && !ctx.principal.policy.canWrite(previous, current.comp)) {
      throw Errors.forbidden(`Your access does not allow changing ${type}/${id}`, 'MSG_FORBIDDEN', [type]);
    }
    const doc: CurrentDoc = { _id: id, res: ordered, vid, ts: now, deleted: false, idx, comp };
    return { type, id, method, expectedVid, current, doc, noop: false };
  }

  prepareDelete(type: string, current: CurrentDoc, ctx: WriteCtx, now: Date): PreparedWrite {
    requireWritableType(type);
    if (!ctx.principal.policy.canWrite(current.res, current.comp)) {
      throw Errors.forbidden(`Your access does not allow deleting ${type}/${current._id}`, 'MSG_FORBIDDEN', [type]);
    }
    const doc: CurrentDoc = {
      _id: current._id,
      res: current.res,
      vid: current.vid + 1,
      ts: now,
      deleted: true,
      idx: {},
      comp: current.comp,
    };
    return { type, id: current._id, method: 'DELETE', expectedVid: current.vid, current, doc, noop: false };
  }

  // ---------------------------------------------------------------- commit

  historyDocOf(w: PreparedWrite, txId?: string): HistoryDoc {
    const h: HistoryDoc = {
      _id: historyId(w.type, w.id, w.doc.vid),
      type: w.type,
      id: w.id,
      vid: w.doc.vid,
      ts: w.doc.ts,
      deleted: w.doc.deleted,
      method: w.method,
      comp: w.doc.comp,
    };
    if (!w.doc.deleted) h.res = w.doc.res;
    if (txId) h.tx = txId;
    return h;
  }

  /**
   * Commits one prepared version. The outbox intent goes first (so the version's post-commit
   * work survives a crash), then the history insert, which is the commit point; a duplicate
   * key on either means another writer took this version first (409).
   */
  async commit(w: PreparedWrite): Promise<void> {
    const hid = historyId(w.type, w.id, w.doc.vid);
    await this.claimIntent(hid, w);
    try {
      await this.versions.insert(this.historyDocOf(w));
    } catch (e) {
      if (isDuplicateKey(e)) {
        await this.outbox.deleteOne({ _id: hid });
        throw await this.lostRace(w);
      }
      throw e;
    }
    this.stageCandidates([w]);
    await this.applyCurrent(w.type, w.doc, w.expectedVid);
    this.deps.onCommit?.();
  }

  /**
   * Right after the commit point (no await in between): the search engine's candidate entries
   * of these versions, visible to readers before the write is acknowledged. The outbox stores
   * them durably after the commit, like any other post-commit work.
   */
  stageCandidates(writes: readonly PreparedWrite[]): void {
    const rec = this.deps.candidates;
    if (!rec) return;
    const byType = new Map<string, CurrentDoc[]>();
    for (const w of writes) {
      if (w.noop || w.doc.deleted) continue;
      byType.set(w.type, [...(byType.get(w.type) ?? []), w.doc]);
    }
    for (const [type, docs] of byType) rec.stageCandidates(type, docs);
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
      if (await this.history.findOne({ _id: hid }, { projection: { _id: 1 } })) throw await this.lostRace(w);
      const intent = await this.outbox.findOne({ _id: hid });
      if (intent && Date.now() - intent.at.getTime() < STALE_INTENT_MS) throw await this.lostRace(w);
      await this.outbox.deleteOne({ _id: hid });
    }
    throw await this.lostRace(w);
  }

  /** Someone else committed this version: make current reflect it, then report the conflict. */
  private async lostRace(w: PreparedWrite): Promise<FhirError> {
    await this.applyFromHistory(w.type, w.id);
    return Errors.conflict(
      `${w.type}/${w.id} was changed by another request at the same time; read it and try again`,
      'MSG_VERSION_CONFLICT',
      [w.type],
    );
  }

  /** Makes the current document show `doc` unless a newer version is already there. */
  async applyCurrent(type: string, doc: CurrentDoc, expectedVid: number): Promise<void> {
    const col = this.current(type);
    if (expectedVid === 0) {
      try {
        await this.createInserter(type).insert(doc);
        return;
      } catch (e) {
        if (!isDuplicateKey(e)) throw e;
      }
    }
    const r = await col.replaceOne({ _id: doc._id, vid: { $lt: doc.vid } }, doc);
    if (r.matchedCount === 0) {
      // Either a newer version is already current (fine), or the document vanished; in the
      // latter case put ours in place.
      const existing = await col.findOne({ _id: doc._id }, { projection: { vid: 1 } });
      if (!existing) await col.insertOne(doc).catch((e: unknown) => (isDuplicateKey(e) ? undefined : Promise.reject(e)));
    }
  }

  /** Rebuilds the current document of type/id from its newest committed history version. */
  async applyFromHistory(type: string, id: string): Promise<void> {
    const cur = await this.current(type).findOne({ _id: id }, { projection: { vid: 1, res: 1 } });
    const latest = await this.latestCommitted(type, id, (cur?.vid ?? 0) + 1);
    if (!latest) return;
    const prev = latest.deleted ? (await this.committedVersion(type, id, latest.vid - 1))?.res : undefined;
    await this.applyCurrent(type, this.currentDocOf(latest, prev), latest.vid - 1);
  }

  currentDocOf(h: HistoryDoc, previousRes?: Resource): CurrentDoc {
    if (h.deleted || !h.res) {
      return {
        _id: h.id,
        res: previousRes ?? ({ resourceType: h.type, id: h.id } as Resource),
        vid: h.vid,
        ts: h.ts,
        deleted: true,
        idx: {},
        comp: h.comp,
      };
    }
    const { idx, comp } = this.deps.indexer.index(h.res);
    return { _id: h.id, res: h.res, vid: h.vid, ts: h.ts, deleted: false, idx, comp };
  }

  // ---------------------------------------------------------------- interactions

  async create(type: string, body: unknown, ctx: WriteCtx, ifNoneExist?: string): Promise<WriteResult> {
    if (ifNoneExist !== undefined) return this.conditionalCreate(type, body, ctx, ifNoneExist);
    const now = this.deps.clock();
    const w = await this.prepare(type, this.deps.newId(), body, null, 'POST', ctx, now);
    await this.commit(w);
    return resultOf(w, 201);
  }

  /**
   * Update (PUT). Without If-Match, a concurrent writer makes us re-read and try again (last
   * writer wins, as the spec allows); with If-Match the version must match exactly.
   */
  async update(type: string, id: string, body: unknown, ctx: WriteCtx, ifMatch?: number): Promise<WriteResult> {
    for (let attempt = 0; ; attempt++) {
      const current = await this.current(type).findOne({ _id: id });
      if (current && !current.deleted && !ctx.principal.policy.canRead(current.res, current.comp)) {
        throw Errors.forbidden(`Your access does not allow changing ${type}/${id}`, 'MSG_FORBIDDEN', [type]);
      }
      checkIfMatch(type, id, current, ifMatch);
      const w = await this.prepare(type, id, body, current, 'PUT', ctx, this.deps.clock());
      if (w.noop) return resultOf(w, 200);
      try {
        await this.commit(w);
      } catch (e) {
        if (e instanceof FhirError && e.status === 409 && ifMatch === undefined && attempt < 3) continue;
        if (e instanceof FhirError && e.status === 409 && ifMatch !== undefined) {
          throw Errors.preconditionFailed(
            `${type}/${id} changed concurrently; If-Match W/"${ifMatch}" no longer matches`,
            'MSG_VERSION_AWARE_CONFLICT',
          );
        }
        throw e;
      }
      return resultOf(w, current && !current.deleted ? 200 : 201);
    }
  }

  /** PATCH: `apply` turns the current resource into the new one (JSON Patch or FHIRPath Patch). */
  async patch(
    type: string,
    id: string,
    apply: (current: Resource) => unknown,
    ctx: WriteCtx,
    ifMatch?: number,
  ): Promise<WriteResult> {
    const current = await this.read(type, id, ctx.principal.policy);
    checkIfMatch(type, id, current, ifMatch);
    const w = await this.prepare(type, id, apply(stripServerMeta(current.res)), current, 'PATCH', ctx, this.deps.clock());
    if (w.noop) return resultOf(w, 200);
    try {
      await this.commit(w);
    } catch (e) {
      if (e instanceof FhirError && e.status === 409) {
        throw Errors.preconditionFailed(`${type}/${id} changed while it was being patched; try again`, 'MSG_VERSION_AWARE_CONFLICT');
      }
      throw e;
    }
    return resultOf(w, 200);
  }

  /** Delete: idempotent; deleting something absent or already deleted answers 204 as well. */
  async delete(type: string, id: string, ctx: WriteCtx, ifMatch?: number): Promise<WriteResult | undefined> {
    requireWritableType(type);
    const current = await this.current(type).findOne({ _id: id });
    if (!current || !ctx.principal.policy.canRead(current.res, current.comp)) {
      if (ifMatch !== undefined) throw Errors.notFound(`${type}/${id} is not known`, 'MSG_NO_EXIST', [type]);
      return undefined;
    }
    checkIfMatch(type, id, current, ifMatch);
    if (current.deleted) return undefined;
    const w = this.prepareDelete(type, current, ctx, this.deps.clock());
    await this.commit(w);
    return resultOf(w, 204);
  }

  // ---------------------------------------------------------------- conditional interactions

  /**
   * Conditional create. Two identical requests racing must yield one resource: the query is
   * serialised through a lock document, and the search is repeated once the lock is ours.
   */
  async conditionalCreate(type: string, body: unknown, ctx: WriteCtx, query: string): Promise<WriteResult> {
    requireWritableType(type);
    const existing = await this.matchOne(type, query, ctx, 'If-None-Exist');
    if (existing) return existingResult(type, existing);
    return this.withLock(`create:${type}?${normaliseQuery(query)}`, async () => {
      const again = await this.matchOne(type, query, ctx, 'If-None-Exist');
      if (again) return existingResult(type, again);
      const w = await this.prepare(type, this.deps.newId(), body, null, 'POST', ctx, this.deps.clock());
      await this.commit(w);
      return resultOf(w, 201);
    });
  }

  async conditionalUpdate(type: string, query: string, body: unknown, ctx: WriteCtx, ifMatch?: number): Promise<WriteResult> {
    requireWritableType(type);
    return this.withLock(`update:${type}?${normaliseQuery(query)}`, async () => {
      const match = await this.matchOne(type, query, ctx, 'Conditional update of');
      const bodyId = typeof body === 'object' && body !== null ? (body as { id?: unknown }).id : undefined;
      if (match) {
        const id = match._id;
        if (bodyId !== undefined && bodyId !== id) {
          throw Errors.badRequest(
            `The resource id "${String(bodyId)}" does not match the resource the condition found (${id})`,
            'MSG_RESOURCE_ID_MISMATCH',
            [`${type}.id`],
          );
        }
        return await this.update(type, id, { ...(body as object), id }, ctx, ifMatch);
      }
      if (typeof bodyId === 'string') return await this.update(type, bodyId, body, ctx, ifMatch);
      const w = await this.prepare(type, this.deps.newId(), body, null, 'POST', ctx, this.deps.clock());
      await this.commit(w);
      return resultOf(w, 201);
    });
  }

  /** Conditional delete: deletes the one match; more than one is 412 (single-delete server). */
  async conditionalDelete(type: string, query: string, ctx: WriteCtx): Promise<WriteResult | undefined> {
    requireWritableType(type);
    const match = await this.matchOne(type, query, ctx, 'Conditional delete of');
    return match ? this.delete(type, match._id, ctx) : undefined;
  }

  /** Finds the single match of a condition; several matches are 412 as the spec requires. */
  async matchOne(type: string, query: string, ctx: WriteCtx, what: string): Promise<CurrentDoc | undefined> {
    if (!query.trim()) throw Errors.badRequest(`${what} needs search parameters`, 'MSG_PARAM_MISSING');
    const matches = await this.deps.matcher.findMatches(type, query, ctx.principal.policy, 2);
    if (matches.length > 1) {
      throw Errors.preconditionFailed(`${what} ${type}?${query} matched more than one resource`, 'MSG_MULTIPLE_MATCHES');
    }
    return matches[0];
  }

  /** Runs `fn` holding a named lock, released however `fn` ends. */
  private async withLock<T>(lockId: string, fn: () => Promise<T>): Promise<T> {
    await this.acquireLock(lockId);
    try {
      return await fn();
    } finally {
      await this.locks.deleteOne({ _id: lockId });
    }
  }

  /** Takes a named lock, waiting while another request holds it; stale locks are taken over. */
  async acquireLock(lockId: string): Promise<void> {
    const deadline = Date.now() + LOCK_TTL_MS;
    for (let wait = 5; ; wait = Math.min(wait * 2, 100)) {
      const now = new Date();
      try {
        await this.locks.insertOne({ _id: lockId, until: new Date(now.getTime() + LOCK_TTL_MS) });
        return;
      } catch (e) {
        if (!isDuplicateKey(e)) throw e;
      }
      const stolen = await this.locks.updateOne(
        { _id: lockId, until: { $lt: now } },
        { $set: { until: new Date(now.getTime() + LOCK_TTL_MS) } },
      );
      if (stolen.modifiedCount === 1) return;
      if (Date.now() > deadline) throw Errors.unavailable('The server is busy with the same conditional request; try again', 'MSG_LOCK_TIMEOUT');
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

export function checkIfMatch(type: string, id: string, current: CurrentDoc | null, ifMatch: number | undefined): void {
  if (ifMatch === undefined) return;
  if (!current || current.deleted) {
    throw Errors.preconditionFailed(`If-Match W/"${ifMatch}" given but ${type}/${id} does not exist`, 'MSG_VERSION_AWARE_CONFLICT');
  }
  if (current.vid !== ifMatch) {
    throw Errors.preconditionFailed(
      `If-Match W/"${ifMatch}" does not match the current version W/"${current.vid}" of ${type}/${id}`,
      'MSG_VERSION_AWARE_CONFLICT',
    );
  }
}

export function stripServerMeta<T extends Resource>(r: T): T {
  if (!r.meta) return r;
  const meta = { ...r.meta };
  delete meta.versionId;
  delete meta.lastUpdated;
  const out = { ...r };
  if (Object.keys(meta).length > 0) out.meta = meta;
  else delete out.meta;
  return out;
}

export function resultOf(w: PreparedWrite, status: WriteResult['status']): WriteResult {
  const d = w.doc;
  return {
    status,
    type: w.type,
    id: w.id,
    vid: d.vid,
    ts: d.ts,
    resource: d.deleted ? undefined : d.res,
    comp: d.comp,
    changed: !w.noop,
  };
}

export function existingResult(type: string, doc: CurrentDoc): WriteResult {
  return { status: 200, type, id: doc._id, vid: doc.vid, ts: doc.ts, resource: doc.res, comp: doc.comp, changed: false };
}

/** Canonical form of a condition so the same query in another order takes the same lock. */
export function normaliseQuery(query: string): string {
  const params = new URLSearchParams(query);
  const pairs = [...params.entries()].sort(([a, av], [b, bv]) => (a === b ? av.localeCompare(bv) : a.localeCompare(b)));
  return new URLSearchParams(pairs).toString();
}

