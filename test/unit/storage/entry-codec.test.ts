import { decodeEntries, encodeEntries, encodeEntry } from '../../../src/storage/query/entry-codec';
import type { Entry } from '../../../src/storage/query/bucket-store';

/** Bucket entries as text: what is encoded decodes to the same values, dates as dates. */
describe('bucket entry codec', () => {
  const ts = new Date('2024-03-01T06:00:00.123Z');
  const entries: Entry[] = [
    { i: 'a', x: { date: { l: new Date(0), h: new Date(999) }, 'code:s': 'http://loinc.org|8867-4', status: ['final'] } },
    { i: 'b', x: { date: [{ l: new Date(5), h: new Date(6) }], n: [1.5, null, true] }, d: { _id: 'b', res: { resourceType: 'Observation', id: 'b', status: 'final', note: [{ text: '{"$d":12}' }] } as never, vid: 2, ts, deleted: false, comp: ['Patient/p'] } },
    { i: 'c\nline', x: { odd: { $d: 5, other: 1 }, empty: {} } },
  ];

  test('round trip: dates in index values and a carried document, everything else as it was', () => {
    const back = decodeEntries([encodeEntries(entries.slice(0, 2)), '', encodeEntry(entries[2])]);
    expect(back).toEqual(entries);
    expect((back[0].x.date as { l: unknown }).l).toBeInstanceOf(Date);
    expect(back[1].d?.ts).toBeInstanceOf(Date);
    expect(back[1].d?.ts.getTime()).toBe(ts.getTime());
    // Text that looks like the marker stays text; an object with more keys stays an object.
    expect((back[1].d?.res as unknown as { note: { text: string }[] }).note[0].text).toBe('{"$d":12}');
    expect(back[2].x.odd).toEqual({ $d: 5, other: 1 });
  });

  test('no chunks, or empty chunks, decode to no entries', () => {
    expect(decodeEntries(undefined)).toEqual([]);
    expect(decodeEntries(['', ''])).toEqual([]);
  });
});
