import type { Resource } from 'fhir/r4';
import { type Cond, evaluate, toMongo } from '../../../src/search/cond';
import { encoderFor } from '../../../src/search/encoders';
import { dateCond, dateRange } from '../../../src/search/encoders/date';
import { parseNumber, numberEncoder } from '../../../src/search/encoders/number';
import { canonicalUnit, toCanonical } from '../../../src/search/encoders/quantity';
import { FhirError } from '../../../src/errors';
import { buildRegistry } from '../../../src/search/registry';
import { indexResource, compartmentParams } from '../../../src/search/indexer';
import type { SearchParam } from '../../../src/search/types';

/**
 * Each encoder's three faces: index -> idx entries, query -> MongoDB filter, query -> in-memory
 * match over the idx entries. The database face is checked by shape here and by running it on
 * FerretDB in test/integration/search.
 */
const reg = buildRegistry(['Patient', 'Observation', 'Device']);
const ctx = { baseUrl: 'http://localhost:8080/fhir' };
const param = (type: string, code: string): SearchParam => {
  const p = reg.byType.get(type)?.get(code);
  if (!p) throw new Error(`no ${type}.${code}`);
  return p;
};
const idxOf = (r: Resource) => indexResource(r, reg.byType.get(r.resourceType)?.values() ?? [], compartmentParams(r.resourceType), ctx);
const cond = (type: string, code: string, raw: string, modifier?: string): Cond => {
  const p = param(type, code);
  const enc = encoderFor(p);
  if (!enc) throw new Error('no encoder');
  return enc.toCond(p, { raw, modifier }, p.code, ctx);
};
const matches = (r: Resource, c: Cond) => {
  const { idx, comp } = idxOf(r);
  return evaluate(c, { _id: r.id, idx, comp });
};
const expect400 = (fn: () => unknown, name: string) => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FhirError);
    expect((e as FhirError).status).toBe(400);
    expect((e as FhirError).message).toContain(name);
    return;
  }
  throw new Error('expected a 400');
};

const obs: Resource = {
  resourceType: 'Observation',
  id: 'o1',
  status: 'final',
  code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }], text: 'Heart rate' },
  subject: { reference: 'http://localhost:8080/fhir/Patient/p1/_history/2' },
  performer: [{ reference: 'Patient/p2' }, { reference: 'Practitioner/x' }],
  effectiveDateTime: '2024-05-01T10:00:00Z',
  valueQuantity: { value: 72, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
  component: [
    { code: { coding: [{ system: 'http://loinc.org', code: '8480-6' }] }, valueQuantity: { value: 120, system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } },
    { code: { coding: [{ system: 'http://loinc.org', code: '8462-4' }] }, valueQuantity: { value: 80, system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } },
  ],
} as Resource;

const patient: Resource = {
  resourceType: 'Patient',
  id: 'p1',
  name: [{ family: 'Dubois', given: ['Séverine', 'Eve'] }],
  identifier: [{ system: 'urn:mrn', value: 'A1', type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] } }],
  birthDate: '1980-03',
  active: true,
} as Resource;

