import type { Db } from 'mongodb';
import type { Logger } from 'pino';
import type { AccessPolicy, Principal } from '../auth/types';
import { Errors } from '../errors';
import type { StoredPrincipal } from '../subscriptions/collections';
import { JobStore } from './jobs';
import { parseKickoff } from './kickoff';
import type { FilterPort } from './source';
import { ERROR_FILE, type ExportJobDoc, type ExportLevel } from './types';
import { ExportWorker, outcomeLine } from './worker';

export interface BulkDeps {
  db: Db;
  baseUrl: string;
  served: readonly string[];
  filters: FilterPort;
  policyFor: (p: StoredPrincipal) => AccessPolicy;
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
  async kickoff(a: { level: ExportLevel; query: URLSearchParams; prefer?: string; principal: Principal; groupId?: string; url: string }): Promise<string> {
    if (a.level === 'group') {
      const g = await this.d.db.collection('Group').findOne({ _id: a.groupId as never });
      if (!g || g.deleted || !a.principal.policy.canRead(g.res, g.comp ?? [])) throw Errors.notFound(`Group/${a.groupId} is not known`, 'MSG_NO_EXIST');
    }
    const { spec, denied } = parseKickoff({
      level: a.level,
      query: a.query,
      prefer: a.prefer,
      served: this.d.served,
      principal: a.principal,
      groupId: a.groupId,
      checkFilter: (t, q) => void this.d.filters.compileCriteria(t, q),
    });
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
      gen: 0,
      heartbeat: new Date(0),
      typeIndex: 0,
      files: [],
      errors: denied.map((t) => outcomeLine(`Your access does not permit reading ${t}; it was left out of the export`, 'forbidden')),
      progress: 'queued',
    };
    await this.jobs.create(job);
    this.worker.nudge();
    return id;
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
