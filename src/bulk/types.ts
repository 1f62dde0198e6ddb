import type { StoredPrincipal } from '../subscriptions/collections';

/** Which kind of export was asked for (Bulk Data IG: system, all patients, one Group). */
export type ExportLevel = 'system' | 'patient' | 'group';

/** What a kick-off asked for, checked: enough to run the job again after a restart. */
export interface ExportSpec {
  level: ExportLevel;
  /** Types to export, in the order the files are written. */
  types: string[];
  since?: Date;
  /** `_typeFilter` queries by type (OR within one type). */
  typeFilters: Record<string, string[]>;
  /** Group/[id]/$export: the Group's id (its members are read when the job starts). */
  groupId?: string;
}

/** One output file of a job, as the manifest lists it. */
export interface ExportFile {
  /** `<n>` in the file URL; files are named `<n>.ndjson`. */
  n: number;
  type: string;
  count: number;
  /** Chunks written so far (their `seq` runs 0..chunks-1). */
  chunks: number;
}

export type JobState = 'queued' | 'running' | 'complete' | 'failed';

/**
 * One export job (collection `bulk_jobs`). Written by the kick-off, then only by the instance
 * holding its newest lease (see jobs.ts). Progress is kept per finished type: a job resumed after
 * a crash restarts the type it was in (its chunks removed first) and keeps the finished ones.
 */
export interface ExportJobDoc {
  _id: string;
  state: JobState;
  spec: ExportSpec;
  /** The kick-off URL, for the manifest's `request`. */
  request: string;
  /** Who asked: files and status are served to the same client only; the policy is rebuilt from this. */
  principal: StoredPrincipal;
  /** The time the export started (manifest `transactionTime`). */
  transactionTime: Date;
  createdAt: Date;
  /** Lease generation of the current owner (0: never claimed). */
  gen: number;
  heartbeat: Date;
  /** Index into spec.types of the type being exported. */
  typeIndex: number;
  files: ExportFile[];
  /** OperationOutcomes for the error file (kept small: one per problem, not per resource). */
  errors: string[];
  progress: string;
  completedAt?: Date;
  expiresAt?: Date;
  failure?: string;
}

/** One piece of an output file (collection `bulk_chunks`), `_id` = `<job>/<file n>/<seq>`. */
export interface ChunkDoc {
  _id: string;
  job: string;
  file: number;
  seq: number;
  /** NDJSON lines, each ending with a newline. */
  data: string;
  lines: number;
  /** Patients whose compartment the lines belong to (erasure finds the chunks to rewrite by this). */
  patients: string[];
}

/** A lease link: `<job>#<gen>`; inserting it under the unique `_id` is the claim. */
export interface JobLeaseDoc {
  _id: string;
  job: string;
  owner: string;
  at: Date;
}

export const JOBS = 'bulk_jobs';
export const CHUNKS = 'bulk_chunks';
export const JOB_LEASES = 'bulk_leases';

/** The error file of a job is numbered after every output file. */
export const ERROR_FILE = 'errors';