describe('token', () => {
  test('index: every query form is precomputed, plus texts and of-type', () => {
    const { idx } = idxOf(obs);
    expect(idx.code).toEqual(['8867-4', 'http://loinc.org|8867-4', 'http://loinc.org|']);
    expect(idx['code:text']).toEqual(['heart rate']);
    expect(idxOf(patient).idx['identifier:type']).toEqual(['http://terminology.hl7.org/CodeSystem/v2-0203|MR|A1']);
    expect(idxOf(patient).idx.active).toEqual(['true', '|true']);
  });

  test('query: each form is one equality; :not a $nor; :text a prefix regex', () => {
    expect(toMongo(cond('Observation', 'code', 'http://loinc.org|8867-4'))).toEqual({ 'idx.code': 'http://loinc.org|8867-4' });
    expect(toMongo(cond('Observation', 'code', '|8867-4'))).toEqual({ 'idx.code': '|8867-4' });
    expect(toMongo(cond('Observation', 'code', 'http://loinc.org|'))).toEqual({ 'idx.code': 'http://loinc.org|' });
    expect(toMongo(cond('Observation', 'code', '8867-4', 'not'))).toEqual({ $nor: [{ 'idx.code': '8867-4' }] });
    expect(toMongo(cond('Observation', 'code', 'Heart', 'text'))).toEqual({ 'idx.code:text': { $regex: '^heart' } });
  });

  test('match', () => {
    expect(matches(obs, cond('Observation', 'code', 'http://loinc.org|8867-4'))).toBe(true);
    expect(matches(obs, cond('Observation', 'code', '|8867-4'))).toBe(false);
    expect(matches(obs, cond('Observation', 'code', '8867-4', 'not'))).toBe(false);
    expect(matches(obs, cond('Observation', 'code', 'hea', 'text'))).toBe(true);
    expect(matches(patient, cond('Patient', 'identifier', 'http://terminology.hl7.org/CodeSystem/v2-0203|MR|A1', 'of-type'))).toBe(true);
  });

  test('bad values', () => {
    expect400(() => cond('Observation', 'code', 'a|b|c'), 'code');
    expect400(() => cond('Observation', 'code', '|'), 'code');
    expect400(() => cond('Patient', 'identifier', 'MR|A1', 'of-type'), 'identifier');
  });
});

describe('string', () => {
  test('index: folded parts and originals', () => {
    const { idx } = idxOf(patient);
    expect(idx.given).toEqual(['severine', 'eve']);
    expect(idx['given:exact']).toEqual(['Séverine', 'Eve']);
    expect(idx.name).toEqual(['dubois', 'severine', 'eve']);
  });
  test('query and match: starts-with, :contains, :exact', () => {
    expect(toMongo(cond('Patient', 'given', 'Sév'))).toEqual({ 'idx.given': { $regex: '^sev' } });
    expect(matches(patient, cond('Patient', 'given', 'SEV'))).toBe(true);
    expect(matches(patient, cond('Patient', 'given', 'verine'))).toBe(false);
    expect(matches(patient, cond('Patient', 'given', 'verine', 'contains'))).toBe(true);
    expect(matches(patient, cond('Patient', 'given', 'Eve', 'exact'))).toBe(true);
    expect(matches(patient, cond('Patient', 'given', 'eve', 'exact'))).toBe(false);
    expect(matches(patient, cond('Patient', 'given', 'a.b*'))).toBe(false); // regex characters are literal
  });
});

