import { type Cond } from '../../../src/search/cond';
import { bandMayMatch, bandOf, bandRange, bandsOf, boundsValue } from '../../../src/storage/query/value-bands';

/** Value bands (src/storage/query/value-bands.ts): which band a value falls in, and which bands a threshold reads. */

const range = (f: string, b: Record<string, number>): Cond => ({ k: 'range', f: `idx.value-quantity.${f}`, elem: true, b });

test('a value falls in the band of its leading digit and exponent, and inside that band\'s range', () => {
  const cases: [number, string][] = [[87, 'v1:8'], [94, 'v1:9'], [100, 'v2:1'], [0.9, 'v-1:9'], [0.8999999, 'v-1:8'], [0, 'vz'], [-87, 'vn1:8'], [1e-22, 'v-22:1'], [6.0, 'v0:6']];
  for (const [x, band] of cases) {
    expect(bandOf('v', x)).toBe(band);
    const r = bandRange(band);
    expect(r && x >= r.lo && x <= r.hi).toBe(true);
  }
  expect(bandOf('v', Number.NaN)).toBeUndefined();
});

test('a version is banded in base units when it has them, else by its value as sent', () => {
  expect(bandsOf({ 'value-quantity': { v: [87], 'c:%': [87], 'u:1': [0.87] } })).toEqual(['u-1:8']);
  expect(bandsOf({ 'value-quantity': { v: [87], 'c:x': [87] } })).toEqual(['v1:8']);
  expect(bandsOf({ code: ['x'] })).toEqual([]);
});

test('a threshold reads only the bands that can hold a match, edges included exactly', () => {
  // lt90 % in base units is lt 0.9000000000000001: the band [0.9, 1) cannot match.
  const ltU = range('u:1', { lt: 90 * 0.01 });
  expect(bandMayMatch(ltU, 'u-1:8')).toBe(true);
  expect(bandMayMatch(ltU, 'u-1:9')).toBe(false);
  expect(bandMayMatch(ltU, 'u0:1')).toBe(false);
  expect(bandMayMatch(ltU, 'v1:8')).toBe(false); // no base-unit value there
  const ltV = range('v', { lt: 90 });
  expect(bandMayMatch(ltV, 'v1:8')).toBe(true);
  expect(bandMayMatch(ltV, 'v1:9')).toBe(false);
  expect(bandMayMatch(ltV, 'vn1:8')).toBe(true);
  expect(bandMayMatch(ltV, 'u-1:9')).toBe(true); // the value as sent is not known in a u band
  expect(bandMayMatch(range('c:%', { lte: 90 }), 'v1:9')).toBe(true); // 90 itself
  expect(bandMayMatch(range('v', { gt: 89 }), 'v1:8')).toBe(true); // 89.5
  expect(bandMayMatch(range('v', { gt: 90 }), 'v1:8')).toBe(false);
  expect(bandMayMatch(range('v', { gte: 90 }), 'v1:8')).toBe(true); // [80, 90] taken closed
  expect(bandMayMatch(range('v', { gte: 100 }), 'v1:9')).toBe(true);
  expect(bandMayMatch(range('v', { gte: 101 }), 'v1:9')).toBe(false);
  // Alternatives (no system: code or UCUM) read both kinds.
  const either: Cond = { k: 'or', c: [range('c:%', { lt: 90 }), ltU] };
  expect(bandMayMatch(either, 'v1:8') && bandMayMatch(either, 'u-1:8')).toBe(true);
  expect(bandMayMatch(either, 'v1:9')).toBe(false);
});

test('only a condition bounding the value in every alternative uses the bands', () => {
  expect(boundsValue({ k: 'and', c: [{ k: 'eq', f: 'idx.code', v: 'x' }, range('v', { lt: 90 })] })).toBe(true);
  expect(boundsValue({ k: 'or', c: [range('v', { lt: 90 }), { k: 'eq', f: 'idx.status', v: 'final' }] })).toBe(false);
  expect(boundsValue({ k: 'eq', f: 'idx.code', v: 'x' })).toBe(false);
});
