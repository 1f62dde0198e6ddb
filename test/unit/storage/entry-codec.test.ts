import { carriedOf, carries, decodeEntries, encodeEntries, encodeEntry } from '../../../src/storage/query/entry-codec';
import type { Entry } from '../../../src/storage/query/bucket-store';

/** Bucket entries as text: what is encoded decodes to the same values, dates as dates. */
describe('bucket entry codec', () => {
  const ts = new Date('2024-03-01T06:00:00.123Z');
  const entries: Entry[] = [
    { i: 'a', x: { date: { l: new Date(0), h: new Date(999) }, 'code:s': 'http://loinc.org|8867-4', status: ['final'] } },
    { i: 'b', x: { date: [{ l: new Date(5), h: new Date(6) }], n: [1.5, null, true] }, d: { _id: 'b', res: { resourceType: 'Observation', id: 'b', status: 'final', note: [{ text: '{"$d":12}' }, { text: 'a\ttab\nand newline' }] } as never, vid: 2, ts, deleted: false, comp: ['Patient/p'] } },
    { i: 'c\nline\there', x: { odd: { $d: 5, other: 1 }, empty: {}, s: 'x\ty' } },
  ];

  test('round trip: dates in index values and a carried document, everything else as it was', () => {
    const back = decodeEntries([encodeEntries(entries.slice(0, 2)), '', encodeEntry(entries[2])]);
    expect(back.map((e) => ({ i: e.i, x: e.x, ...(carries(e) ? { d: carriedOf(e) } : {}) }))).toEqual(entries);
    expect((back[0].x.date as { l: unknown }).l).toBeInstanceOf(Date);
    expect(back[1].d?.ts).toBeInstanceOf(Date);
    expect(back[1].d?.ts.getTime()).toBe(ts.getTime());
    // Text that looks like the marker stays text; an object with more keys stays an object.
    expect((back[1].d?.res as unknown as { note: { text: string }[] }).note[0].text).toBe('{"$d":12}');
    expect((back[1].d?.res as unknown as { note: { text: string }[] }).note[1].text).toBe('a\ttab\nand newline');
    expect(back[2].x.odd).toEqual({ $d: 5, other: 1 });
    expect(back[2].i).toBe('c\nline\there');
  });

  test('a carried document stays text until read, is parsed once, and is written back as it was read', () => {
    const text = encodeEntries(entries);
    const parse = jest.spyOn(JSON, 'parse');
    try {
      const back = decodeEntries([text]);
      expect(parse).toHaveBeenCalledTimes(3); // the three lines' ids and index values
      expect(back[1].d).toBeUndefined();
      expect(carries(back[1])).toBe(true);
      expect(carries(back[0])).toBe(false);
      expect(carriedOf(back[0])).toBeUndefined();
      expect(encodeEntries(back)).toBe(text);
      expect(parse).toHaveBeenCalledTimes(3);
      const doc = carriedOf(back[1]);
      expect(doc?.vid).toBe(2);
      expect(carriedOf(back[1])).toBe(doc);
      expect(parse).toHaveBeenCalledTimes(4);
      expect(encodeEntries(back)).toBe(text);
    } finally {
      parse.mockRestore();
    }
  });

  test('lines with the document inside the entry object (bucket layout v9) still decode', () => {
    const inline = JSON.stringify({ i: 'b', x: { date: { l: { $d: 5 } } }, d: { _id: 'b', ts: { $d: 7 }, vid: 1 } });
    const [old] = decodeEntries([inline]);
    expect((old.x.date as { l: Date }).l).toEqual(new Date(5));
    expect(carriedOf(old)?.ts).toEqual(new Date(7));
    expect(carries(old)).toBe(true);
    expect(decodeEntries([encodeEntry(old)])[0].t).toBe(JSON.stringify({ _id: 'b', ts: { $d: 7 }, vid: 1 }));
  });

  test('no chunks, or empty chunks, decode to no entries', () => {
    expect(decodeEntries(undefined)).toEqual([]);
    expect(decodeEntries(['', ''])).toEqual([]);
  });
});
