import {
  bandOf,
  news2,
  scoreAirOrOxygen,
  scoreConsciousness,
  scorePulse,
  scoreRespiratoryRate,
  scoreSpo2Scale1,
  scoreSpo2Scale2,
  scoreSystolic,
  scoreTemperature,
} from '../../../src/alerting/news2';

/** Every printed boundary of the RCP NEWS2 chart (2017), both sides. */
describe('NEWS2 scoring chart', () => {
  it.each([
    [0, 3], [8, 3], [9, 1], [11, 1], [12, 0], [20, 0], [21, 2], [24, 2], [25, 3], [60, 3],
  ])('respiration rate %p scores %p', (v, s) => expect(scoreRespiratoryRate(v)).toBe(s));

  it.each([
    [50, 3], [91, 3], [92, 2], [93, 2], [94, 1], [95, 1], [96, 0], [100, 0],
  ])('SpO2 scale 1 %p%% scores %p', (v, s) => expect(scoreSpo2Scale1(v)).toBe(s));

  it.each([
    [70, false, 3], [83, false, 3], [84, false, 2], [85, false, 2], [86, false, 1], [87, false, 1], [88, false, 0], [92, false, 0],
    [93, false, 0], [99, false, 0], [88, true, 0], [92, true, 0], [93, true, 1], [94, true, 1], [95, true, 2], [96, true, 2], [97, true, 3], [100, true, 3],
    [83, true, 3], [86, true, 1],
  ])('SpO2 scale 2 %p%% (oxygen %p) scores %p', (v, o, s) => expect(scoreSpo2Scale2(v, o)).toBe(s));

  it('air scores 0, oxygen 2', () => {
    expect(scoreAirOrOxygen(false)).toBe(0);
    expect(scoreAirOrOxygen(true)).toBe(2);
  });

  it.each([
    [60, 3], [90, 3], [91, 2], [100, 2], [101, 1], [110, 1], [111, 0], [219, 0], [220, 3], [260, 3],
  ])('systolic %p mmHg scores %p', (v, s) => expect(scoreSystolic(v)).toBe(s));

  it.each([
    [30, 3], [40, 3], [41, 1], [50, 1], [51, 0], [90, 0], [91, 1], [110, 1], [111, 2], [130, 2], [131, 3], [200, 3],
  ])('pulse %p /min scores %p', (v, s) => expect(scorePulse(v)).toBe(s));

  it('consciousness: alert 0, CVPU 3', () => {
    expect(scoreConsciousness('A')).toBe(0);
    expect(scoreConsciousness('CVPU')).toBe(3);
  });

  it.each([
    [34, 3], [35.0, 3], [35.1, 1], [36.0, 1], [36.1, 0], [38.0, 0], [38.1, 1], [39.0, 1], [39.1, 2], [41, 2],
  ])('temperature %p C scores %p', (v, s) => expect(scoreTemperature(v)).toBe(s));
});

describe('NEWS2 bands', () => {
  it.each([
    [0, [0, 0], 'low'], [4, [1, 1, 2], 'low'], [3, [3], 'low-medium'], [4, [3, 1], 'low-medium'], [5, [2, 3], 'medium'],
    [6, [2, 2, 2], 'medium'], [7, [3, 2, 2], 'high'], [20, [3, 3, 3, 3, 3, 3, 2], 'high'],
  ] as const)('total %p from %p is %p', (t, scores, band) => expect(bandOf(t, scores)).toBe(band));
});

const normal = { respiratoryRate: 16, spo2: 97, onOxygen: false, systolic: 120, pulse: 70, consciousness: 'A' as const, temperature: 37 };

describe('news2()', () => {
  it('worked example: all normal is 0, low', () => {
    expect(news2(normal)).toMatchObject({ complete: true, total: 0, band: 'low' });
  });
  it('worked example: single parameter 3 (RR 7) is low-medium', () => {
    expect(news2({ ...normal, respiratoryRate: 7 })).toMatchObject({ total: 3, band: 'low-medium' });
  });
  it('worked example: oxygen + pulse 115 + temp 38.5 is 5, medium', () => {
    expect(news2({ ...normal, onOxygen: true, pulse: 115, temperature: 38.5 })).toMatchObject({ total: 5, band: 'medium' });
  });
  it('worked example: RR 26, SpO2 90, systolic 95 is 8, high', () => {
    expect(news2({ ...normal, respiratoryRate: 26, spo2: 90, systolic: 95 })).toMatchObject({ total: 8, band: 'high' });
  });
  it('scale 2 does not penalise 90% on air; scale 1 does', () => {
    expect(news2({ ...normal, spo2: 90 }, 2).scores.spo2).toBe(0);
    expect(news2({ ...normal, spo2: 90 }, 1).scores.spo2).toBe(3);
  });
  it('a missing parameter makes it incomplete, without a total or band', () => {
    const r = news2({ ...normal, temperature: undefined });
    expect(r).toMatchObject({ complete: false, missing: ['temperature'] });
    expect(r.total).toBeUndefined();
    expect(r.band).toBeUndefined();
  });
});
