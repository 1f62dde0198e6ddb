import type { Observation, ObservationDefinition } from 'fhir/r4';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { classify, DefinitionIndex, deriveObservationInterpretation, stripDerived } from '../../../src/subscriptions/interpretation';

const EXT = 'http://vigil-fhir.org/fhir/StructureDefinition/derived-interpretation';
const hrDef = JSON.parse(readFileSync(path.join(__dirname, '../../../ig/ObservationDefinition-vital-heart-rate.json'), 'utf8')) as ObservationDefinition;
const tempDef = JSON.parse(readFileSync(path.join(__dirname, '../../../ig/ObservationDefinition-vital-body-temperature.json'), 'utf8')) as ObservationDefinition;
const defs = new DefinitionIndex([hrDef, tempDef]);

function hr(value: number, extra: Partial<Observation> = {}): Observation {
  return {
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
    valueQuantity: { value, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
    ...extra,
  };
}
const code = (o: Observation) => o.interpretation?.[0].coding?.[0].code;

describe('derived interpretation', () => {
  it('classifies against critical bounds first, then the normal range', () => {
    const r = { normal: { low: 60, high: 100 }, critical: { low: 40, high: 130 }, source: 'observation-definition' as const };
    expect([30, 50, 80, 110, 140].map((v) => classify(v, r))).toEqual(['LL', 'L', 'N', 'H', 'HH']);
    expect(classify(100, r)).toBe('N'); // bounds are inclusive
    expect(classify(5, { normal: {}, source: 'reference-range' })).toBeUndefined();
  });

  it('uses the ObservationDefinition for the code and marks the result as derived', () => {
    const out = deriveObservationInterpretation(hr(150), defs.lookup);
    expect(code(out)).toBe('HH');
    expect(out.interpretation?.[0].extension).toEqual([{ url: EXT, valueCode: 'observation-definition' }]);
    expect(out.interpretation?.[0].text).toContain('ObservationDefinition/vital-heart-rate');
    expect(code(deriveObservationInterpretation(hr(72), defs.lookup))).toBe('N');
    expect(code(deriveObservationInterpretation(hr(55), defs.lookup))).toBe('L');
  });

  it("prefers the Observation's own referenceRange", () => {
    const own = hr(105, { referenceRange: [{ low: { value: 50, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' }, high: { value: 110, code: '/min', system: 'http://unitsofmeasure.org' } }] });
    const out = deriveObservationInterpretation(own, defs.lookup);
    expect(code(out)).toBe('N');
    expect(out.interpretation?.[0].extension?.[0].valueCode).toBe('reference-range');
  });

  it('converts units with UCUM (Fahrenheit against a Celsius range)', () => {
    const t: Observation = { resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8310-5' }] }, valueQuantity: { value: 104.5, system: 'http://unitsofmeasure.org', code: '[degF]' } };
    expect(code(deriveObservationInterpretation(t, defs.lookup))).toBe('HH');
  });

  it('leaves alone what it cannot or must not judge', () => {
    const given = hr(150, { interpretation: [{ coding: [{ system: 'x', code: 'N' }] }] });
    expect(deriveObservationInterpretation(given, defs.lookup)).toBe(given);
    const noDef: Observation = { ...hr(150), code: { coding: [{ system: 'http://loinc.org', code: '0000-0' }] } };
    expect(deriveObservationInterpretation(noDef, defs.lookup)).toBe(noDef);
    const incommensurable: Observation = { ...hr(150), valueQuantity: { value: 150, system: 'http://unitsofmeasure.org', code: 'kg' } };
    expect(deriveObservationInterpretation(incommensurable, defs.lookup).interpretation).toBeUndefined();
    const comparator: Observation = { ...hr(150), valueQuantity: { value: 150, comparator: '>', code: '/min' } };
    expect(deriveObservationInterpretation(comparator, defs.lookup).interpretation).toBeUndefined();
    const str: Observation = { resourceType: 'Observation', status: 'final', code: hr(1).code, valueString: 'fast' };
    expect(deriveObservationInterpretation(str, defs.lookup)).toBe(str);
  });

  it('derives per component (blood pressure panel)', () => {
    const sys = JSON.parse(readFileSync(path.join(__dirname, '../../../ig/ObservationDefinition-vital-systolic-blood-pressure.json'), 'utf8')) as ObservationDefinition;
    const bp: Observation = {
      resourceType: 'Observation',
      status: 'final',
      code: { coding: [{ system: 'http://loinc.org', code: '85354-9' }] },
      component: [
        { code: { coding: [{ system: 'http://loinc.org', code: '8480-6' }] }, valueQuantity: { value: 190, system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } },
        { code: { coding: [{ system: 'http://loinc.org', code: '9999-9' }] }, valueQuantity: { value: 80, system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } },
      ],
    };
    const out = deriveObservationInterpretation(bp, new DefinitionIndex([sys]).lookup);
    expect(out.interpretation).toBeUndefined();
    expect(out.component?.[0].interpretation?.[0].coding?.[0].code).toBe('HH');
    expect(out.component?.[1].interpretation).toBeUndefined();
  });

  it('re-derives on update: earlier derived interpretations are dropped first', () => {
    const first = deriveObservationInterpretation(hr(150), defs.lookup);
    const updated = { ...first, valueQuantity: { ...first.valueQuantity!, value: 70 } };
    expect(code(deriveObservationInterpretation(stripDerived(updated), defs.lookup))).toBe('N');
    const sent = hr(70, { interpretation: [{ coding: [{ system: 'x', code: 'H' }] }] });
    expect(stripDerived(sent)).toEqual(sent);
  });
});
