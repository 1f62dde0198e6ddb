import type { Device } from 'fhir/r4';
import { all } from './fixtures';
import { type SearchFixture, createSearchFixture, outcomeOf } from './helpers';

/**
 * Every parameter type, modifier and prefix against a real FerretDB, with the spec's own
 * examples taken literally. Data: test/integration/search/fixtures.ts.
 */
let f: SearchFixture;
beforeAll(async () => {
  f = await createSearchFixture('params');
  await f.put(...all);
});
afterAll(() => f.close());

const EVE_OBS = ['bp1', 'hr1', 'hr2'];

describe('string', () => {
  test.each([
    ['given=eve', ['eve', 'evelyn']], // spec: "given=eve" finds Eve and Evelyn
    ['given:contains=eve', ['eve', 'evelyn', 'severine']], // spec: :contains also finds Severine
    ['given:exact=Eve', ['eve']],
    ['given:exact=eve', []],
    ['family=muller', ['evelyn']], // accent-insensitive
    ['family=MÜL', ['evelyn']],
    ['name=HOLT', ['eve']], // case-insensitive, any part of the name
    ['given=Sév', ['severine']],
    ['given=eve,adam', ['adam', 'eve', 'evelyn']], // comma = OR
    ['given=eve&family=holt', ['eve']], // repeat = AND
    ['address-city=zurich', ['eve']],
    ['address=ch', ['eve']],
    ['family:missing=true', []],
    ['given=evelyn&given=eve', ['evelyn']],
  ])('Patient?%s', async (q, expected) => {
    expect(await f.ids('Patient', q)).toEqual(expected);
  });

  test('an empty value is ignored', async () => {
    expect(await f.ids('Patient', 'given=')).toHaveLength(4);
  });
});

describe('token', () => {
  test.each([
    ['Patient', 'gender=female', ['eve', 'evelyn']],
    ['Patient', 'gender:not=female', ['adam', 'severine']],
    ['Patient', 'gender:not=female,male', ['severine']],
    ['Patient', 'identifier=http://hospital.example/mrn|E1', ['eve']],
    ['Patient', 'identifier=E1', ['eve']],
    ['Patient', 'identifier=|S1', ['severine']],
    ['Patient', 'identifier=|E1', []],
    ['Patient', 'identifier=http://hospital.example/mrn|', ['eve', 'evelyn']],
    ['Patient', 'identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|E1', ['eve']],
    ['Patient', 'active=true', ['eve', 'evelyn']],
    ['Patient', 'active:missing=true', ['severine']],
    ['Patient', 'active:missing=false', ['adam', 'eve', 'evelyn']],
    ['Patient', 'email=eve@example.org', ['eve']],
    ['Patient', '_id=eve,adam', ['adam', 'eve']],
    ['Patient', '_id:not=eve', ['adam', 'evelyn', 'severine']],
    ['Observation', 'code=http://loinc.org|8867-4', ['hr1', 'hr2', 'hr3']],
    ['Observation', 'code=http://loinc.org|8867-4,http://loinc.org|59408-5', ['hr1', 'hr2', 'hr3', 'spo2']],
    ['Observation', 'code=8867-4&code=http://loinc.org|8867-4', ['hr1', 'hr2', 'hr3']],
    ['Observation', 'code=http://snomed.info/sct|8867-4', []],
    ['Observation', 'code:text=heart', ['hr1', 'hr2', 'hr3']],
    ['Observation', 'code:text=OXYGEN sat', ['spo2']],
    ['Observation', 'interpretation=H', ['hr2']], // our ig/ parameter
    ['Observation', 'interpretation:missing=false', ['hr1', 'hr2', 'spo2']],
    ['Observation', 'status=preliminary', ['spo2']],
    ['Observation', 'status:not=final', ['spo2']],
    ['Observation', 'component-code=http://loinc.org|8480-6', ['bp1']],
    ['Observation', 'combo-code=8462-4', ['bp1']],
    ['Observation', 'category=vital-signs&code=8310-5', ['temp1']],
    ['Device', 'type=http://snomed.info/sct|258057004', ['dev1']],
    ['Device', 'identifier=SN-1', ['dev1']],
  ])('%s?%s', async (type, q, expected) => {
    expect(await f.ids(type, q)).toEqual(expected);
  });

  test('escaped separators are part of the value', async () => {
    await f.put({ resourceType: 'Device', id: 'esc', identifier: [{ system: 'urn:x', value: 'a,b|c$d' }] } as Device);
    expect(await f.ids('Device', 'identifier=urn:x|a\\,b\\|c\\$d')).toEqual(['esc']);
    expect(await f.ids('Device', 'identifier=a\\,b\\|c\\$d')).toEqual(['esc']);
    expect(await f.ids('Device', 'identifier=a,b')).toEqual([]);
    await f.db.collection('Device').deleteOne({ _id: 'esc' as never });
  });

  test.each([
    ['identifier=a|b|c', 'identifier'],
    ['identifier=|', 'identifier'],
    ['identifier:of-type=MR|E1', 'identifier'],
    ['_id=not valid!', '_id'],
  ])('malformed Patient?%s is a 400 naming the parameter', async (q, name) => {
    const e = await f.error('Patient', q);
    expect(e.status).toBe(400);
    expect(e.code).toBe('invalid');
    expect(e.message).toContain(name);
  });
});