describe('date', () => {
  test('precision ranges', () => {
    expect(dateRange('2013')).toEqual({ l: new Date('2013-01-01T00:00:00.000Z'), h: new Date('2013-12-31T23:59:59.999Z') });
    expect(dateRange('2013-02')).toEqual({ l: new Date('2013-02-01T00:00:00.000Z'), h: new Date('2013-02-28T23:59:59.999Z') });
    expect(dateRange('2012-02-29')?.h).toEqual(new Date('2012-02-29T23:59:59.999Z'));
    expect(dateRange('2013-01-14T10:00')).toEqual({ l: new Date('2013-01-14T10:00:00.000Z'), h: new Date('2013-01-14T10:00:59.999Z') });
    expect(dateRange('2013-01-14T10:00:00+02:00')?.l).toEqual(new Date('2013-01-14T08:00:00.000Z'));
    expect(dateRange('2013-01-14T10:00:00.5Z')?.h).toEqual(new Date('2013-01-14T10:00:00.599Z'));
    for (const bad of ['2013-02-29', '2013-13', '2013-01-14T24:00', '13-01-14', '2013-01-14T10', 'x', '2013-01-14T10:00:61Z']) expect(dateRange(bad)).toBeUndefined();
  });

  test('index: scalar bounds for single-valued parameters (compound indexes), arrays otherwise', () => {
    const { idx } = idxOf(obs);
    expect(idx.date).toEqual({ l: new Date('2024-05-01T10:00:00.000Z'), h: new Date('2024-05-01T10:00:00.999Z') });
    expect(param('Observation', 'date').single).toBe(true);
  });

  test('query: every prefix; the spec example lt2013-01-14T10:00 matches 2013-01-14', () => {
    const day: Resource = { ...obs, effectiveDateTime: '2013-01-14' } as Resource;
    const yes = ['lt2013-01-14T10:00', 'eq2013-01', '2013', 'ge2013-01-14', 'le2013-01-14', 'gt2013-01-14T10:00', 'sa2013-01-13', 'eb2013-01-15', 'ne2013-01-13', 'ap2013-01-14'];
    const no = ['2013-01-14T10:00', 'gt2013-01-14', 'lt2013-01-14', 'sa2013-01-14', 'eb2013-01-14', 'ne2013-01-14', '2014'];
    for (const q of yes) expect([q, matches(day, cond('Observation', 'date', q))]).toEqual([q, true]);
    for (const q of no) expect([q, matches(day, cond('Observation', 'date', q))]).toEqual([q, false]);
    expect(toMongo(cond('Observation', 'date', 'gt2013-01-14'))).toEqual({ 'idx.date.h': { $gt: new Date('2013-01-14T23:59:59.999Z') } });
  });

  test('ap widens by 10 % of the distance to now', () => {
    const p = param('Observation', 'date');
    const now = new Date('2023-01-01T00:00:00Z');
    const c = dateCond(p, 'ap2013-01-01', 'idx.date', false, now);
    const doc = (iso: string) => ({ idx: { date: dateRange(iso) } });
    expect(evaluate(c, doc('2013-12-01'))).toBe(true); // within a year of ten years ago
    expect(evaluate(c, doc('2015-01-01'))).toBe(false);
  });

  test('bad values', () => {
    for (const q of ['2013-02-30', 'xx2013', 'gt', '2013-01-14T25:00', '']) expect400(() => cond('Observation', 'date', q), 'date');
  });
});

describe('number', () => {
  const p: SearchParam = { code: 'n', type: 'number', resourceType: 'X', url: '', single: false, targets: [] };
  test('precision of the search value defines eq', () => {
    expect(parseNumber(p, '100')).toEqual({ v: 100, half: 0.5 });
    expect(parseNumber(p, '100.00')).toEqual({ v: 100, half: 0.005 });
    expect(parseNumber(p, '1e2')).toEqual({ v: 100, half: 50 });
    expect400(() => parseNumber(p, '1,0'), 'n');
    expect400(() => parseNumber(p, 'abc'), 'n');
  });
  test('index, query, match', () => {
    const idx: Record<string, unknown> = {};
    numberEncoder.index(p, [{ type: 'decimal', value: 99.6 }, { type: 'decimal', value: 3 }], idx, 'n', ctx);
    expect(idx).toEqual({ n: [99.6, 3], 'n:s': 3 });
    const doc = { idx };
    const c = (raw: string) => numberEncoder.toCond(p, { raw }, 'n', ctx);
    expect(toMongo(c('100'))).toEqual({ 'idx.n': { $elemMatch: { $gte: 99.5, $lt: 100.5 } } });
    for (const [q, want] of [['100', true], ['100.0', false], ['gt99', true], ['lt3', false], ['le3', true], ['ge100', true], ['ge100.0', false], ['le2', false], ['ne100', false], ['ne3.5', true], ['ap95', true], ['ap90', false], ['sa99.6', false], ['eb3.1', true]] as const) {
      expect([q, evaluate(c(q), doc)]).toEqual([q, want]);
    }
  });
  test('ge and le honour the implied precision of the value (ge37 is eq37 or gt37, eq37 is [36.5, 37.5))', () => {
    const at = (v: number) => {
      const idx: Record<string, unknown> = {};
      numberEncoder.index(p, [{ type: 'decimal', value: v }], idx, 'n', ctx);
      return { idx };
    };
    const c = (raw: string) => numberEncoder.toCond(p, { raw }, 'n', ctx);
    expect(toMongo(c('ge37'))).toEqual({ 'idx.n': { $elemMatch: { $gte: 36.5 } } });
    expect(toMongo(c('le37'))).toEqual({ 'idx.n': { $elemMatch: { $lt: 37.5 } } });
    for (const [q, v, want] of [['ge37', 36.5, true], ['ge37', 36.4, false], ['ge37.0', 36.96, true], ['ge37.0', 36.9, false], ['le37', 37.4, true], ['le37', 37.5, false], ['gt37', 37.2, true], ['lt37', 36.8, true]] as const) {
      expect([q, v, evaluate(c(q), at(v))]).toEqual([q, v, want]);
    }
  });
});

