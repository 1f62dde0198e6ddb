import type { Db } from 'mongodb';
import type { Logger } from 'pino';
import type { AccessPolicy, Principal } from '../auth/types';
import { Errors } from '../errors';
import type { ResourceRepository } from '../storage';
import { JobStore } from './jobs';
import { parseKickoff } from './kickoff';
import type { KickoffParams } from './parameters';
import { groupMembers, type FilterPort } from './source';
import { ERROR_FILE, type ExportJobDoc, type ExportLevel, type JobPrincipal } from './types';
import { ExportWorker, outcomeLine } from './worker';

export interface BulkDeps {
  db: Db;
  /** Groups are read through the repository (the one read path for resources). */
  repository: Pick<ResourceRepository, 'read' | 'readMany'>;
  baseUrl: string;
  served: readonly string[];
  filters: FilterPort;
  policyFor: (p: JobPrincipal) => AccessPolicy;
  logger: Logger;
  clock: () => Date;
  newId: () => string;
  ttlSeconds: number;
  leaseMs: number;
  chunkResources?: number;
  crashAfterChunks?: number;
}

/** The manifest of a finished export (Bulk Data IG STU 2, "Complete Status"). */
export interface Manifest {
  transactionTime: string;
  request: string;
  requiresAccessToken: true;
  output: { type: string; url: string; count: number }[];
  error: { type: 'OperationOutcome'; url: string }[];
}

export type JobStatus =
  | { state: 'in-progress'; progress: string }
  | { state: 'complete'; manifest: Manifest; expiresAt: Date }
  | { state: 'failed'; reason: string };

/** Bulk Data export: kick-off, status, cancellation and file reads over the job store and worker. */
export class BulkExport {
  readonly jobs: JobStore;
  readonly worker: ExportWorker;

  constructor(private readonly d: BulkDeps) {
    this.jobs = new JobStore(d.db);
    this.worker = new ExportWorker({
      db: d.db,
      repository: d.repository,
      jobs: this.jobs,
      filters: d.filters,
      policyFor: d.policyFor,
      logger: d.logger,
      clock: d.clock,
      leaseMs: d.leaseMs,
      ttlMs: d.ttlSeconds * 1000,
      chunkResources: d.chunkResources ?? 1000,
      crashAfterChunks: d.crashAfterChunks,
    });
  }

  async start(): Promise<void> {
    await this.jobs.ensureIndexes();
    this.worker.start();
  }

  stop(): Promise<void> {
    return this.worker.stop();
  }

  statusUrl(id: string): string {
    return `${this.d.baseUrl}/$export-status/${id}`;
  }

  /** Checks and queues a kick-off; returns the new job's id. */
  async kickoff(a: { level: ExportLevel; params: KickoffParams; prefer?: string; principal: Principal; groupId?: string; url: string }): Promise<string> {
    let members: string[] | undefined;
    if (a.level === 'group') {
      const g = await this.d.repository.read('Group', a.groupId!);
      if (!g || g.deleted || !a.principal.policy.canRead(g.res, g.comp ?? [])) throw Errors.notFound(`Group/${a.groupId} is not known`, 'MSG_NO_EXIST');
      members = groupMembers(g.res);
    }
    const { spec, denied } = parseKickoff({
      level: a.level,
      params: a.params,
      prefer: a.prefer,
      served: this.d.served,
      principal: a.principal,
      groupId: a.groupId,
      baseUrl: this.d.baseUrl,
      checkFilter: (t, q) => void this.d.filters.compileCriteria(t, q),
    });
    if (spec.patients) await this.checkPatients(spec.patients, a.principal, members);
    const now = this.d.clock();
    const id = this.d.newId();
    const job: ExportJobDoc = {
      _id: id,
      state: 'queued',
      spec: { ...spec, types: spec.types.filter((t) => !denied.includes(t)) },
      request: a.url,
      principal: { clientId: a.principal.clientId, scopes: a.principal.scopes, ...(a.principal.patient ? { patient: a.principal.patient } : {}) },
      transactionTime: now,
      createdAt: now,
      typeIndex: 0,
      files: [],
      errors: denied.map((t) => outcomeLine(`Your access does not permit reading ${t}; it was left out of the export`, 'forbidden')),
      progress: 'queued',
    };
    await this.jobs.create(job);
    this.worker.nudge();
    return id;
  }

