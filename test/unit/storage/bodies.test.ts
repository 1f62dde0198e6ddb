import { isOver, lean, LEAN_STRING, mayBeLean, storedForm } from '../../../src/storage/bodies';
import type { CurrentDoc } from '../../../src/storage';

describe('big resources: the lean copy and the size check', () => {
  test('long strings are cut to a fixed length ending in the mark; everything else stays', () => {
    const res = { resourceType: 'Patient', id: 'p', name: [{ family: 'Short' }], photo: [{ data: 'A'.repeat(10_000) }], active: true, n: 1.5 };
    const l = lean(res);
    expect(l.photo[0].data).toHaveLength(LEAN_STRING);
    expect(l.photo[0].data.endsWith('\u2026')).toBe(true);
    expect(l.photo[0].data.startsWith('AAAA')).toBe(true);
    expect({ ...l, photo: undefined }).toEqual({ ...res, photo: undefined });
    expect(res.photo[0].data).toHaveLength(10_000); // the original is untouched
    expect(mayBeLean(l)).toBe(true);
    expect(mayBeLean(res)).toBe(false);
  });

  test('a cut never splits a surrogate pair', () => {
    const s = 'x'.repeat(LEAN_STRING - 2) + '\u{1F600}'.repeat(200);
    const cut = lean(s);
    expect(cut).toHaveLength(LEAN_STRING);
    expect(/[\ud800-\udbff](?![\udc00-\udfff])/.test(cut)).toBe(false);
  });

  test('the size check counts strings, keys and values, and stops early', () => {
    expect(isOver({ a: 'x'.repeat(100) }, 1000)).toBe(false);
    expect(isOver({ a: 'x'.repeat(2000) }, 1000)).toBe(true);
    expect(isOver({ a: Array.from({ length: 200 }, () => ({ value: 1 })) }, 1000)).toBe(true);
  });

  test('the stored form of a document with a body holds the lean copy and no decimal texts', () => {
    const doc = { _id: 'p', res: { resourceType: 'Patient', id: 'p', text: { status: 'generated', div: 'd'.repeat(5000) } }, dec: [{ p: '/x', t: '1.00' }], vid: 1, ts: new Date(), deleted: false, idx: {}, comp: [], body: 'Patient/p/1~n' } as unknown as CurrentDoc;
    const s = storedForm(doc);
    expect(s.dec).toBeUndefined();
    expect(JSON.stringify(s).length).toBeLessThan(1000);
    expect(doc.dec).toBeDefined(); // the prepared document itself is unchanged
    const inline = { ...doc, body: undefined };
    expect(storedForm(inline)).toBe(inline);
  });
});
