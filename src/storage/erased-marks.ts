import type { Collection, Document } from 'mongodb';
import { findByIds } from './lookup';

/**
 * How long a process trusts its copy of the erased-compartment marks after the read that made
 * it (monotonic clock, counted from before the read was sent). `StorageErasure.mark` waits this
 * long (plus MARK_MARGIN_MS) after its insert, so once it returns every process's copy was read
 * after the mark and holds it.
 */
export const MARKS_TRUSTED_MS = 1000;
/** Slack on top of the window for timers firing late and clocks of different hosts. */
export const MARK_MARGIN_MS = 250;

/**
 * The erased-compartment marks as this process knows them, so a commit does not pay a point
 * read per compartment (on the embedded engine a read is about one insert's cost, and every
 * single POST into a patient compartment made one).
 *
 * - A mark is permanent: once seen, it is known forever.
 * - "Not erased" is trusted for MARKS_TRUSTED_MS after the scan that said so (one read of the
 *   whole collection, which holds one small document per erased patient, shared by every
 *   writer of the process); after that the next writer rescans.
 *
 * Why that is enough: a writer consults the marks after its outbox intent is stored. A copy
 * that missed a mark was read before the mark's insert, and is trusted until at most
 * MARKS_TRUSTED_MS after that; the purge waits that long after the insert before it lists the
 * pending intents (`settleWriters`). So every writer that missed the mark, on any instance,
 * stored its intent before that list was taken, and the purge waits for it and sweeps its
 * version, exactly as with a point read per commit.
 */
export class ErasedMarks<T extends Document & { _id: string }> {
  private readonly known = new Set<string>();
  /** performance.now() until which "not in `known`" means "not erased". */
  private trustedUntil = -Infinity;
  private scanning?: Promise<void>;

  constructor(
    private readonly col: Collection<T>,
    private readonly trustMs = MARKS_TRUSTED_MS,
  ) {}

  /** The first of `refs` ("Patient/<id>") that is erased, if any. */
  async firstErased(refs: readonly string[]): Promise<string | undefined> {
    const hit = refs.find((r) => this.known.has(r));
    if (hit || refs.length === 0) return hit;
    if (performance.now() >= this.trustedUntil) {
      await (this.scanning ??= this.scan().finally(() => (this.scanning = undefined)));
      // A scan that came back too late to be trusted (a very slow database): ask directly.
      if (performance.now() >= this.trustedUntil) return this.readDirectly(refs);
    }
    return refs.find((r) => this.known.has(r));
  }

  /** A mark this process wrote itself is known at once. */
  noteMarked(ref: string): void {
    this.known.add(ref);
  }

  private async scan(): Promise<void> {
    const started = performance.now();
    const docs = await this.col.find({}, { projection: { _id: 1 } }).toArray();
    for (const d of docs) this.known.add(d._id);
    this.trustedUntil = Math.max(this.trustedUntil, started + this.trustMs);
  }

  private async readDirectly(refs: readonly string[]): Promise<string | undefined> {
    const found = await findByIds(this.col, refs, { projection: { _id: 1 } });
    for (const d of found) this.known.add(d._id);
    return found[0]?._id;
  }
}
