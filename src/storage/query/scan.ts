import type { Collection } from 'mongodb';
import { type Cond, evaluate } from '../../search/cond';
import { restoreDecimals } from '../../json';
import { findByIds } from '../lookup';
import type { CurrentDoc } from '../types';
import { minuteKey } from './bucket-units';
import type { ScanPoint, TimeBuckets } from './time-buckets';

/** Point reads issued together while scanning. */
const READS_PER_CHUNK = 50;

export interface ScanInput {
  time: TimeBuckets;
  col: Collection<CurrentDoc>;
  type: string;
  /** The exact check of a current document (query, policy). */
  accept: (d: CurrentDoc) => boolean;
  want: number;
  budget: number;
  resume?: ScanPoint;
}

/**
 * A bounded scan for queries no bucket serves: the type's resources in `_lastUpdated` order
 * (time-buckets.ts), fetched by `_id` a chunk at a time and checked exactly, until `want` matches
 * or `budget` resources were examined. `resume` is undefined when the scan reached the end;
 * otherwise the next page continues from it (so a page may hold fewer than `want` matches).
 */
export async function boundedScan(s: ScanInput): Promise<{ docs: CurrentDoc[]; resume?: ScanPoint }> {
  const docs: CurrentDoc[] = [];
  let at = s.resume;
  let examined = 0;
  while (examined < s.budget) {
    const { entries, done } = await s.time.oldest(s.type, at, Math.min(s.budget - examined, READS_PER_CHUNK * 4));
    for (let i = 0; i < entries.length; i += READS_PER_CHUNK) {
      const chunk = entries.slice(i, Math.min(i + READS_PER_CHUNK, i + s.budget - examined));
      const byId = new Map((await findByIds(s.col, chunk.map((e) => e.v.id))).map((d) => [d._id, d]));
      for (const e of chunk) {
        examined++;
        at = { m: e.m, id: e.v.id };
        const d = byId.get(e.v.id);
        // Listed under the minute of its current version: each resource is met once.
        if (d && d.vid === e.v.vid && d.ts instanceof Date && minuteKey(d.ts.getTime()) === e.m && !d.deleted) {
          const doc = restoreDecimals(d);
          if (s.accept(doc)) docs.push(doc);
        }
        if (docs.length >= s.want) return { docs, resume: done && e === entries[entries.length - 1] ? undefined : at };
      }
      if (examined >= s.budget) return { docs, resume: done && chunk[chunk.length - 1] === entries[entries.length - 1] ? undefined : at };
    }
    if (done) return { docs };
  }
  return { docs, resume: at };
}

/** Whether a condition holds on a current document (undefined: no condition). */
export function holds(c: Cond | undefined, d: CurrentDoc): boolean {
  return !c || evaluate(c, d);
}
