import type { Resource } from 'fhir/r4';
import { anonymousPrincipal, type AccessPolicy } from '../auth/types';
import { Errors, FhirError } from '../errors';
import type { CommitOptions, CurrentDoc, HistoryDoc, PreparedWrite, ResourceRepository } from '../storage';
import { jsonEqual } from './equality';
import { attachDecimals, decimalsOf, sameDecimals } from '../json';
import { checkIfMatch, normaliseQuery, requireWritableType, stripServerMeta } from './write-checks';
import { existingResult, resultOf, type StoreDeps, type WriteCtx, type WriteResult } from './write-types';

export { checkIfMatch, normaliseQuery, parseVersionTag, requireWritableType, stripServerMeta } from './write-checks';
export { existingResult, resultOf } from './write-types';
export type { BeforeWrite, Indexer, Matcher, StoreDeps, Validator, WriteCtx, WriteResult } from './write-types';

/**
 * The write pipeline (validate, authorize, check If-Match, stamp meta, skip no-ops, index,
 * commit) and the policy-checked reads of the FHIR interactions, over the storage repository.
 */
export class ResourceStore {
  constructor(private readonly deps: StoreDeps) {}

  /** The storage face every interaction reads and commits through. */
  get repository(): ResourceRepository {
    return this.deps.repository;
  }

  now(): Date {
    return this.deps.clock();
  }

  newId(): string {
    return this.deps.newId();
  }

  /** Current documents matching a strict query (conditional interactions and references). */
  findMatches(type: string, query: string, policy: AccessPolicy, limit: number): Promise<CurrentDoc[]> {
    return this.deps.matcher.findMatches(type, query, policy, limit);
  }

  /**
   * Server records (the audit trail): server-side writes under fresh ids, committed as one
   * append-only batch through the repository.
   */
  async appendTrail(type: string, resources: readonly Resource[]): Promise<void> {
    const now = this.deps.clock();
    const ctx: WriteCtx = { principal: anonymousPrincipal, internal: true };
    const writes = await Promise.all(resources.map((r) => this.prepare(type, this.deps.newId(), r, null, 'POST', ctx, now)));
    await this.commit(writes, { mode: 'trail' });
  }

  /** Commits prepared versions (see ResourceRepository.commit). */
  commit(writes: readonly PreparedWrite[], opts?: CommitOptions): Promise<void> {
    return this.deps.repository.commit(writes, opts);
  }

  // ---------------------------------------------------------------- reads

  /** The current version, as the caller may see it: 404 when absent or out of reach, 410 when deleted. */
  async read(type: string, id: string, policy: AccessPolicy): Promise<CurrentDoc> {
    const doc = await this.deps.repository.read(type, id);
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
    const doc = await this.deps.repository.vread(type, id, vid);
    const visible = doc && (doc.res ? policy.canRead(doc.res, doc.comp) : await this.canSeeDeleted(type, id, vid, policy));
    if (!doc || !visible) {
      throw Errors.notFound(`Version ${vid} of ${type}/${id} is not known`, 'MSG_NO_EXIST', [type]);
    }
    if (doc.deleted) throw Errors.gone(`Version ${vid} of ${type}/${id} is a deletion`, 'MSG_DELETED_ID', [type]);
    return doc;
  }

