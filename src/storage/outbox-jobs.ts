import { randomUUID } from 'node:crypto';
import type { Collections } from './collections';
import type { OutboxDoc } from './types';

/** Outbox `_id`s of jobs start with this (a history id starts with a resource type). */
export const JOB_PREFIX = 'job/';

export function isJob(intent: Pick<OutboxDoc, '_id'>): boolean {
  return intent._id.startsWith(JOB_PREFIX);
}

/** Runs a job's payload on the lease holder; its result (JSON) goes back to whoever asked. */
export type JobHandler = (payload: unknown) => Promise<unknown>;

export interface JobOutcome {
  /** False when no lease holder ran the job in time: it stays queued and runs later. */
  done: boolean;
  result?: unknown;
}

const POLL_MS = 25;

/**
 * Work that only the outbox lease holder may do, asked for by any process: erasure's rewrites of
 * shared search buckets, which on FerretDB lose appends when written beside the holder (every
 * update is a read-modify-write there). A job is an outbox intent, so it is durable, runs in the
 * outbox's order (after the search entries of every version before it are stored, since the
 * holder runs batches' finishers in order) and exactly once per holding of the lease; a job run
 * again after a crash must be idempotent (erasure is). Its result waits in `meta` for the asker.
 */
export class OutboxJobs {
  private readonly handlers = new Map<string, JobHandler>();

  constructor(
    private readonly cols: Collections,
    /** Wakes this process's outbox (which drains if it can take the lease: a CLI with no server running). */
    private readonly wake: () => Promise<void>,
  ) {}

  handle(kind: string, handler: JobHandler): void {
    this.handlers.set(kind, handler);
  }

  /** On the lease holder, in a batch's tail: runs the job and keeps its result for the asker. */
  async execute(intent: OutboxDoc): Promise<void> {
    const handler = intent.job && this.handlers.get(intent.job.kind);
    if (!handler) throw new Error(`no handler for outbox job ${intent.job?.kind ?? '(none)'}`);
    const result = await handler(intent.job!.payload);
    await this.cols.meta.replaceOne({ _id: intent._id }, { value: JSON.stringify(result ?? null) }, { upsert: true });
  }

  /** Queues a job and waits up to `timeoutMs` for a lease holder (this process or another) to run it. */
  async run(kind: string, payload: unknown, timeoutMs: number): Promise<JobOutcome> {
    const id = `${JOB_PREFIX}${randomUUID()}`;
    await this.cols.outbox.insertOne({ _id: id, at: new Date(), job: { kind, payload } });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.wake();
      if (!(await this.cols.outbox.findOne({ _id: id }, { projection: { _id: 1 } }))) break;
      if (Date.now() > deadline) return { done: false };
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    const stored = await this.cols.meta.findOne({ _id: id });
    await this.cols.meta.deleteOne({ _id: id });
    return { done: true, result: stored ? JSON.parse(stored.value) : undefined };
  }
}