describe('quantity', () => {
  test('UCUM canonical forms', () => {
    expect(canonicalUnit('mm[Hg]')).toBe(canonicalUnit('kPa'));
    expect(canonicalUnit('kg')).toBe('g1');
    expect(canonicalUnit('nonsense')).toBeNull();
    expect(toCanonical('kg', 70)).toBe(70000);
    expect(toCanonical('Cel', 37)).toBeCloseTo(310.15);
  });
  test('index: value buckets by unit', () => {
    const { idx } = idxOf(obs);
    const vq = idx['value-quantity'] as Record<string, number[]>;
    expect(vq.v).toEqual([72]);
    expect(vq['s:http://unitsofmeasure%2Eorg|/min']).toEqual([72]);
    expect(vq['c:/min']).toEqual([72]);
    expect(vq['u:s-1']).toEqual([1.2]);
  });
  test('query and match', () => {
    expect(matches(obs, cond('Observation', 'value-quantity', '72'))).toBe(true);
    expect(matches(obs, cond('Observation', 'value-quantity', 'gt1|http://unitsofmeasure.org|Hz'))).toBe(true);
    expect(matches(obs, cond('Observation', 'value-quantity', 'gt1.3|http://unitsofmeasure.org|Hz'))).toBe(false);
    expect(matches(obs, cond('Observation', 'value-quantity', '72||/min'))).toBe(true);
    expect(matches(obs, cond('Observation', 'value-quantity', '72|http://other|/min'))).toBe(false);
    expect(matches(obs, cond('Observation', 'component-value-quantity', 'gt15|http://unitsofmeasure.org|kPa'))).toBe(true);
    expect(matches(obs, cond('Observation', 'component-value-quantity', 'gt17|http://unitsofmeasure.org|kPa'))).toBe(false);
    expect(toMongo(cond('Observation', 'value-quantity', 'lt80'))).toEqual({ 'idx.value-quantity.v': { $elemMatch: { $lt: 80 } } });
  });
  test('bad values', () => {
    for (const q of ['abc', 'gt', '1|http://unitsofmeasure.org|nonsense', '1|a|b|c', '1|sys|']) expect400(() => cond('Observation', 'value-quantity', q), 'value-quantity');
  });
});

