import type { Observation, OperationOutcome, Patient } from 'fhir/r4';
import { FhirError } from '../../../src/errors';
import {
  prepareValidation,
  validateOperation,
  validateResource,
  type ValidateOptions,
} from '../../../src/resources/validation';
import { narrativeProblem } from '../../../src/resources/validation/compile';
import { MAX_DEPTH } from '../../../src/resources/validation/json-rules';

const TYPES = ['Patient', 'Device', 'Observation'];

function heartRate(): Observation {
  return {
    resourceType: 'Observation',
    status: 'final',
    category: [
      {
        coding: [
          { system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs', display: 'Vital Signs' },
        ],
      },
    ],
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }], text: 'Heart rate' },
    subject: { reference: 'Patient/p1' },
    device: { reference: 'Device/d1' },
    effectiveDateTime: '2024-05-01T10:00:00Z',
    valueQuantity: { value: 72, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
  };
}

function rejection(resource: unknown, opts: Partial<ValidateOptions> = {}): FhirError {
  try {
    validateResource(resource, { allowedTypes: TYPES, mode: 'create', ...opts });
  } catch (e) {
    if (e instanceof FhirError) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

beforeAll(() => {
  prepareValidation(TYPES);
});

describe('the envelope: body, resourceType, id', () => {
  test.each([
    ['null', null],
    ['an array', [heartRate()]],
    ['a string', 'Observation'],
    ['a number', 42],
  ])('a body that is %s is a 400', (_n, body) => {
    const e = rejection(body, { expectedType: 'Observation' });
    expect(e.status).toBe(400);
    expect(e.messageCode).toBe('MSG_RESOURCE_REQUIRED');
  });

  test.each([
    ['missing', undefined],
    ['not a string', 7],
    ['empty', ''],
  ])('a resourceType that is %s is a 400', (_n, rt) => {
    const body = { ...heartRate(), resourceType: rt };
    const e = rejection(body, { expectedType: 'Observation' });
    expect(e.status).toBe(400);
    expect(e.messageCode).toBe('MSG_RESOURCE_TYPE_MISSING');
  });

  test('a resourceType that is not the URL type is a 400 MSG_RESOURCE_TYPE_MISMATCH', () => {
    const e = rejection({ resourceType: 'Patient' }, { expectedType: 'Observation' });
    expect(e.status).toBe(400);
    expect(e.code).toBe('invalid');
    expect(e.messageCode).toBe('MSG_RESOURCE_TYPE_MISMATCH');
    expect(e.message).toContain("'Patient'");
    expect(e.message).toContain("'Observation'");
  });

  test('a type that is not FHIR R4 is a 422 (the content is wrong, not the endpoint)', () => {
    const e = rejection({ resourceType: 'Vitals' });
    expect(e.status).toBe(422);
    expect(e.messageCode).toBe('MSG_UNKNOWN_TYPE');
    // Medplum's own types in the shipped schema are not R4 either.
    expect(rejection({ resourceType: 'Project', name: 'x' }).messageCode).toBe('MSG_UNKNOWN_TYPE');
  });

  test('an R4 type the server does not serve is a 404', () => {
    const e = rejection({ resourceType: 'Encounter', status: 'planned', class: { code: 'AMB' } });
    expect(e.status).toBe(404);
    expect(e.code).toBe('not-supported');
    expect(e.messageCode).toBe('MSG_RESOURCE_TYPE_NOT_SUPPORTED');
  });

  test('without allowedTypes every R4 type is validated', () => {
    const enc = validateResource({ resourceType: 'Encounter', status: 'planned', class: { code: 'AMB' } }, { mode: 'create' });
    expect(enc.resourceType).toBe('Encounter');
  });

  test('create ignores the client id and the server-owned meta, and keeps the rest of meta', () => {
    const body = {
      ...heartRate(),
      id: 'not a valid id!',
      meta: { versionId: 'x y', lastUpdated: 'yesterday', tag: [{ system: 'urn:t', code: 'a' }] },
    };
    const out = validateResource(body, { expectedType: 'Observation', allowedTypes: TYPES, mode: 'create' });
    expect(out.id).toBeUndefined();
    expect(out.meta).toEqual({ tag: [{ system: 'urn:t', code: 'a' }] });
    expect(body.id).toBe('not a valid id!'); // the input is not mutated
    expect(body.meta.versionId).toBe('x y');
  });

  test('meta left empty by the server-owned fields is dropped', () => {
    const out = validateResource(
      { ...heartRate(), meta: { versionId: '3', lastUpdated: '2024-01-01T00:00:00Z' } },
      { allowedTypes: TYPES, mode: 'create' },
    );
    expect(out.meta).toBeUndefined();
  });

  test('update needs a body id equal to the URL id', () => {
    const missing = rejection(heartRate(), { expectedType: 'Observation', mode: 'update', id: 'o1' });
    expect([missing.status, missing.messageCode, missing.expression]).toEqual([400, 'MSG_RESOURCE_ID_MISSING', ['Observation.id']]);

    const mismatch = rejection({ ...heartRate(), id: 'o2' }, { expectedType: 'Observation', mode: 'update', id: 'o1' });
    expect([mismatch.status, mismatch.messageCode, mismatch.expression]).toEqual([400, 'MSG_RESOURCE_ID_MISMATCH', ['Observation.id']]);

    const numeric = rejection({ ...heartRate(), id: 1 }, { expectedType: 'Observation', mode: 'update', id: '1' });
    expect([numeric.status, numeric.messageCode, numeric.message]).toEqual([400, 'MSG_RESOURCE_ID_MISMATCH', expect.stringContaining('id 1 does')]);

    const ok = validateResource({ ...heartRate(), id: 'o1' }, { expectedType: 'Observation', allowedTypes: TYPES, mode: 'update', id: 'o1' });
    expect(ok.id).toBe('o1');
  });

  test.each([['has space'], ['a'.repeat(65)], ['ü'], ['']])('update with the invalid id %j is a 400', (id) => {
    const e = rejection({ ...heartRate(), id }, { expectedType: 'Observation', mode: 'update', id });
    expect(e.status).toBe(400);
    expect(e.messageCode).toBe('MSG_ID_INVALID');
  });

  test('ids of 64 characters from [A-Za-z0-9-.] are fine', () => {
    const id = `Ab9-.${'x'.repeat(59)}`;
    expect(validateResource({ ...heartRate(), id }, { allowedTypes: TYPES, mode: 'update', id }).id).toBe(id);
  });

  test('update ignores client meta.versionId (If-Match is the way to say the version)', () => {
    const out = validateResource(
      { ...heartRate(), id: 'o1', meta: { versionId: '99', source: 'urn:device:1' } },
      { expectedType: 'Observation', allowedTypes: TYPES, mode: 'update', id: 'o1' },
    );
    expect(out.meta).toEqual({ source: 'urn:device:1' });
  });
});

describe('content errors: 422 with the FHIRPath of the element', () => {
  const cases: [string, (o: Record<string, any>) => void, string, string, string][] = [
    ['value as string', (o) => (o.valueQuantity.value = '72'), 'Observation.valueQuantity.value', 'MSG_WRONG_TYPE', 'decimal'],
    ['unknown element', (o) => (o.valueQuantity.precision = 2), 'Observation.valueQuantity.precision', 'MSG_UNKNOWN_ELEMENT', 'Quantity'],
    ['Reference.resource (a Medplum addition)', (o) => (o.subject.resource = { resourceType: 'Patient' }), 'Observation.subject.resource', 'MSG_UNKNOWN_ELEMENT', 'Reference'],
    ['bad instant', (o) => (o.issued = '2024-05-01'), 'Observation.issued', 'MSG_INVALID_VALUE', 'instant'],
    ['29 February of a common year', (o) => (o.effectiveDateTime = '2023-02-29'), 'Observation.effectiveDateTime', 'MSG_INVALID_VALUE', 'no such date'],
    ['bad uri', (o) => (o.code.coding[0].system = 'http://loinc .org'), 'Observation.code.coding[0].system', 'MSG_INVALID_VALUE', 'uri'],
    ['code with double space', (o) => (o.code.coding[0].code = '8867  4'), 'Observation.code.coding[0].code', 'MSG_INVALID_VALUE', 'code'],
    ['whitespace-only string', (o) => (o.code.text = '   '), 'Observation.code.text', 'MSG_EMPTY_VALUE', 'Empty string'],
    ['empty category', (o) => (o.category = []), 'Observation.category', 'MSG_EMPTY_VALUE', 'Empty array'],
    ['element with only an id', (o) => (o.subject = { id: 's' }), 'Observation.subject', 'MSG_EMPTY_VALUE', 'ele-1'],
    ['array in array', (o) => (o.category = [[o.category[0]]]), 'Observation.category[0]', 'MSG_WRONG_TYPE', 'Array inside an array'],
    ['effective[x] twice', (o) => (o.effectivePeriod = { start: '2024-05-01' }), 'Observation.effectivePeriod', 'MSG_CHOICE_CONFLICT', 'effectiveDateTime, effectivePeriod'],
    ['value[x] twice via primitive extension', (o) => (o._valueString = { extension: [{ url: 'urn:x', valueBoolean: true }] }), 'Observation.valueString', 'MSG_CHOICE_CONFLICT', 'valueQuantity, valueString'],
    ['status as _status only is fine, but an unknown code is not', (o) => (o.status = 'done'), 'Observation.status', 'MSG_INVALID_CODE', 'final'],
    ['positiveInt zero', (o) => (o.valueSampledData = { origin: { value: 0 }, period: 10, dimensions: 0, data: '1 2' }, delete o.valueQuantity), 'Observation.valueSampledData.dimensions', 'MSG_INVALID_VALUE', 'positiveInt'],
    ['required primitive missing deep down', (o) => (o.valueSampledData = { origin: { value: 0 }, dimensions: 1 }, delete o.valueQuantity), 'Observation.valueSampledData.period', 'MSG_REQUIRED_ELEMENT', "'period'"],
    ['narrative without the xhtml namespace', (o) => (o.text = { status: 'generated', div: '<div>hi</div>' }), 'Observation.text.div', 'MSG_INVALID_NARRATIVE', 'XHTML'],
    ['narrative with an event handler', (o) => (o.text = { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml"><img src="x" onerror="alert(1)"/></div>' }), 'Observation.text.div', 'MSG_INVALID_NARRATIVE', 'event handlers'],
    ['contained resource with a bad element', (o) => ((o.contained = [{ resourceType: 'Device', id: 'd', status: 'on' }]), (o.device = { reference: '#d' })), 'Observation.contained[0].status', 'MSG_INVALID_CODE', 'active'],
    ['contained resource of an unknown type', (o) => ((o.contained = [{ resourceType: 'Gadget', id: 'd' }]), (o.device = { reference: '#d' })), 'Observation.contained[0].resourceType', 'MSG_UNKNOWN_TYPE', 'Gadget'],
    ['contained resource without resourceType', (o) => ((o.contained = [{ id: 'd', status: 'active' }]), (o.device = { reference: '#d' })), 'Observation.contained[0].resourceType', 'MSG_RESOURCE_TYPE_MISSING', 'resourceType'],
    ['null outside an array', (o) => (o.subject = null), 'Observation.subject', 'MSG_NULL_VALUE', 'null'],
  ];

  test.each(cases)('%s', (_n, mutate, expression, messageCode, inMessage) => {
    const o = heartRate() as unknown as Record<string, any>;
    mutate(o);
    const e = rejection(o, { expectedType: 'Observation' });
    expect(e.status).toBe(422);
    expect(e.messageCode).toBe(messageCode);
    expect(e.expression?.[0]).toBe(expression);
    expect(e.message).toContain(inMessage);
  });

  test('one 422 names every problem, not only the first', () => {
    const o = { ...heartRate(), status: 'done', issued: 'today', colour: 'red' } as unknown;
    const e = rejection(o);
    expect(e.expression).toEqual(expect.arrayContaining(['Observation.status', 'Observation.issued', 'Observation.colour']));
    expect(e.message).toMatch(/and 2 more/);
  });

  test('the number of reported problems is capped', () => {
    const p: Patient = { resourceType: 'Patient', name: Array.from({ length: 200 }, () => ({ given: [''] })) };
    const e = rejection(p);
    expect(e.expression?.length).toBeLessThanOrEqual(20);
  });

  test('deep nesting is refused, not a stack overflow', () => {
    let ext: Record<string, unknown> = { url: 'urn:x', valueString: 'leaf' };
    for (let i = 0; i < MAX_DEPTH + 10; i++) ext = { url: 'urn:x', extension: [ext] };
    const e = rejection({ ...heartRate(), extension: [ext] });
    expect(e.status).toBe(422);
    expect(e.messageCode).toBe('MSG_TOO_DEEP');
  });
});

describe('R4 invariants the schema cannot state', () => {
  const cases: [string, (o: Record<string, any>) => void, string, string][] = [
    ['ext-1: value and nested extensions', (o) => (o.extension = [{ url: 'urn:x', valueString: 'a', extension: [{ url: 'urn:y', valueBoolean: true }] }]), 'Observation.extension[0]', 'ext-1'],
    ['ext-1: neither value nor extensions', (o) => (o.extension = [{ url: 'urn:x' }]), 'Observation.extension[0]', 'ext-1'],
    ['qty-3: unit code without system', (o) => delete o.valueQuantity.system, 'Observation.valueQuantity.system', 'qty-3'],
    ['per-1: period ending before it starts', (o) => ((o.effectivePeriod = { start: '2024-05-01T10:00:00Z', end: '2024-05-01T11:00:00+02:00' }), delete o.effectiveDateTime), 'Observation.effectivePeriod.end', 'per-1'],
    ['obs-6: dataAbsentReason beside a value', (o) => (o.dataAbsentReason = { text: 'sensor off' }), 'Observation.dataAbsentReason', 'obs-6'],
    ['obs-7: a component repeating the code of a valued Observation', (o) => (o.component = [{ code: { coding: [o.code.coding[0]] }, valueQuantity: { value: 1 } }]), 'Observation.component', 'obs-7'],
    ['obs-3: reference range with no bounds or text', (o) => (o.referenceRange = [{ type: { text: 'normal' } }]), 'Observation.referenceRange[0]', 'obs-3'],
    ['rng-2: low above high', (o) => ((o.valueRange = { low: { value: 10, system: 'http://unitsofmeasure.org', code: '/min' }, high: { value: 5, system: 'http://unitsofmeasure.org', code: '/min' } }), delete o.valueQuantity), 'Observation.valueRange.high', 'rng-2'],
    ['rat-1: numerator without denominator', (o) => ((o.valueRatio = { numerator: { value: 1 } }), delete o.valueQuantity), 'Observation.valueRatio', 'rat-1'],
    ['tim-2: period without unit', (o) => ((o.effectiveTiming = { repeat: { frequency: 1, period: 1 } }), delete o.effectiveDateTime), 'Observation.effectiveTiming.repeat.periodUnit', 'tim-2'],
    ['ref-1: local reference to nothing', (o) => (o.subject = { reference: '#p' }), 'Observation.subject.reference', 'ref-1'],
    ['dom-3: contained resource nobody refers to', (o) => (o.contained = [{ resourceType: 'Device', id: 'd' }]), 'Observation.contained[0]', 'dom-3'],
    ['dom-2: contained resource with its own contained', (o) => ((o.contained = [{ resourceType: 'Device', id: 'd', contained: [{ resourceType: 'Device', id: 'e' }] }]), (o.device = { reference: '#d' })), 'Observation.contained[0].contained', 'dom-2'],
    ['dom-4: contained resource with a versionId', (o) => ((o.contained = [{ resourceType: 'Device', id: 'd', meta: { versionId: '1' } }]), (o.device = { reference: '#d' })), 'Observation.contained[0].meta', 'dom-4'],
    ['dom-5: contained resource with a security label', (o) => ((o.contained = [{ resourceType: 'Device', id: 'd', meta: { security: [{ code: 'R' }] } }]), (o.device = { reference: '#d' })), 'Observation.contained[0].meta', 'dom-5'],
  ];

  test.each(cases)('%s', (_n, mutate, expression, key) => {
    const o = heartRate() as unknown as Record<string, any>;
    mutate(o);
    const e = rejection(o, { expectedType: 'Observation' });
    expect(e.status).toBe(422);
    expect(e.code).toBe('invariant');
    expect(e.messageCode).toBe('MSG_INVARIANT');
    expect(e.expression?.[0]).toBe(expression);
    expect(e.message).toContain(`Constraint ${key} failed`);
  });

  test.each([
    ['pat-1: contact with only a relationship', { contact: [{ relationship: [{ text: 'friend' }] }] }, 'Patient.contact[0]'],
    ['cpt-2: telecom value without system', { telecom: [{ value: '555-0100' }] }, 'Patient.telecom[0].system'],
    ['att-1: photo data without contentType', { photo: [{ data: 'aGk=' }] }, 'Patient.photo[0].contentType'],
  ])('%s', (_n, fields, expression) => {
    const e = rejection({ resourceType: 'Patient', ...fields });
    expect(e.code).toBe('invariant');
    expect(e.expression?.[0]).toBe(expression);
  });

  test('contained resources referred to, or referring to their container, are fine', () => {
    const o = { ...heartRate(), contained: [{ resourceType: 'Device', id: 'd' }], device: { reference: '#d' } };
    expect(validateResource(o, { mode: 'create', allowedTypes: TYPES }).resourceType).toBe('Observation');
    const back = {
      resourceType: 'Patient',
      contained: [{ resourceType: 'RelatedPerson', id: 'r', patient: { reference: '#' } }],
    };
    expect(validateResource(back, { mode: 'create', allowedTypes: TYPES }).resourceType).toBe('Patient');
  });

  test('periods and ranges the invariants cannot order are not refused', () => {
    const o = { ...heartRate(), effectivePeriod: { start: '2024-05', end: '2024-05-01T10:00:00Z' } } as Record<string, unknown>;
    delete o.effectiveDateTime;
    expect(validateResource(o, { mode: 'create', allowedTypes: TYPES }).resourceType).toBe('Observation');
  });
});

describe('strings and numbers as R4 means them', () => {
  const named = (text: string): unknown => ({ resourceType: 'Patient', name: [{ text }] });

  test.each([
    ['a no-break space', 'Jean\u00A0Paul'],
    ['an ideographic space', '山田\u3000太郎'],
    ['tabs and line breaks', 'line one\r\n\tline two'],
    ['emoji', 'Jo 🙂'],
  ])('a string with %s is fine', (_n, text) => {
    expect(validateResource(named(text), { mode: 'create', allowedTypes: TYPES }).resourceType).toBe('Patient');
  });

  test.each([
    ['a control character', 'Jo\u0001'],
    ['a vertical tab', 'Jo\u000Bhn'],
    ['a form feed', 'Jo\u000Chn'],
  ])('a string with %s is refused', (_n, text) => {
    const e = rejection(named(text));
    expect(e.messageCode).toBe('MSG_INVALID_VALUE');
    expect(e.expression).toEqual(['Patient.name[0].text']);
  });

  test('a code may hold single spaces but not doubled or other whitespace', () => {
    const withCode = (code: string): unknown => ({ ...heartRate(), code: { coding: [{ system: 'urn:x', code }] } });
    expect(validateResource(withCode('a b'), { mode: 'create', allowedTypes: TYPES }).resourceType).toBe('Observation');
    expect(validateResource(withCode('a\u00A0b'), { mode: 'create', allowedTypes: TYPES }).resourceType).toBe('Observation');
    expect(rejection(withCode('a\tb')).expression).toEqual(['Observation.code.coding[0].code']);
    expect(rejection(withCode(' a')).expression).toEqual(['Observation.code.coding[0].code']);
  });

  test('a number JSON cannot represent as a double is refused, not stored as null', () => {
    const o = JSON.parse('{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1e400}}') as unknown;
    const e = rejection(o);
    expect(e.messageCode).toBe('MSG_INVALID_VALUE');
    expect(e.expression).toEqual(['Observation.valueQuantity.value']);
  });

  test('integers keep to 32 bits', () => {
    const p = (n: number): unknown => ({ resourceType: 'Patient', multipleBirthInteger: n });
    expect(validateResource(p(2147483647), { mode: 'create', allowedTypes: TYPES }).resourceType).toBe('Patient');
    expect(rejection(p(2147483648)).expression).toEqual(['Patient.multipleBirthInteger']);
  });

  test('a __proto__ key is an unknown element, and pollutes nothing', () => {
    const o = JSON.parse('{"resourceType":"Patient","__proto__":{"polluted":true}}') as unknown;
    const e = rejection(o);
    expect(e.messageCode).toBe('MSG_UNKNOWN_ELEMENT');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('narrative', () => {
  const NS = 'xmlns="http://www.w3.org/1999/xhtml"';
  test.each([
    [`<div ${NS}><p>Heart rate <b>72</b> /min, on target = yes</p></div>`],
    [`<div ${NS}><a href="http://example.org/x">link</a><img src="#pic" alt="x"/><span style="color:red">!</span></div>`],
    [`  <div class="n" ${NS}>javascript: is just text here</div>`],
  ])('%s is fine', (div) => {
    expect(narrativeProblem(div)).toBeUndefined();
  });

  test.each([
    ['<div><p>x</p></div>', 'XHTML namespace'],
    ['<p xmlns="http://www.w3.org/1999/xhtml">x</p>', 'XHTML namespace'],
    [`<div ${NS}><script>alert(1)</script></div>`, 'scripts'],
    [`<div ${NS}><SCRIPT src="x"></SCRIPT></div>`, 'scripts'],
    [`<div ${NS}><iframe src="http://x"></iframe></div>`, 'scripts'],
    [`<div ${NS}><p onclick="x()">x</p></div>`, 'event handlers'],
    [`<div ${NS}><a href=" javascript:alert(1)">x</a></div>`, 'scripts'],
    [`<div ${NS}><style>p{}</style></div>`, 'styles'],
  ])('%s is refused', (div, why) => {
    expect(narrativeProblem(div)).toContain(why);
  });

  test('a hostile narrative of 200k "<" is answered (the scan is linear)', () => {
    expect(narrativeProblem(`<div ${NS}>${'<'.repeat(200_000)}`)).toBeUndefined();
  });
});

describe('$validate on garbage never throws', () => {
  test.each([
    ['contained null', { contained: [null] }],
    ['contained string', { contained: ['x'] }],
    ['contained array', { contained: [[{ resourceType: 'Device' }]] }],
    ['valueQuantity null', { valueQuantity: null }],
    ['extension items null', { extension: [null, 'x', 3] }],
    ['code as array', { code: [{ text: 'x' }] }],
    ['subject as number', { subject: 5 }],
    ['text as string', { text: '<div/>' }],
  ])('%s', (_n, patch) => {
    const oo = validateOperation({ ...heartRate(), ...patch }, { mode: 'validate', allowedTypes: TYPES });
    expect(oo.issue.length).toBeGreaterThan(0);
    expect(oo.issue.every((i) => i.severity === 'error' && i.expression?.length === 1)).toBe(true);
  });
});

describe('primitive extensions and null', () => {
  const patient = (name: Record<string, unknown>): unknown => ({ resourceType: 'Patient', name: [name] });
  const ext = { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier', valueCode: 'CL' }] };

  test('null in a primitive array is fine when the _array carries the extension', () => {
    const out = validateResource(patient({ given: ['Jim', null], _given: [null, ext] }), { mode: 'create', allowedTypes: TYPES });
    expect(out.resourceType).toBe('Patient');
  });

  test('a primitive may be given by its extension alone', () => {
    const out = validateResource({ resourceType: 'Patient', _birthDate: ext }, { mode: 'create', allowedTypes: TYPES });
    expect(out.resourceType).toBe('Patient');
  });

  test.each([
    ['null with no _given', { given: ['Jim', null] }, 'Patient.name[0].given[1]', 'MSG_NULL_VALUE'],
    ['null on both sides', { given: ['Jim', null], _given: [null, null] }, 'Patient.name[0].given[1]', 'MSG_NULL_VALUE'],
    ['arrays of different lengths', { given: ['Jim', 'Bob'], _given: [null, ext, ext] }, 'Patient.name[0].given', 'MSG_PAIR_LENGTH'],
    ['an _given item of the wrong type', { given: ['Jim'], _given: ['x'] }, 'Patient.name[0].given[0]', 'MSG_WRONG_TYPE'],
  ])('%s', (_n, name, expression, messageCode) => {
    const e = rejection(patient(name));
    expect(e.status).toBe(422);
    expect(e.messageCode).toBe(messageCode);
    expect(e.expression?.[0]).toBe(expression);
  });
});

describe('$validate (validateOperation)', () => {
  const opts: ValidateOptions = { expectedType: 'Observation', allowedTypes: TYPES, mode: 'validate' };

  test('a valid resource gives one information issue "All OK"', () => {
    const oo = validateOperation(heartRate(), opts);
    expect(oo).toEqual<OperationOutcome>({
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'information', code: 'informational', diagnostics: 'All OK' }],
    });
  });

  test('an invalid resource gives one error issue per problem, never a throw', () => {
    const o = { ...heartRate(), status: 'done', issued: 'today', colour: 'red', category: [] };
    const oo = validateOperation(o, opts);
    expect(oo.issue.every((i) => i.severity === 'error')).toBe(true);
    const byPath = Object.fromEntries(oo.issue.map((i) => [i.expression?.[0], i]));
    expect(Object.keys(byPath).sort()).toEqual(['Observation.category', 'Observation.colour', 'Observation.issued', 'Observation.status']);
    expect(byPath['Observation.colour'].code).toBe('structure');
    expect(byPath['Observation.colour'].details?.coding?.[0].code).toBe('MSG_UNKNOWN_ELEMENT');
    expect(byPath['Observation.status'].code).toBe('code-invalid');
    expect(byPath['Observation.issued'].code).toBe('value');
  });

  test('400-class problems become an issue too', () => {
    const oo = validateOperation({ resourceType: 'Patient' }, opts);
    expect(oo.issue).toHaveLength(1);
    expect(oo.issue[0].details?.coding?.[0].code).toBe('MSG_RESOURCE_TYPE_MISMATCH');
    expect(validateOperation('nope', opts).issue[0].details?.coding?.[0].code).toBe('MSG_RESOURCE_REQUIRED');
  });

  test('validate mode checks the id and meta as given', () => {
    const oo = validateOperation({ ...heartRate(), id: 'bad id', meta: { lastUpdated: 'now' } }, opts);
    expect(oo.issue.map((i) => i.expression?.[0]).sort()).toEqual(['Observation.id', 'Observation.meta.lastUpdated']);
  });

  test('a Parameters body is unwrapped, and its mode parameter applies', () => {
    const wrapped = {
      resourceType: 'Parameters',
      parameter: [
        { name: 'resource', resource: { ...heartRate(), id: 'o2' } },
        { name: 'mode', valueCode: 'update' },
      ],
    };
    const oo = validateOperation(wrapped, { ...opts, id: 'o1' });
    expect(oo.issue[0].details?.coding?.[0].code).toBe('MSG_RESOURCE_ID_MISMATCH');
    const ok = validateOperation({ resourceType: 'Parameters', parameter: [{ name: 'resource', resource: heartRate() }] }, opts);
    expect(ok.issue[0].diagnostics).toBe('All OK');
    const empty = validateOperation({ resourceType: 'Parameters', parameter: [{ name: 'mode', valueCode: 'create' }] }, opts);
    expect(empty.issue[0].details?.coding?.[0].code).toBe('MSG_RESOURCE_REQUIRED');
    for (const parameter of [null, 'x', [null, 3]]) {
      const junk = validateOperation({ resourceType: 'Parameters', parameter }, opts);
      expect(junk.issue[0].details?.coding?.[0].code).toBe('MSG_RESOURCE_REQUIRED');
    }
  });
});
