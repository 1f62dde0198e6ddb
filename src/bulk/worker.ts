import type { OperationOutcome } from 'fhir/r4';
import type { Db } from 'mongodb';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { AccessPolicy } from '../auth/types';
import { stringifyJson } from '../json';
import { shape } from '../search/shape';
import { isDuplicateKey, type ResourceRepository } from '../storage';
import type { HeldLease } from '../storage/lease-chain';
import { chunkId, JobLeases, JobStore } from './jobs';
import { exportRows, groupMembers, type FilterPort } from './source';
import type { ExportFile, ExportJobDoc, ExportSpec, JobPrincipal } from './types';

export interface WorkerDeps {
  db: Db;
  repository: Pick<ResourceRepository, 'read'>;
  jobs: JobStore;
  filters: FilterPort;
  policyFor: (p: JobPrincipal) => AccessPolicy;
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

/** Thrown inside a run when this instance no longer holds the job (cancelled or taken over). */
class LostJob extends Error {}

export function outcomeLine(text: string, code: OperationOutcome['issue'][number]['code'] = 'processing'): string {
  const o: OperationOutcome = { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics: text }] };
  return JSON.stringify(o);
}

/** The `_elements` list for one type: its own names and those given without a type; none means whole resources. */
export function elementsFor(spec: ExportSpec, type: string): string[] | undefined {
  if (!spec.elements) return undefined;
  const names = [...(spec.elements['*'] ?? []), ...(spec.elements[type] ?? [])];
  return names.length > 0 ? names : undefined;
}

/** The lease a run works under; replaced on every renewal. */
interface Hold {
  lease: HeldLease;
}

/**
 * Runs export jobs in the background, one at a time per instance. Any instance may run any job:
 * jobs are claimed through their lease chains (jobs.ts), progress is written after every chunk,
 * and a job whose holder stopped renewing is taken over and resumed at the type it was in.
 */
export class ExportWorker {
  private readonly leases: JobLeases;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = true;
  private chunksWritten = 0;

  constructor(private readonly d: WorkerDeps) {
    const now = () => d.clock().getTime();
    this.leases = new JobLeases(d.jobs, d.jobs.leaseChain(randomUUID(), d.leaseMs, now), d.leaseMs, now);
  }

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