  /** A deletion is visible to whoever could read the version it deleted. */
  async canSeeDeleted(type: string, id: string, vid: number, policy: AccessPolicy): Promise<boolean> {
    const prev = vid > 1 ? await this.deps.repository.vread(type, id, vid - 1) : null;
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
    const texts = decimalsOf(incoming); // before validation and hooks, which may copy the body
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
    const dec = attachDecimals(body, texts);

    // An update identical to the current content (decimal spellings included) makes no new version.
    if (previous && !current?.deleted && jsonEqual(stripServerMeta(previous), body) && sameDecimals(current?.dec, dec)) {
      return { type, id, method, expectedVid, current, doc: current as CurrentDoc, noop: true };
    }

    const stamped = {
      ...body,
      meta: { ...meta, versionId: String(vid), lastUpdated: now.toISOString() },
    } as Resource;
    // Key order: resourceType, id, meta first, as readers expect.
    const { resourceType, id: _id, meta: m, ...rest } = stamped as Resource & Record<string, unknown>;
    const ordered = { resourceType, id: _id, meta: m, ...rest } as Resource;
    attachDecimals(ordered, dec);
    const { idx, comp } = this.deps.indexer.index(ordered);
    if (!ctx.principal.policy.canWrite(ordered, comp)) {
      throw Errors.forbidden(`Your access does not allow writing this ${type}`, 'MSG_FORBIDDEN', [type]);
    }
    if (previous && current && !ctx.principal.policy.canWrite(previous, current.comp)) {
      throw Errors.forbidden(`Your access does not allow changing ${type}/${id}`, 'MSG_FORBIDDEN', [type]);
    }
    const doc: CurrentDoc = { _id: id, res: ordered, vid, ts: now, deleted: false, idx, comp };
    if (dec) doc.dec = dec;
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

  // ---------------------------------------------------------------- interactions

  async create(type: string, body: unknown, ctx: WriteCtx, ifNoneExist?: string): Promise<WriteResult> {
    if (ifNoneExist !== undefined) return this.conditionalCreate(type, body, ctx, ifNoneExist);
    const now = this.deps.clock();
    const w = await this.prepare(type, this.deps.newId(), body, null, 'POST', ctx, now);
    await this.commit([w]);
    return resultOf(w, 201);
  }

  /**
   * Update (PUT). Without If-Match, a concurrent writer makes us re-read and try again (last
   * writer wins, as the spec allows); with If-Match the version must match exactly.
   */
  async update(type: string, id: string, body: unknown, ctx: WriteCtx, ifMatch?: number): Promise<WriteResult> {
    for (let attempt = 0; ; attempt++) {
      const current = await this.deps.repository.read(type, id);
      if (current && !current.deleted && !ctx.principal.policy.canRead(current.res, current.comp)) {
        throw Errors.forbidden(`Your access does not allow changing ${type}/${id}`, 'MSG_FORBIDDEN', [type]);
      }
      checkIfMatch(type, id, current, ifMatch);
      const w = await this.prepare(type, id, body, current, 'PUT', ctx, this.deps.clock());
      if (w.noop) return resultOf(w, 200);
      try {
        await this.commit([w]);
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
      await this.commit([w]);
    } catch (e) {
      if (e instanceof FhirError && e.status === 409) {
        throw Errors.preconditionFailed(`${type}/${id} changed while it was being patched; try again`, 'MSG_VERSION_AWARE_CONFLICT');
      }
      throw e;
    }
    return resultOf(w, 200);
  }

  /**
   * Delete: idempotent; deleting something absent or already deleted answers 204 as well.
   * Without If-Match, a concurrent writer (e.g. the server activating a Subscription) makes us
   * re-read and delete what is there now, as update does.
   */
  async delete(type: string, id: string, ctx: WriteCtx, ifMatch?: number): Promise<WriteResult | undefined> {
    requireWritableType(type);
    for (let attempt = 0; ; attempt++) {
      const current = await this.deps.repository.read(type, id);
      if (!current || !ctx.principal.policy.canRead(current.res, current.comp)) {
        if (ifMatch !== undefined) throw Errors.notFound(`${type}/${id} is not known`, 'MSG_NO_EXIST', [type]);
        return undefined;
      }
      checkIfMatch(type, id, current, ifMatch);
      if (current.deleted) return undefined;
      const w = this.prepareDelete(type, current, ctx, this.deps.clock());
      try {
        await this.commit([w]);
      } catch (e) {
        if (e instanceof FhirError && e.status === 409 && ifMatch === undefined && attempt < 3) continue;
        throw e;
      }
      return resultOf(w, 204);
    }
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
    return this.deps.repository.withLock(`create:${type}?${normaliseQuery(query)}`, async () => {
      const again = await this.matchOne(type, query, ctx, 'If-None-Exist');
      if (again) return existingResult(type, again);
      const w = await this.prepare(type, this.deps.newId(), body, null, 'POST', ctx, this.deps.clock());
      await this.commit([w]);
      return resultOf(w, 201);
    });
  }

  async conditionalUpdate(type: string, query: string, body: unknown, ctx: WriteCtx, ifMatch?: number): Promise<WriteResult> {
    requireWritableType(type);
    return this.deps.repository.withLock(`update:${type}?${normaliseQuery(query)}`, async () => {
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
      await this.commit([w]);
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

}
