import type { Resource } from 'fhir/r4';
import type { DecimalText } from '../json';

/** Index values extracted from a resource at write time, by search parameter code (see src/search). */
export type IndexEntries = Record<string, unknown>;

/**
 * The current version of a resource, one collection per resource type (collection name = type).
 * FHIR JSON lives apart from our own fields so FHIR names never clash with ours.
 */
export interface CurrentDoc {
  _id: string;
  res: Resource;
  /** Sender's text of numbers JS would write differently (src/json/decimals.ts); absent when none. */
  dec?: DecimalText[];
  /** Version number, 1-based; equals Number(res.meta.versionId). */
  vid: number;
  /** Time of the last change (res.meta.lastUpdated). */
  ts: Date;
  /** True once deleted: the resource answers 410 until it is written again. */
  deleted: boolean;
  /** Search index values (src/search/indexer). Absent on deleted documents. */
  idx: IndexEntries;
  /** Patient compartments the resource belongs to, as "Patient/<id>". */
  comp: string[];
  /** Set when the resource is big: `_id` of its full form in `bodies`; `res` is then a lean copy (bodies.ts). */
  body?: string;
}

export type WriteMethod = 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/**
 * One version of one resource, in the shared `history` collection. Inserting it is the commit
 * point of every write: `_id` = "<type>/<id>/<vid>" makes racing writers collide. An outbox
 * intent with the same `_id` is written just before it (see outbox.ts), so post-commit work
 * (repairing the current document, events) is never lost to a crash.
 */
export interface HistoryDoc {
  _id: string;
  type: string;
  id: string;
  vid: number;
  ts: Date;
  deleted: boolean;
  method: WriteMethod;
  /** The resource as of this version (absent for deletions). */
  res?: Resource;
  /** As CurrentDoc.dec. */
  dec?: DecimalText[];
  comp: string[];
  /** As CurrentDoc.body. */
  body?: string;
  /**
   * Transaction journal id, when the version was written by a transaction Bundle. Such a
   * version is visible only once its journal has passed its commit point (or is gone).
   */
  tx?: string;
}

/** The journal of a transaction Bundle (see journal.ts). */
export interface JournalDoc {
  _id: string;
  state: 'pending' | 'committed';
  created: Date;
  /** type/id/vid of every version the transaction writes. */
  versions: { type: string; id: string; vid: number; expectedVid: number; body?: string }[];
}

/**
 * An outbox intent: written before the history insert of the version it names; or a job for the
 * lease holder (outbox-jobs.ts), `_id` JOB_PREFIX + a random id.
 */
export interface OutboxDoc {
  /** The history `_id` of the version (or the job's id). */
  _id: string;
  at: Date;
  tx?: string;
  job?: { kind: string; payload: unknown };
}

export function historyId(type: string, id: string, vid: number): string {
  return `${type}/${id}/${vid}`;
}

/** A version ready to be committed: validated, stamped and indexed (see src/resources/store.ts). */
export interface PreparedWrite {
  type: string;
  id: string;
  method: WriteMethod;
  /** The version the write was prepared on top of (0: the resource did not exist). */
  expectedVid: number;
  current: CurrentDoc | null;
  doc: CurrentDoc;
  /** Identical to the current content: nothing is written. */
  noop: boolean;
}