  /**
   * `patient`: every one must be a Patient this token may read (and, for a Group, an active
   * member). The IG asks for an error naming them rather than an export that quietly leaves them
   * out; unknown and unreadable ones get the same answer, so the refusal tells nothing about
   * patients the token may not see.
   */
  private async checkPatients(ids: string[], principal: Principal, members: string[] | undefined): Promise<void> {
    const found = await this.d.repository.readMany('Patient', ids);
    const missing: string[] = [];
    for (const id of ids) {
      const p = found.get(id);
      const readable = p && !p.deleted && principal.policy.canRead(p.res, p.comp ?? [], 'search');
      if (!readable || (members && !members.includes(id))) missing.push(`Patient/${id}`);
    }
    if (missing.length === 0) return;
    const where = members ? 'members of this Group that your access permits reading' : 'patients your access permits reading';
    throw Errors.badRequest(`patient names ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}, which are not ${where}`, 'MSG_BULK_PATIENT', ['Parameters.parameter']);
  }

  /** A job as its own client sees it; anyone else gets the same 404 as for a job that never was. */
  private async ownJob(id: string, principal: Principal): Promise<ExportJobDoc> {
    const job = /^[A-Za-z0-9-]{1,64}$/.test(id) ? await this.jobs.get(id) : null;
    const expired = job?.expiresAt && job.expiresAt.getTime() <= this.d.clock().getTime();
    if (!job || expired || job.principal.clientId !== principal.clientId) {
      throw Errors.notFound(`No export job ${id} (finished jobs expire after ${this.d.ttlSeconds} s)`, 'MSG_NO_EXIST');
    }
    return job;
  }

  async status(id: string, principal: Principal): Promise<JobStatus> {
    const job = await this.ownJob(id, principal);
    if (job.state === 'failed') return { state: 'failed', reason: job.failure ?? 'The export failed' };
    if (job.state !== 'complete') return { state: 'in-progress', progress: job.progress };
    const fileUrl = (name: string | number) => `${this.d.baseUrl}/$export-file/${job._id}/${name}.ndjson`;
    return {
      state: 'complete',
      expiresAt: job.expiresAt!,
      manifest: {
        transactionTime: job.transactionTime.toISOString(),
        request: job.request,
        requiresAccessToken: true,
        output: job.files.filter((f) => f.count > 0).map((f) => ({ type: f.type, url: fileUrl(f.n), count: f.count })),
        error: job.errors.length ? [{ type: 'OperationOutcome', url: fileUrl(ERROR_FILE) }] : [],
      },
    };
  }

  /** DELETE on the status URL: the job and its files go; a later poll is 404. */
  async cancel(id: string, principal: Principal): Promise<void> {
    await this.ownJob(id, principal);
    await this.jobs.remove(id);
  }

  /** The NDJSON of one output file, chunk by chunk. */
  async file(id: string, name: string, principal: Principal): Promise<AsyncGenerator<string>> {
    const job = await this.ownJob(id, principal);
    if (job.state !== 'complete') throw Errors.notFound(`Export ${id} has not finished`, 'MSG_NO_EXIST');
    if (name === ERROR_FILE && job.errors.length) return (async function* () {
      yield job.errors.map((l) => l + '\n').join('');
    })();
    const f = /^\d{1,4}$/.test(name) ? job.files.find((x) => x.n === Number(name) && x.count > 0) : undefined;
    if (!f) throw Errors.notFound(`Export ${id} has no file ${name}.ndjson`, 'MSG_NO_EXIST');
    return this.jobs.readFile(id, f);
  }
}
