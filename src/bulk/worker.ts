import type { OperationOutcome } from 'fhir/r4';
import type { Db } from 'mongodb';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { AccessPolicy } from '../auth/types';
import { isDuplicateKey } from '../storage';
import type { StoredPrincipal } from '../subscriptions/collections';
import { chunkId, JobStore } from './jobs';
import { exportRows, groupMembers, type FilterPort } from './source';
import type { ExportFile, ExportJobDoc } from './types';

export interface WorkerDeps {
  db: Db;
  jobs: JobStore;
  filters: FilterPort;
  policyFor: (p: StoredPrincipal) => AccessPolicy;
  logger: Logger;
  clock: () => Date;
  leaseMs: number;
  ttlMs: number;
  /** Resources per chunk (a chunk is the unit of progress and of memory). */
  chunkResources: number;
  pollMs?: number;
  /** Fault injection for the restart test: kill the process after this many chunks. */
  crashAfterChunks?: number;
}

const MAX_CHUNK_BYTES = 4 * 1024 * 1024;

/** Thrown inside a run when this instance no longer owns the job (cancelled or taken over). */
class LostJob extends Error {}

export function outcomeLine(text: string, code: OperationOutcome['issue'][number]['code'] = 'processing'): string {
  const o: OperationOutcome = { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics: text }] };
  return JSON.stringify(o);
}

/**
 * Runs export jobs in the background, one at a time per instance. Any instance may run any job:
 * jobs are claimed through lease links (jobs.ts), progress is written after every chunk, and a
 * job whose owner stopped renewing its heartbeat is taken over and resumed at the type it was in.
 */
export class ExportWorker {
  private readonly owner = randomUUID();
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = true;
  private chunksWritten = 0;

  constructor(private readonly d: WorkerDeps) {}

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** A job was queued: look now rather than at the next poll. */
  nudge(): void {
    if (!this.stopped && !this.running) this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.tick()
        .catch((e: unknown) => this.d.logger.error({ err: e }, 'bulk export worker failed; will retry'))
        .finally(() => {
          this.running = undefined;
          this.schedule(this.d.pollMs ?? 1000);
        });
    }, ms);
    this.timer.unref?.();
  }

  /** Sweeps expired jobs, then runs every claimable job. */
  async tick(): Promise<void> {
    await this.d.jobs.sweep(this.d.clock());
    for (;;) {
      if (this.stopped) return;
      const now = this.d.clock();
      const stale = now.getTime() - this.d.leaseMs;
      const open = await this.d.jobs.unfinished();
      const next = open
        .filter((j) => j.state === 'queued' || j.heartbeat.getTime() < stale)
        .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime())[0];
      if (!next) return;
      const gen = await this.d.jobs.claim(next, this.owner, now);
      if (gen === undefined) continue;
      await this.run(next._id, gen);
    }
  }

  private async run(jobId: string, gen: number): Promise<void> {
    const job = await this.d.jobs.get(jobId);
    if (!job) return;
    try {
      await this.export(job, gen);
    } catch (e) {
      if (e instanceof LostJob) return;
      // Our own failure (the database went away...): the job fails cleanly rather than hanging.
      this.d.logger.error({ err: e, job: jobId }, 'bulk export failed');
      if (await this.d.jobs.owns(jobId, gen)) await this.fail(job, 'The export failed on the server; start a new one');
    }
  }

  private async fail(job: ExportJobDoc, why: string): Promise<void> {
    const now = this.d.clock();
    await this.d.jobs.checkpoint(job._id, { state: 'failed', failure: why, completedAt: now, expiresAt: new Date(now.getTime() + this.d.ttlMs) });
  }

  private async export(job: ExportJobDoc, gen: number): Promise<void> {
    const policy = this.d.policyFor(job.principal);
    let members: string[] | undefined;
    if (job.spec.level === 'group') {
      const g = await this.d.db.collection('Group').findOne({ _id: job.spec.groupId as never });
      if (!g || g.deleted || !policy.canRead(g.res, g.comp ?? [])) return this.fail(job, `Group/${job.spec.groupId} is not known`);
      members = groupMembers(g.res);
    }
    const files = [...job.files];
    for (let i = job.typeIndex; i < job.spec.types.length; i++) {
      const type = job.spec.types[i];
      // A type interrupted by a crash or takeover starts again from its beginning.
      const old = files.findIndex((f) => f.n === i);
      if (old >= 0) {
        await this.d.jobs.dropFile(job._id, files[old]);
        files.splice(old, 1);
      }
      const file: ExportFile = { n: i, type, count: 0, chunks: 0 };
      files.push(file);
      await this.exportType(job, gen, file, files, policy, members);
      await this.save(job._id, { typeIndex: i + 1, files, progress: `${i + 1} of ${job.spec.types.length} types done` });
    }
    const now = this.d.clock();
    await this.save(job._id, { state: 'complete', completedAt: now, expiresAt: new Date(now.getTime() + this.d.ttlMs), progress: 'complete' });
    this.d.logger.info({ job: job._id, files: files.length }, 'bulk export complete');
  }

  private async exportType(
    job: ExportJobDoc,
    gen: number,
    file: ExportFile,
    files: ExportFile[],
    policy: AccessPolicy,
    members: string[] | undefined,
  ): Promise<void> {
    let lines: string[] = [];
    let bytes = 0;
    let patients = new Set<string>();
    const flush = async () => {
      if (lines.length === 0) return;
      if (!(await this.d.jobs.owns(job._id, gen))) throw new LostJob();
      try {
        await this.d.jobs.insertChunk({
          _id: chunkId(job._id, file.n, file.chunks),
          job: job._id,
          file: file.n,
          seq: file.chunks,
          data: lines.join(''),
          lines: lines.length,
          patients: [...patients],
        });
      } catch (e) {
        if (isDuplicateKey(e)) throw new LostJob();
        throw e;
      }
      file.chunks++;
      file.count += lines.length;
      lines = [];
      bytes = 0;
      patients = new Set();
      await this.save(job._id, { files, progress: `${file.type}: ${file.count} resources` });
      if (this.d.crashAfterChunks !== undefined && ++this.chunksWritten >= this.d.crashAfterChunks) process.kill(process.pid, 'SIGKILL');
    };
    for await (const row of exportRows(this.d.db, file.type, job.spec, policy, this.d.filters, members, () => this.beat(job._id))) {
      const line = JSON.stringify(row.res) + '\n';
      lines.push(line);
      bytes += line.length;
      if (file.type === 'Patient' && row.res.id) patients.add(row.res.id);
      for (const c of row.comp) if (c.startsWith('Patient/')) patients.add(c.slice(8));
      if (lines.length >= this.d.chunkResources || bytes >= MAX_CHUNK_BYTES) await flush();
    }
    await flush();
  }

  /** Writes progress (renewing the heartbeat); a job deleted meanwhile was cancelled: clean up. */
  private async save(jobId: string, set: Partial<ExportJobDoc>): Promise<void> {
    const ok = await this.d.jobs.checkpoint(jobId, { ...set, heartbeat: this.d.clock() });
    if (!ok) {
      await this.d.jobs.remove(jobId);
      throw new LostJob();
    }
    this.lastBeat = Date.now();
  }

  private lastBeat = 0;

  /** Renews the heartbeat during long stretches without a chunk (a filter that matches little). */
  private async beat(jobId: string): Promise<void> {
    if (Date.now() - this.lastBeat < this.d.leaseMs / 4) return;
    await this.save(jobId, {});
  }
}
