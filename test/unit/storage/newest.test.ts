import type { Cond } from '../../../src/search/cond';
import type { Entry } from '../../../src/storage/query/bucket-store';
import { TRIMMED_BUCKETS } from '../../../src/storage/query/buckets';
import { NEWEST_PER_GROUP, groupMayMatch, touchedEntry, trimNewest, viewNewest } from '../../../src/storage/query/newest';

/** The patients' newest buckets (src/storage/query/newest.ts): what the trim keeps and what readers may conclude. */
const HR = 'http://loinc.org|8867-4';
const VITAL = 'http://terminology.hl7.org/CodeSystem/observation-category|vital-signs';
const LAB = 'http://terminology.hl7.org/CodeSystem/observation-category|laboratory';

function entry(i: string, minute: number | undefined, code = HR, category = VITAL): Entry {
  const x: Record<string, unknown> = { code: [code], 'code:s': code, category: [category] };
  if (minute !== undefined) x.date = { l: new Date(minute * 60_000), h: new Date(minute * 60_000 + 59_999) };
  return { i, x, d: { _id: i, res: { resourceType: 'Observation', id: i } as never, vid: 1, ts: new Date(0), deleted: false, comp: ['Patient/p'] } };
}

describe('newest buckets', () => {
  test('the trim keeps the newest entries of each signature, ties by id, undated last', () => {
    const all = [entry('a', 1), entry('b', 5), entry('c', 5), entry('d', 3), entry('u', undefined), entry('lab1', 9, HR, LAB), entry('lab0', 2, HR, LAB)];
    const kept = trimNewest(all);
    const view = viewNewest(kept);
    expect(view.groups).toHaveLength(2);
    const vital = view.groups.find((g) => (g.x.category as string[])[0] === VITAL)!;
    expect(vital.entries.map((e) => e.i)).toEqual(['b', 'c', 'd'].slice(0, NEWEST_PER_GROUP));
    expect(vital.full).toBe(true);
    const lab = view.groups.find((g) => (g.x.category as string[])[0] === LAB)!;
    expect(lab.entries.map((e) => e.i)).toEqual(['lab1', 'lab0']);
    expect(lab.full).toBe(false);
    // Trimming again (the next store) keeps the same, and a newer entry pushes the oldest out.
    expect(viewNewest(trimNewest(kept))).toEqual(view);
    const next = viewNewest(trimNewest([...kept, entry('e', 7)])).groups.find((g) => (g.x.category as string[])[0] === VITAL)!;
    expect(next.entries.map((e) => e.i)).toEqual(['e', 'b', 'c']);
  });

  test('an entry stored and staged again counts once; touched markers are kept and capped', () => {
    const view = viewNewest([entry('a', 1), entry('a', 1), touchedEntry('z')]);
    expect(view.groups[0].entries).toHaveLength(1);
    expect([...view.touched]).toEqual(['z']);
    const many = Array.from({ length: 250 }, (_, k) => touchedEntry(`t${k}`));
    expect([...viewNewest(trimNewest([entry('a', 1), ...many])).touched]).toEqual(['']);
  });

  test('what erasure leaves of a newest bucket proves nothing: readers walk instead', () => {
    const left = TRIMMED_BUCKETS.afterRemoval([entry('a', 1), entry('b', 2)]);
    expect(viewNewest(left).touched.has('')).toBe(true);
    expect(viewNewest(left).groups[0].entries.map((e) => e.i)).toEqual(['b', 'a']);
  });

  test('a group is ruled out only by conditions on its signature', () => {
    const x = entry('a', 1).x;
    const eq = (f: string, v: string): Cond => ({ k: 'eq', f, v });
    expect(groupMayMatch(eq('idx.category', LAB), x)).toBe(false);
    expect(groupMayMatch(eq('idx.category', VITAL), x)).toBe(true);
    expect(groupMayMatch(eq('idx.code', HR), x)).toBe(true);
    expect(groupMayMatch(eq('idx.code', 'http://loinc.org|59408-5'), x)).toBe(false);
    // The date, the id and other parameters are decided per entry, not per group.
    expect(groupMayMatch({ k: 'range', f: 'idx.date.l', elem: false, b: { gt: new Date(10 ** 12) } }, x)).toBe(true);
    expect(groupMayMatch(eq('_id', 'other'), x)).toBe(true);
    expect(groupMayMatch(eq('idx.status', 'amended'), x)).toBe(true);
    expect(groupMayMatch({ k: 'nor', c: [eq('idx.status', 'final')] }, x)).toBe(true);
  });
});