describe('reference', () => {
  test('index: local absolute URLs and versions normalised; identifiers as tokens; compartments', () => {
    const r = idxOf(obs);
    expect(r.idx.subject).toBe('Patient/p1');
    expect(r.idx.performer).toEqual(['Patient/p2', 'Practitioner/x']);
    expect(r.comp.sort()).toEqual(['Patient/p1', 'Patient/p2']);
    expect(idxOf(patient).comp).toEqual(['Patient/p1']);
  });
  test('query and match', () => {
    const byId = toMongo(cond('Observation', 'subject', 'p1')) as { 'idx.subject': { $in: string[] } };
    expect(byId['idx.subject'].$in.sort()).toEqual(['Device/p1', 'Group/p1', 'Location/p1', 'Patient/p1']);
    expect(matches(obs, cond('Observation', 'subject', 'Patient/p1'))).toBe(true);
    expect(matches(obs, cond('Observation', 'subject', 'http://localhost:8080/fhir/Patient/p1'))).toBe(true);
    expect(matches(obs, cond('Observation', 'subject', 'p1', 'Patient'))).toBe(true);
    expect(matches(obs, cond('Observation', 'subject', 'p1', 'Group'))).toBe(false);
    expect(matches(obs, cond('Observation', 'patient', 'p1'))).toBe(true);
  });
  test(':missing sees a Reference with only a display or an identifier as present (search and matching agree)', () => {
    const missing = (v: 'true' | 'false'): Cond => ({ k: 'exists', f: encoderFor(param('Observation', 'subject'))!.presenceField('subject'), v: v === 'false' });
    const base = { resourceType: 'Observation', status: 'final', code: { text: 'x' } } as const;
    const displayOnly = { ...base, id: 'd', subject: { display: 'Someone at home' } } as Resource;
    const identifierOnly = { ...base, id: 'i', subject: { identifier: { system: 'http://hospital.example/mrn', value: 'E9' } } } as Resource;
    const none = { ...base, id: 'n' } as Resource;
    for (const r of [displayOnly, identifierOnly, obs]) {
      expect([r.id, matches(r, missing('true')), matches(r, missing('false'))]).toEqual([r.id, false, true]);
    }
    expect([matches(none, missing('true')), matches(none, missing('false'))]).toEqual([true, false]);
    expect(toMongo(missing('true'))).toEqual({ 'idx.subject:present': { $exists: false } });
  });
  test('bad values', () => {
    for (const q of ['Patient/', 'a b', 'Patient/x/y/z']) expect400(() => cond('Observation', 'subject', q), 'subject');
    expect400(() => cond('Observation', 'subject', '1', 'Organization'), 'subject');
  });
});

describe('uri', () => {
  const dev = { resourceType: 'Device', id: 'd', url: 'http://x.org/a/b' } as Resource;
  test('exact, :below, :above', () => {
    expect(matches(dev, cond('Device', 'url', 'http://x.org/a/b'))).toBe(true);
    expect(matches(dev, cond('Device', 'url', 'http://x.org/a'))).toBe(false);
    expect(matches(dev, cond('Device', 'url', 'http://x.org/a', 'below'))).toBe(true);
    expect(matches(dev, cond('Device', 'url', 'http://x.org/a/b/c', 'above'))).toBe(true);
    expect(matches(dev, cond('Device', 'url', 'http://y.org/a/b/c', 'above'))).toBe(false);
  });
});

describe('composite', () => {
  test('the value is bound to its own code', () => {
    expect(matches(obs, cond('Observation', 'component-code-value-quantity', 'http://loinc.org|8480-6$gt100'))).toBe(true);
    expect(matches(obs, cond('Observation', 'component-code-value-quantity', 'http://loinc.org|8462-4$gt100'))).toBe(false);
    expect(matches(obs, cond('Observation', 'combo-code-value-quantity', '8867-4$72'))).toBe(true);
    expect(matches(obs, cond('Observation', 'code-value-quantity', '8867-4$ge72|http://unitsofmeasure.org|/min'))).toBe(true);
    expect(toMongo(cond('Observation', 'code-value-quantity', 'http://loinc.org|8867-4$lt80'))).toEqual({
      'idx.code-value-quantity.http://loinc%2Eorg|8867-4.v': { $elemMatch: { $lt: 80 } },
    });
  });
  test('bad values name the composite', () => {
    for (const q of ['8480-6', '8480-6$abc', 'a|b|c$1']) expect400(() => cond('Observation', 'component-code-value-quantity', q), 'component-code-value-quantity');
  });
});
