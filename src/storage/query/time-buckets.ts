import { type BucketStore, type Ops, emptyOps, pushEntry } from './bucket-store';
import type { BucketSource } from './buckets';
import { DAY_MS, MINUTE_MS, dayKey, minuteKey, unitStart } from './bucket-units';

/**
 * Versions by time, per resource type, for FerretDB (which scans for any filter but `{ _id }`):
 * `H|<type>|2024-03-01T10:05` lists the versions written in that UTC minute (id, vid, time), the
 * directory `H|<type>|2024-03-01` the minutes of that day holding any, and `H|<type>` the days.
 *
 * They serve two things: history by time (`[type]/_history`, `/_history`, with or without
 * `_since`), walked newest first a few minutes at a time, and the bounded scan of queries no
 * other bucket serves, walked oldest first: each current document is listed under the minute of
 * its current version, so the walk meets every resource once, in `_lastUpdated` order.
 */

/** Minute buckets read in parallel per step. */
const MINUTES_PER_STEP = 10;

/** A version listed in a time bucket. */
export interface TimedVersion {
  type: string;
  id: string;
  vid: number;
  /** ms */
  t: number;
}

/** Where an oldest-first walk stands: the minute and the last (type-less) id taken in it. */
export interface ScanPoint {
  m: string;
  id: string;
}

export class TimeBuckets {
  constructor(private readonly store: BucketStore) {}

  /** The entries these versions add (those with a version number and time). */
  opsOf(type: string, docs: readonly BucketSource[], ops: Ops = emptyOps()): Ops {
    for (const d of docs) {
      if (d.vid === undefined || !(d.ts instanceof Date)) continue;
      const t = d.ts.getTime();
      const minute = minuteKey(t);
      pushEntry(ops, `H|${type}|${minute}`, { i: d._id, x: { v: d.vid, t } });
      this.store.addToDir(ops, `H|${type}|${dayKey(t)}`, [minute], '');
      this.store.addToDir(ops, `H|${type}`, [dayKey(t)], '');
    }
    return ops;
  }

  /** Days holding versions of these types that overlap [lo, hi] (ms), ascending, with the types. */
  private async days(types: readonly string[], lo: number, hi: number): Promise<[string, string[]][]> {
    const dirs = await this.store.readDirs(types.map((t) => `H|${t}`));
    const out = new Map<string, string[]>();
    types.forEach((t, i) => {
      for (const day of dirs[i].keys()) if (unitStart(day) <= hi && unitStart(day) + DAY_MS - 1 >= lo) out.set(day, [...(out.get(day) ?? []), t]);
    });
    return [...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** Minutes of one day holding versions of these types within [lo, hi], ascending, with the types. */
  private async minutes(day: string, types: readonly string[], lo: number, hi: number): Promise<Map<string, string[]>> {
    const dirs = await this.store.readDirs(types.map((t) => `H|${t}|${day}`));
    const out = new Map<string, string[]>();
    types.forEach((t, i) => {
      for (const m of dirs[i].keys()) if (unitStart(m) <= hi && unitStart(m) + MINUTE_MS - 1 >= lo) out.set(m, [...(out.get(m) ?? []), t]);
    });
    return new Map([...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  private async read(byMinute: Map<string, string[]>, minutes: readonly string[]): Promise<TimedVersion[]> {
    const keys: [string, string][] = minutes.flatMap((m) => (byMinute.get(m) ?? []).map((t) => [t, m] as [string, string]));
    const lists = await this.store.readEntries(keys.map(([t, m]) => `H|${t}|${m}`));
    const out = new Map<string, TimedVersion>();
    lists.forEach((list, k) => {
      for (const e of list) {
        const v = { type: keys[k][0], id: e.i, vid: Number(e.x.v), t: Number(e.x.t) };
        out.set(`${v.type}/${v.id}/${v.vid}`, v);
      }
    });
    return [...out.values()];
  }

  /**
   * Versions of `types` with time in [lo, hi], newest first, at least `limit` of them when there
   * are (whole minutes at a time, so the caller may cut anywhere): history pages.
   */
  async newest(types: readonly string[], lo: number, hi: number, limit: number, keep: (v: TimedVersion) => boolean): Promise<{ versions: TimedVersion[]; exhausted: boolean }> {
    const days = (await this.days(types, lo, hi)).reverse();
    const out: TimedVersion[] = [];
    for (let d = 0; d < days.length; d++) {
      const byMinute = await this.minutes(days[d][0], days[d][1], lo, hi);
      const minutes = [...byMinute.keys()].reverse();
      for (let i = 0; i < minutes.length; i += MINUTES_PER_STEP) {
        out.push(...(await this.read(byMinute, minutes.slice(i, i + MINUTES_PER_STEP))).filter((v) => v.t >= lo && v.t <= hi && keep(v)));
        if (out.length >= limit) return { versions: out, exhausted: d === days.length - 1 && i + MINUTES_PER_STEP >= minutes.length };
      }
    }
    return { versions: out, exhausted: true };
  }

  /**
   * Oldest first from `after` (exclusive): the next entries of one type, minute by minute, until
   * at least `budget` ids or the end. Each id comes with the minute it was listed under (the
   * newest version of the id in that minute).
   */
  async oldest(type: string, after: ScanPoint | undefined, budget: number): Promise<{ entries: { m: string; v: TimedVersion }[]; done: boolean }> {
    const from = after ? unitStart(after.m) : -Infinity;
    const days = await this.days([type], from, Infinity);
    const out: { m: string; v: TimedVersion }[] = [];
    for (let d = 0; d < days.length; d++) {
      const byMinute = await this.minutes(days[d][0], [type], from, Infinity);
      const minutes = [...byMinute.keys()];
      for (let i = 0; i < minutes.length; i++) {
        const m = minutes[i];
        const vs = (await this.read(byMinute, [m])).filter((v) => !after || m > after.m || v.id > after.id);
        vs.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : b.vid - a.vid));
        let prev: string | undefined;
        for (const v of vs) {
          if (v.id === prev) continue;
          prev = v.id;
          out.push({ m, v });
        }
        if (out.length >= budget) return { entries: out, done: d === days.length - 1 && i === minutes.length - 1 };
      }
    }
    return { entries: out, done: true };
  }
}
