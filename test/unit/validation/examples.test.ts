import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Resource } from 'fhir/r4';
import { FhirError } from '../../../src/errors';
import { prepareValidation, validateResource } from '../../../src/resources/validation';

/** Every official HL7 R4 example of the types we serve must be accepted as it is. */
const EXAMPLES_DIR = join(require.resolve('hl7.fhir.r4.examples/package.json'), '..');
const FILES = readdirSync(EXAMPLES_DIR)
  .filter((f) => /^(Patient|Device|Observation)-.*\.json$/.test(f))
  .sort();
const TYPES = ['Patient', 'Device', 'Observation'] as const;

function load(file: string): Resource & Record<string, unknown> {
  return JSON.parse(readFileSync(join(EXAMPLES_DIR, file), 'utf8')) as Resource & Record<string, unknown>;
}

function rejection(resource: unknown, type: string): FhirError {
  try {
    validateResource(resource, { expectedType: type, allowedTypes: TYPES, mode: 'create' });
  } catch (e) {
    if (e instanceof FhirError) return e;
    throw e;
  }
  throw new Error('expected the resource to be rejected');
}

beforeAll(() => {
  prepareValidation(TYPES);
});

test('the package holds the 88 examples of our three types', () => {
  expect(FILES).toHaveLength(88);
});

describe.each(FILES)('%s', (file) => {
  test('passes in create mode', () => {
    const r = load(file);
    const out = validateResource(r, { expectedType: r.resourceType, allowedTypes: TYPES, mode: 'create' });
    expect(out.resourceType).toBe(r.resourceType);
    expect(out.id).toBeUndefined(); // the server assigns the id
  });

  test('passes in update mode with its own id', () => {
    const r = load(file);
    const out = validateResource(r, { expectedType: r.resourceType, allowedTypes: TYPES, mode: 'update', id: r.id });
    expect(out.id).toBe(r.id);
  });
});

/** Broken copies of real examples: each must fail at the named element. */
type Case = [name: string, file: string, mutate: (r: any) => void, code: string, messageCode: string, expression: string];
const BAD: Case[] = [
  ['decimal as string', 'Observation-blood-pressure.json', (r) => (r.component[0].valueQuantity.value = '107'), 'structure', 'MSG_WRONG_TYPE', 'Observation.component[0].valueQuantity.value'],
  ['object where array', 'Patient-example.json', (r) => (r.name = r.name[0]), 'structure', 'MSG_WRONG_TYPE', 'Patient.name'],
  ['string where object', 'Patient-example.json', (r) => (r.name[1] = 'Jim'), 'structure', 'MSG_WRONG_TYPE', 'Patient.name[1]'],
  ['number in string array', 'Patient-example.json', (r) => (r.name[0].given[1] = 7), 'structure', 'MSG_WRONG_TYPE', 'Patient.name[0].given[1]'],
  ['boolean as string', 'Patient-example.json', (r) => (r.active = 'true'), 'structure', 'MSG_WRONG_TYPE', 'Patient.active'],
  ['unknown element at the root', 'Patient-example.json', (r) => (r.nickname = 'Jim'), 'structure', 'MSG_UNKNOWN_ELEMENT', 'Patient.nickname'],
  ['unknown nested element', 'Observation-blood-pressure.json', (r) => (r.component[1].code.coding[0].version2 = '1'), 'structure', 'MSG_UNKNOWN_ELEMENT', 'Observation.component[1].code.coding[0].version2'],
  ['non-R4 meta element', 'Device-example.json', (r) => (r.meta = { project: 'p1' }), 'structure', 'MSG_UNKNOWN_ELEMENT', 'Device.meta.project'],
  ['month 13', 'Patient-example.json', (r) => (r.birthDate = '1974-13-25'), 'value', 'MSG_INVALID_VALUE', 'Patient.birthDate'],
  ['no 30 February', 'Observation-blood-pressure.json', (r) => (r.effectiveDateTime = '2012-02-30'), 'value', 'MSG_INVALID_VALUE', 'Observation.effectiveDateTime'],
  ['time without zone', 'Observation-blood-pressure.json', (r) => (r.effectiveDateTime = '2012-09-17T10:00:00'), 'value', 'MSG_INVALID_VALUE', 'Observation.effectiveDateTime'],
  ['bad date in extension', 'Patient-example.json', (r) => (r._birthDate.extension[0].valueDateTime = '1974-12-25 14:35'), 'value', 'MSG_INVALID_VALUE', 'Patient.birthDate.extension[0].valueDateTime'],
  ['empty given array', 'Patient-example.json', (r) => (r.name[1].given = []), 'structure', 'MSG_EMPTY_VALUE', 'Patient.name[1].given'],
  ['empty string', 'Patient-example.json', (r) => (r.name[0].family = ''), 'value', 'MSG_EMPTY_VALUE', 'Patient.name[0].family'],
  ['empty object', 'Observation-blood-pressure.json', (r) => (r.subject = {}), 'structure', 'MSG_EMPTY_VALUE', 'Observation.subject'],
  ['null element', 'Patient-example.json', (r) => (r.gender = null), 'structure', 'MSG_NULL_VALUE', 'Patient.gender'],
  ['unpaired null in array', 'Patient-example.json', (r) => (r.name[0].given[1] = null), 'structure', 'MSG_NULL_VALUE', 'Patient.name[0].given[1]'],
  ['bad code', 'Patient-example.json', (r) => (r.gender = 'M'), 'code-invalid', 'MSG_INVALID_CODE', 'Patient.gender'],
  ['missing required status', 'Observation-blood-pressure.json', (r) => delete r.status, 'required', 'MSG_REQUIRED_ELEMENT', 'Observation.status'],
  ['missing required code in component', 'Observation-blood-pressure.json', (r) => delete r.component[1].code, 'required', 'MSG_REQUIRED_ELEMENT', 'Observation.component[1].code'],
  ['two value[x] variants', 'Observation-blood-pressure.json', (r) => (r.component[0].valueString = '107'), 'structure', 'MSG_CHOICE_CONFLICT', 'Observation.component[0].valueString'],
  ['integer with a fraction', 'Patient-example.json', (r) => (r.multipleBirthInteger = 1.5), 'structure', 'MSG_WRONG_TYPE', 'Patient.multipleBirthInteger'],
  ['narrative with a script', 'Device-example.json', (r) => (r.text.div = '<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div>'), 'value', 'MSG_INVALID_NARRATIVE', 'Device.text.div'],
  ['extension without url', 'Patient-example.json', (r) => delete r._birthDate.extension[0].url, 'required', 'MSG_REQUIRED_ELEMENT', 'Patient.birthDate.extension[0].url'],
];

describe('broken examples fail at the offending element', () => {
  test.each(BAD)('%s', (_name, file, mutate, code, messageCode, expression) => {
    const r = load(file);
    mutate(r);
    const e = rejection(r, r.resourceType);
    expect(e.status).toBe(422);
    expect(e.code).toBe(code);
    expect(e.messageCode).toBe(messageCode);
    expect(e.expression?.[0]).toBe(expression);
    expect(e.message).toContain(expression);
  });
});