describe('date', () => {
  test.each([
    ['date=lt2013-01-14T10:00', ['bp1', 'hr1', 'temp1']], // spec: lt2013-01-14T10:00 matches 2013-01-14
    ['date=2013-01-14', ['bp1', 'hr1', 'hr2']],
    ['date=eq2013-01-14', ['bp1', 'hr1', 'hr2']],
    ['date=2013-01', ['bp1', 'hr1', 'hr2', 'hr3', 'temp1']],
    ['date=2013', ['bp1', 'hr1', 'hr2', 'hr3', 'temp1']],
    ['date=gt2013-01-14', ['hr3', 'spo2', 'wt1']],
    ['date=ge2013-01-14', ['bp1', 'hr1', 'hr2', 'hr3', 'spo2', 'wt1']],
    ['date=le2013-01-12', ['temp1']],
    ['date=lt2013-01-11', ['temp1']], // the period starts before
    ['date=sa2013-01-12', ['bp1', 'hr1', 'hr2', 'hr3', 'spo2', 'wt1']],
    ['date=sa2013-01-11', ['bp1', 'hr1', 'hr2', 'hr3', 'spo2', 'wt1']],
    ['date=eb2013-01-14', ['temp1']],
    ['date=eb2013-01-12', []], // the period ends on the 12th: not entirely before it
    ['date=ne2013-01-14', ['hr3', 'spo2', 'temp1', 'wt1']],
    ['date=2013-01-11', []], // the period [10th, 12th] is not contained in the 11th
    ['date=2014-06-01T06:00:00Z', ['spo2']], // 08:00+02:00
    ['date=2014-06-01T08:00:00%2B02:00', ['spo2']],
    ['date=2014-06-01T06:00', ['spo2']],
    ['date=ge2013-01-14T10:00&date=lt2013-01-15', ['bp1', 'hr2']],
    ['date:missing=true', ['str1']],
    ['_lastUpdated=gt2000-01-01&code=8867-4', ['hr1', 'hr2', 'hr3']],
    ['_lastUpdated=lt2000-01-01', []],
  ])('Observation?%s', async (q, expected) => {
    expect(await f.ids('Observation', q)).toEqual(expected);
  });

  test('ap: approximately (10 % of the distance to now), so close values match and absent ones do not', async () => {
    const ids = await f.ids('Observation', 'date=ap2013-01-14T11:00:00Z');
    expect(ids).toEqual(expect.arrayContaining(['bp1', 'hr1', 'hr2', 'hr3', 'temp1']));
    expect(ids).not.toContain('str1');
  });

  test.each([
    ['birthdate=1980', ['eve', 'evelyn']],
    ['birthdate=1980-03', ['eve']],
    ['birthdate=lt1990', ['eve', 'evelyn']],
    ['birthdate=ge1992-07-15', ['adam', 'severine']],
    ['death-date=2020', ['adam']],
    ['death-date:missing=false', ['adam']],
  ])('Patient?%s', async (q, expected) => {
    expect(await f.ids('Patient', q)).toEqual(expected);
  });

  test.each([
    'date=2013-02-30',
    'date=xx2013',
    'date=2013-01-14T25:00',
    'date=2013-1-14',
    'date=14/01/2013',
    'date=gt',
    'date=2013-01-14T10:00:00+25:00',
  ])('malformed Observation?%s is a 400 naming the parameter', async (q) => {
    const e = await f.error('Observation', q, 'lenient');
    expect(e.status).toBe(400);
    expect(e.code).toBe('invalid');
    expect(e.messageCode).toBe('MSG_PARAM_INVALID');
    expect(e.message).toContain('parameter date');
  });
});

