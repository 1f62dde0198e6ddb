import type { HeldLease, LeaseChain } from '../storage/lease-chain';
import { BulkState, jobLeaseName, type ExportFile, type ExportJobDoc } from '../storage/state/bulk';

export { chunkId } from '../storage/state/bulk';

/**
 * Export jobs and their output chunks, in the database (so any instance can answer a poll or
 * serve a file, and a restart loses nothing). The stored state is src/storage/state/bulk.ts.
 */
export class JobStore extends BulkState {
  /** Removes jobs whose files expired (and jobs that failed long ago). */
  async sweep(now: Date): Promise<number> {
    const expired = await this.expired(now);
    for (const id of expired) await this.remove(id);
    return expired.length;
  }

  /** The chunks of one file in order, read one at a time by key (bounded memory). */
  async *readFile(jobId: string, file: ExportFile): AsyncGenerator<string> {
    for (let seq = 0; seq < file.chunks; seq++) {
      const data = await this.chunkData(jobId, file.n, seq);
      if (data === undefined) return;
      yield data;
    }
  }
}

/**
 * Who runs which job: one lease chain per job (`bulk-job:<id>`, src/storage/lease-chain.ts), so
 * exactly one instance wins each claim, renewal and takeover, on MongoDB and FerretDB alike (each
 * is a unique insert). The holder renews as it goes and checks the fence before each chunk; a
 * job whose holder stopped renewing (crashed, stopped) is claimable once its lease expired.
 * Chunk ids are deterministic, so even a paused former holder collides rather than writing twice.
 */
export class JobLeases {
  constructor(
    private readonly store: JobStore,
    private readonly chain: LeaseChain,
    private readonly ttlMs: number,
    private readonly now: () => number,
  ) {}

  /** Takes a queued job, or one whose holder's lease expired; marks it running. */
  async claim(job: ExportJobDoc): Promise<HeldLease | undefined> {
    const lease = await this.chain.acquire(jobLeaseName(job._id));
    if (!lease) return undefined;
    // The list of open jobs was read before the lease: its holder may have finished (or the client
    // cancelled) and released since. Read again under the lease, so a finished job never goes back
    // to running.
    const fresh = await this.store.get(job._id);
    if (fresh && (fresh.state === 'queued' || fresh.state === 'running') && (await this.store.checkpoint(job._id, { state: 'running' }))) return lease;
    await this.chain.release(lease);
    return undefined;
  }

  /**
   * The lease to keep working under: renewed once a third of it has passed, undefined when it was
   * lost (another instance took over, or it lapsed while this one was paused).
   */
  async keep(lease: HeldLease): Promise<HeldLease | undefined> {
    if (lease.until - this.now() > (this.ttlMs * 2) / 3) return lease;
    return this.chain.renew(lease);
  }

  /** The fence before a side effect: still the newest link, with a third of the lease left. */
  holds(lease: HeldLease): Promise<boolean> {
    return this.chain.stillHeld(lease, this.ttlMs / 3);
  }

  release(lease: HeldLease): Promise<void> {
    return this.chain.release(lease);
  }
}