  /** Sweeps expired jobs, then runs every claimable job, oldest first. */
  async tick(): Promise<void> {
    await this.d.jobs.sweep(this.d.clock());
    for (;;) {
      const open = (await this.d.jobs.unfinished()).sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());
      let ran = false;
      for (const job of open) {
        if (this.stopped) return;
        const lease = await this.leases.claim(job);
        if (!lease) continue;
        await this.run(job._id, { lease });
        ran = true;
        break; // new jobs may have arrived meanwhile: look again from the oldest
      }
      if (!ran) return;
    }
  }

  private async run(jobId: string, hold: Hold): Promise<void> {
    const job = await this.d.jobs.get(jobId);
    if (!job) return;
    try {
      await this.export(job, hold);
      await this.leases.release(hold.lease);
    } catch (e) {
      if (e instanceof LostJob) return;
      // Our own failure (the database went away...): the job fails cleanly rather than hanging.
      this.d.logger.error({ err: e, job: jobId }, 'bulk export failed');
      if (await this.leases.holds(hold.lease).catch(() => false)) {
        await this.fail(job, 'The export failed on the server; start a new one');
        await this.leases.release(hold.lease);
      }
    }
  }

  private async fail(job: ExportJobDoc, why: string): Promise<void> {
    const now = this.d.clock();
    await this.d.jobs.checkpoint(job._id, { state: 'failed', failure: why, completedAt: now, expiresAt: new Date(now.getTime() + this.d.ttlMs) });
  }

  /** The patients a patient- or Group-level job is restricted to (undefined: every patient). */
  private async patientScope(job: ExportJobDoc, policy: AccessPolicy): Promise<string[] | undefined | 'gone'> {
    const asked = job.spec.patients;
    if (job.spec.level !== 'group') return asked;
    const g = await this.d.repository.read('Group', job.spec.groupId!);
    if (!g || g.deleted || !policy.canRead(g.res, g.comp ?? [])) return 'gone';
    const members = groupMembers(g.res);
    // `patient` was checked against the members at kick-off; one who left since is left out.
    return asked ? members.filter((m) => asked.includes(m)) : members;
  }

  private async export(job: ExportJobDoc, hold: Hold): Promise<void> {
    const policy = this.d.policyFor(job.principal);
    const members = await this.patientScope(job, policy);
    if (members === 'gone') return this.fail(job, `Group/${job.spec.groupId} is not known`);
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
      await this.exportType(job, hold, file, files, policy, members);
      await this.save(job._id, hold, { typeIndex: i + 1, files, progress: `${i + 1} of ${job.spec.types.length} types done` });
    }
    const now = this.d.clock();
    await this.save(job._id, hold, { state: 'complete', completedAt: now, expiresAt: new Date(now.getTime() + this.d.ttlMs), progress: 'complete' });
    this.d.logger.info({ job: job._id, files: files.length }, 'bulk export complete');
  }

  private async exportType(job: ExportJobDoc, hold: Hold, file: ExportFile, files: ExportFile[], policy: AccessPolicy, members: string[] | undefined): Promise<void> {
    const elements = elementsFor(job.spec, file.type);
    let lines: string[] = [];
    let bytes = 0;
    let patients = new Set<string>();
    const flush = async () => {
      if (lines.length === 0) return;
      await this.fence(hold);
      try {
        await this.d.jobs.insertChunk({ _id: chunkId(job._id, file.n, file.chunks), job: job._id, file: file.n, seq: file.chunks, data: lines.join(''), lines: lines.length, patients: [...patients] });
      } catch (e) {
        if (isDuplicateKey(e)) throw new LostJob();
        throw e;
      }
      file.chunks++;
      file.count += lines.length;
      lines = [];
      bytes = 0;
      patients = new Set();
      await this.save(job._id, hold, { files, progress: `${file.type}: ${file.count} resources` });
      if (this.d.crashAfterChunks !== undefined && ++this.chunksWritten >= this.d.crashAfterChunks) process.kill(process.pid, 'SIGKILL');
    };
    for await (const row of exportRows(this.d.db, file.type, job.spec, policy, this.d.filters, members, () => this.renew(hold))) {
      const line = stringifyJson(elements ? shape(row.res, undefined, elements) : row.res) + '\n';
      lines.push(line);
      bytes += line.length;
      if (file.type === 'Patient' && row.res.id) patients.add(row.res.id);
      for (const c of row.comp) if (c.startsWith('Patient/')) patients.add(c.slice(8));
      if (lines.length >= this.d.chunkResources || bytes >= MAX_CHUNK_BYTES) await flush();
    }
    await flush();
  }

  /** Renews the lease when due (also during long stretches without a chunk: a filter that matches little). */
  private async renew(hold: Hold): Promise<void> {
    const kept = await this.leases.keep(hold.lease);
    if (!kept) throw new LostJob();
    hold.lease = kept;
  }

  /** Before each chunk: renewed if due, and still the newest link with time to spare. */
  private async fence(hold: Hold): Promise<void> {
    await this.renew(hold);
    if (!(await this.leases.holds(hold.lease))) throw new LostJob();
  }

  /** Writes progress; a job deleted meanwhile was cancelled: clean up what it wrote. */
  private async save(jobId: string, hold: Hold, set: Partial<ExportJobDoc>): Promise<void> {
    await this.fence(hold);
    if (!(await this.d.jobs.checkpoint(jobId, set))) {
      await this.d.jobs.remove(jobId);
      throw new LostJob();
    }
  }
}
