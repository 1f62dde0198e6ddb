import type { Collection, Db } from 'mongodb';
import { LeaseChain, type LeaseLinkDoc, type LeaseTopDoc } from '../lease-chain';

/**
 * Bulk Data export's own state behind the storage wall: its collections, stored shapes and the
 * few reads and writes the export module needs. Nothing outside src/storage names these
 * collections or builds their filters.
 */
export const BULK_COLLECTIONS = {
  jobs: 'bulk_jobs',
  chunks: 'bulk_chunks',
  /** The job leases: LeaseChain links and their newest-link hints (apart from the outbox's). */
  leaseLinks: 'bulk_lease_links',
  leaseTops: 'bulk_lease_tops',
} as const;

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
  /** `_elements`: top-level elements to keep, by type (`*` for those named without a type). */
  elements?: Record<string, string[]>;
  /** `patient` (POST kick-off): the ids of the patients whose compartments are exported. */
  patients?: string[];
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

/** Who started a job: files and status are served to the same client only; the policy is rebuilt from this. */
export interface JobPrincipal {
  clientId: string;
  scopes: string[];
  patient?: string;
}

/**
 * One export job. Written by the kick-off, then only by the holder of its lease (the lease
 * chain `bulk-job:<id>`, see src/bulk/jobs.ts). Progress is kept per finished type: a job
 * resumed after a crash restarts the type it was in (its chunks removed first) and keeps the
 * finished ones.
 */
export interface ExportJobDoc {
  _id: string;
  state: JobState;
  spec: ExportSpec;
  /** The kick-off URL, for the manifest's `request` (without parameters for a POST). */
  request: string;
  principal: JobPrincipal;
  /** The time the export started (manifest `transactionTime`). */
  transactionTime: Date;
  createdAt: Date;
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

/** One piece of an output file, `_id` = `<job>/<file n>/<seq>`. */
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

export function chunkId(jobId: string, file: number, seq: number): string {
  return `${jobId}/${file}/${seq}`;
}

/** The lease chain of one job. */
export function jobLeaseName(jobId: string): string {
  return `bulk-job:${jobId}`;
}

/**
 * The export module's stored state. Jobs and chunks are few reads and writes by `_id` (chunks are
 * read back one at a time by key, so a download holds one chunk in memory).
 */
export class BulkState {
  private readonly jobs: Collection<ExportJobDoc>;
  /**
   * The chunks. Public only for src/erasure's scrub, which still walks them itself; it moves to
   * `allChunks` / `replaceChunk` below.
   */
  readonly chunks: Collection<ChunkDoc>;
  private readonly links: Collection<LeaseLinkDoc>;
  private readonly tops: Collection<LeaseTopDoc>;

  constructor(db: Db) {
    this.jobs = db.collection<ExportJobDoc>(BULK_COLLECTIONS.jobs);
    this.chunks = db.collection<ChunkDoc>(BULK_COLLECTIONS.chunks);
    this.links = db.collection<LeaseLinkDoc>(BULK_COLLECTIONS.leaseLinks);
    this.tops = db.collection<LeaseTopDoc>(BULK_COLLECTIONS.leaseTops);
  }

  /** A lease chain over the job leases, for one owner (an instance's worker). */
  leaseChain(owner: string, ttlMs: number, now: () => number): LeaseChain {
    return new LeaseChain(this.links, this.tops, owner, ttlMs, now);
  }

  async ensureIndexes(): Promise<void> {
    await this.chunks.createIndex({ job: 1, file: 1, seq: 1 });
  }

  async create(job: ExportJobDoc): Promise<void> {
    await this.jobs.insertOne(job);
  }

  async get(id: string): Promise<ExportJobDoc | null> {
    return this.jobs.findOne({ _id: id });
  }

  /** Jobs not finished (the collection holds few documents: finished ones expire). */
  async unfinished(): Promise<ExportJobDoc[]> {
    return this.jobs.find({ state: { $in: ['queued', 'running'] } }).toArray();
  }

  /** Records progress. False when the job is gone (cancelled or erased). */
  async checkpoint(jobId: string, set: Partial<Omit<ExportJobDoc, '_id'>>): Promise<boolean> {
    const r = await this.jobs.updateOne({ _id: jobId }, { $set: set });
    return r.matchedCount === 1;
  }

  /** Inserts a chunk under its deterministic `_id` (a second writer of the same chunk collides). */
  async insertChunk(c: ChunkDoc): Promise<void> {
    await this.chunks.insertOne(c);
  }

  /** The NDJSON text of one chunk, or undefined when it is not there. */
  async chunkData(jobId: string, file: number, seq: number): Promise<string | undefined> {
    const c = await this.chunks.findOne({ _id: chunkId(jobId, file, seq) }, { projection: { data: 1 } });
    return c?.data;
  }

  /** Removes the chunks of one file (a type being restarted after a takeover). */
  async dropFile(jobId: string, file: ExportFile): Promise<void> {
    for (let seq = 0; seq < file.chunks + 1; seq++) await this.chunks.deleteOne({ _id: chunkId(jobId, file.n, seq) });
    await this.chunks.deleteMany({ job: jobId, file: file.n });
  }

  /** Deletes a job with everything it wrote and its lease chain (cancel, expiry, erasure). */
  async remove(jobId: string): Promise<boolean> {
    const r = await this.jobs.deleteOne({ _id: jobId });
    await this.chunks.deleteMany({ job: jobId });
    const name = jobLeaseName(jobId);
    await this.links.deleteMany({ name });
    await this.tops.deleteOne({ _id: name });
    return r.deletedCount === 1;
  }

  /** Ids of the jobs whose files expired. */
  async expired(now: Date): Promise<string[]> {
    const docs = await this.jobs.find({ expiresAt: { $lt: now } }, { projection: { _id: 1 } }).toArray();
    return docs.map((d) => d._id);
  }

  /** Every chunk, one at a time (erasure's scrub). */
  allChunks(): AsyncIterable<ChunkDoc> {
    return this.chunks.find({});
  }

  /** Rewrites one chunk in place (erasure's scrub). */
  async replaceChunk(c: ChunkDoc): Promise<void> {
    const { _id, ...rest } = c;
    await this.chunks.replaceOne({ _id }, rest);
  }
}