describe('quantity', () => {
  test.each([
    ['value-quantity=gt100', ['hr2', 'wt1']],
    ['value-quantity=72', ['hr1']],
    ['value-quantity=72.0', ['hr1']],
    ['value-quantity=gt100|http://unitsofmeasure.org|/min', ['hr2']],
    ['value-quantity=ge72|http://unitsofmeasure.org|/min', ['hr1', 'hr2', 'hr3']],
    ['value-quantity=le88|http://unitsofmeasure.org|/min', ['hr1', 'hr3']],
    ['value-quantity=ne88|http://unitsofmeasure.org|/min', ['hr1', 'hr2']],
    ['value-quantity=70|http://unitsofmeasure.org|kg', ['wt1']], // stored as 70000 g
    ['value-quantity=lt38|http://unitsofmeasure.org|Cel', ['temp1']],
    ['value-quantity=lt100|http://unitsofmeasure.org|[degF]', ['temp1']], // 37.5 Cel = 99.5 degF
    ['value-quantity=gt99.6|http://unitsofmeasure.org|[degF]', []],
    ['value-quantity=1.2|http://unitsofmeasure.org|Hz', ['hr1']], // 72 /min = 1.2 /s
    ['value-quantity=72||/min', ['hr1']],
    ['value-quantity=88||%', ['spo2']],
    ['value-quantity=ap80||/min', ['hr1', 'hr3']],
    ['value-quantity:missing=true', ['bp1', 'str1']],
    ['component-value-quantity=gt140|http://unitsofmeasure.org|mm[Hg]', ['bp1']],
    ['component-value-quantity=lt19|http://unitsofmeasure.org|kPa', ['bp1']], // 95 mmHg = 12.7 kPa
    ['component-code-value-quantity=http://loinc.org|8480-6$gt140', ['bp1']],
    ['component-code-value-quantity=http://loinc.org|8462-4$gt140', []],
    ['combo-code-value-quantity=http://loinc.org|8867-4$gt100|http://unitsofmeasure.org|/min', ['hr2']],
    ['combo-code-value-quantity=8462-4$95', ['bp1']],
    ['code-value-quantity=8867-4$lt80', ['hr1']],
    ['code-value-quantity=8867-4$lt80,8867-4$gt100', ['hr1', 'hr2']],
    ['value-string=normal', ['str1']],
    ['value-string:exact=Normal sinus rhythm', ['str1']],
    ['code-value-string=8601-7$sinus', []],
    ['code-value-string=8601-7$normal', ['str1']],
  ])('Observation?%s', async (q, expected) => {
    expect(await f.ids('Observation', q)).toEqual(expected);
  });

  test.each([
    'value-quantity=abc',
    'value-quantity=gt',
    'value-quantity=100|http://unitsofmeasure.org|notaunit',
    'value-quantity=100|a|b|c',
    'value-quantity=100|http://unitsofmeasure.org|',
    'component-code-value-quantity=8480-6',
    'component-code-value-quantity=8480-6$abc',
  ])('malformed Observation?%s is a 400', async (q) => {
    const e = await f.error('Observation', q);
    expect(e.status).toBe(400);
    expect(e.message).toMatch(/parameter (value-quantity|component-code-value-quantity)/);
  });
});

describe('reference', () => {
  test.each([
    ['Observation', 'subject=Patient/eve', EVE_OBS],
    ['Observation', 'subject=eve', EVE_OBS],
    ['Observation', 'subject=http://localhost:8080/fhir/Patient/eve', EVE_OBS],
    ['Observation', 'subject:Patient=eve', EVE_OBS],
    ['Observation', 'subject:Device=eve', []],
    ['Observation', 'patient=eve', EVE_OBS],
    ['Observation', 'patient=Patient/eve,Patient/adam', [...EVE_OBS, 'spo2', 'wt1'].sort()],
    ['Observation', 'subject:missing=true', ['str1']],
    ['Observation', 'device=Device/dev1', ['hr3']],
    ['Observation', 'subject:identifier=http://hospital.example/mrn|E2', ['hr3']],
    ['Observation', 'subject=http://other.example/fhir/Patient/eve', []],
    ['Device', 'patient=eve', ['dev1']],
    ['Device', 'url=http://devices.example.org/bp/1', ['dev1']],
    ['Device', 'url:below=http://devices.example.org', ['dev1']],
    ['Device', 'url:above=http://devices.example.org/bp/1/extra', ['dev1']],
    ['Device', 'url=http://devices.example.org', []],
  ])('%s?%s', async (type, q, expected) => {
    expect(await f.ids(type, q)).toEqual(expected);
  });

  test.each(['subject=Patient/', 'subject=bad id!', 'subject:Organization=1', 'subject=Patient/a/b/c'])('malformed Observation?%s is a 400', async (q) => {
    const e = await f.error('Observation', q);
    expect(e.status).toBe(400);
    expect(e.message).toContain('subject');
  });

  test(':missing needs true or false', async () => {
    const e = await f.error('Patient', 'given:missing=maybe');
    expect(e.status).toBe(400);
    expect(e.message).toContain('given');
  });
});

