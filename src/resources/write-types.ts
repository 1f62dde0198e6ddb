import type { Resource } from 'fhir/r4';
import type { AccessPolicy, Principal } from '../auth/types';
import type { CurrentDoc, IndexEntries, PreparedWrite, ResourceRepository } from '../storage';

/** The write pipeline's types: what it needs, what a write carries and what it answers. */

/** What the store needs from the search engine. */
export interface Indexer {
  index(resource: Resource): { idx: IndexEntries; comp: string[] };
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
  repository: ResourceRepository;
  clock: () => Date;
  newId: () => string;
  indexer: Indexer;
  matcher: Matcher;
  validate: Validator;
  /** Owned by subscriptions (checks and derives Subscription content); not run for server-side writes. */
  beforeWrite?: BeforeWrite;
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
