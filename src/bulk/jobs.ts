import type { Collection, Db } from 'mongodb';
import { isDuplicateKey } from '../storage';
import { CHUNKS, JOB_LEASES, JOBS, type ChunkDoc, type ExportFile, type ExportJobDoc, type JobLeaseDoc } from './types';

/**
 * Export jobs, their output chunks and their leases, in the database (so any instance can answer
 * a poll or serve a file, and a restart loses nothing).
 *
 * Ownership: a job is claimed by inserting the lease link `<job>#<gen+1>`; the unique `_id` lets
 * exactly one instance win (compare-and-set updates are not atomic on FerretDB 1.24, inserts
 * under a unique key are). The winner then writes `gen` and renews `heartbeat`; a job whose
 * heartbeat is older than the lease length is claimable again. An owner checks before each chunk
 * that its generation is still the job's, and chunk ids are deterministic, so a slow former owner
 * collides rather than writing twice.
 */
export class JobStore {
  readonly jobs: Collection<ExportJobDoc>;
  readonly chunks: Collection<ChunkDoc>;
  private readonly leases: Collection<JobLeaseDoc>;

  constructor(db: Db) {
    this.jobs = db.collection<ExportJobDoc>(JOBS);
    this.chunks = db.collection<ChunkDoc>(CHUNKS);
    this.leases = db.collection<JobLeaseDoc>(JOB_LEASES);
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

  /** Tries to become the owner of generation `gen + 1` of a job. */
  async claim(job: ExportJobDoc, owner: string, now: Date): Promise<number | undefined> {
    const gen = job.gen + 1;
    try {
      await this.leases.insertOne({ _id: `${job._id}#${gen}`, job: job._id, owner, at: now });
    } catch (e) {
      if (isDuplicateKey(e)) return undefined;
      throw e;
    }
    const r = await this.jobs.updateOne({ _id: job._id }, { $set: { gen, heartbeat: now, state: 'running' } });
    return r.matchedCount === 1 ? gen : undefined;
  }

  /** Whether `gen` still owns the job (it exists, and no later lease link was inserted). */
  async owns(jobId: string, gen: number): Promise<boolean> {
    const [job, next] = await Promise.all([
      this.jobs.findOne({ _id: jobId }, { projection: { gen: 1, state: 1 } }),
      this.leases.findOne({ _id: `${jobId}#${gen + 1}` }, { projection: { _id: 1 } }),
    ]);
    return Boolean(job && job.gen === gen && job.state === 'running' && !next);
  }

  /** Records progress (and renews the heartbeat). False when the job is gone (cancelled). */
  async checkpoint(jobId: string, set: Partial<ExportJobDoc>): Promise<boolean> {
    const r = await this.jobs.updateOne({ _id: jobId }, { $set: set });
    return r.matchedCount === 1;
  }

  async insertChunk(c: ChunkDoc): Promise<void> {
    await this.chunks.insertOne(c);
  }

  /** Removes the chunks of one file (a type being restarted after a takeover). */
  async dropFile(jobId: string, file: ExportFile): Promise<void> {
    for (let seq = 0; seq < file.chunks + 1; seq++) await this.chunks.deleteOne({ _id: chunkId(jobId, file.n, seq) });
    await this.chunks.deleteMany({ job: jobId, file: file.n });
  }

  /** Deletes a job with everything it wrote (cancel, expiry). */
  async remove(jobId: string): Promise<boolean> {
    const r = await this.jobs.deleteOne({ _id: jobId });
    await this.chunks.deleteMany({ job: jobId });
    await this.leases.deleteMany({ job: jobId });
    return r.deletedCount === 1;
  }

  /** Removes jobs whose files expired (and jobs that failed long ago). */
  async sweep(now: Date): Promise<number> {
    const expired = await this.jobs.find({ expiresAt: { $lt: now } }, { projection: { _id: 1 } }).toArray();
    for (const j of expired) await this.remove(j._id);
    return expired.length;
  }

  /** The chunks of one file in order, read one at a time by key (bounded memory). */
  async *readFile(jobId: string, file: ExportFile): AsyncGenerator<string> {
    for (let seq = 0; seq < file.chunks; seq++) {
      const c = await this.chunks.findOne({ _id: chunkId(jobId, file.n, seq) }, { projection: { data: 1 } });
      if (!c) return;
      yield c.data;
    }
  }
}

export function chunkId(jobId: string, file: number, seq: number): string {
  return `${jobId}/${file}/${seq}`;
}