describe('chaining and reverse chaining', () => {
  test.each([
    ['Observation', 'subject:Patient.name=evelyn', ['hr3']],
    ['Observation', 'subject.family=holt', EVE_OBS],
    ['Observation', 'patient.identifier=http://hospital.example/mrn|E1', EVE_OBS],
    ['Observation', 'device.patient.name=eve', ['hr3']], // two levels
    ['Observation', 'subject:Patient.gender=male&code=29463-7', ['wt1']],
    ['Patient', '_has:Observation:patient:code=8867-4', ['eve', 'evelyn']],
    ['Patient', '_has:Observation:subject:interpretation=H', ['eve']],
    ['Patient', '_has:Device:patient:identifier=SN-1', ['eve']],
    ['Patient', '_has:Observation:patient:_has:Observation:patient:code=bogus', []],
  ])('%s?%s', async (type, q, expected) => {
    expect(await f.ids(type, q)).toEqual(expected);
  });

  test('an unknown chained parameter is a 400 in strict mode and ignored in lenient mode', async () => {
    expect((await f.error('Observation', 'subject.bogus=1')).message).toContain('subject.bogus');
    const b = await f.search('Observation', 'subject.bogus=1&code=8867-4');
    expect(b.entry?.filter((e) => e.search?.mode === 'match')).toHaveLength(3);
    expect(outcomeOf(b)?.issue[0].diagnostics).toContain('subject.bogus');
  });

  test('malformed _has is a 400', async () => {
    expect((await f.error('Patient', '_has:Observation=1')).status).toBe(400);
  });
});

describe('unknown and unsupported parameters', () => {
  test('lenient: ignored, reported in an outcome entry, left out of the self link', async () => {
    const b = await f.search('Patient', 'bogus=1&gender=female&_text=x', { handling: 'lenient' });
    expect(b.entry?.filter((e) => e.search?.mode === 'match').map((e) => e.resource?.id).sort()).toEqual(['eve', 'evelyn']);
    const oo = outcomeOf(b);
    expect(oo?.issue.map((i) => i.code)).toEqual(['not-supported', 'not-supported']);
    expect(oo?.issue[0].diagnostics).toContain('bogus');
    expect(oo?.issue[1].diagnostics).toContain('_text');
    // The outcome entry has a fullUrl like every searchset entry.
    expect(b.entry?.find((e) => e.search?.mode === 'outcome')?.fullUrl).toMatch(/^urn:uuid:[0-9a-f-]{36}$/);
    const self = b.link?.find((l) => l.relation === 'self')?.url ?? '';
    expect(self).toBe('http://localhost:8080/fhir/Patient?gender=female');
  });

  test('strict: a 400 naming the parameter', async () => {
    const e = await f.error('Patient', 'bogus=1&gender=female', 'strict');
    expect(e.status).toBe(400);
    expect(e.message).toContain('bogus');
  });

  test('unsupported special parameters are reported, not silently ignored', async () => {
    const b = await f.search('Patient', '_text=x');
    expect(outcomeOf(b)?.issue[0].diagnostics).toContain('_text');
  });

  test('a _sort on a parameter that does not exist is a 400 naming it, lenient handling too', async () => {
    for (const handling of ['lenient', 'strict'] as const) {
      const e = await f.error('Patient', '_sort=bogus', handling);
      expect(e.status).toBe(400);
      expect(e.message).toContain('bogus');
    }
  });

  test('an unknown or unsupported modifier is a 400 naming it, lenient handling too (search.html#errors)', async () => {
    for (const [q, handling] of [['given:sounds-like=x', 'lenient'], ['gender:bogus=female', 'lenient'], ['_id:above=x', 'lenient'], ['_include:bogus=Patient:link', 'lenient'], ['given:bogus=x', 'strict']] as const) {
      const e = await f.error('Patient', q, handling);
      expect(e.status).toBe(400);
      expect(e.message).toContain(q.split('=')[0]);
    }
  });

  test.each(['_count=-1', '_count=abc', '_summary=maybe', '_total=some'])('malformed %s is a 400', async (q) => {
    const e = await f.error('Patient', q, 'lenient');
    expect(e.status).toBe(400);
    expect(e.message).toContain(q.split('=')[0]);
  });
});
