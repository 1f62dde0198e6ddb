import { anonymousPrincipal } from '../../../src/auth/types';
import { elementsFor } from '../../../src/bulk/worker';
import { parseKickoff, type KickoffInput } from '../../../src/bulk/kickoff';
import { paramsFromBody, paramsFromQuery, type KickoffParams } from '../../../src/bulk/parameters';
import { isFhirError } from '../../../src/errors';

/** Kick-off parsing: both forms give the same spec; the IG's rules for _elements and patient. */
const BASE = 'http://example.org/fhir';
const served = ['Patient', 'Observation', 'Device', 'Group'];
const rules = { maxJsonDepth: 64, limits: { arrayElements: 1000, stringLength: 100_000, resourceElements: 10_000 } };

function input(level: KickoffInput['level'], params: KickoffParams): KickoffInput {
  return { level, params, prefer: 'respond-async', served, principal: anonymousPrincipal, baseUrl: BASE, checkFilter: () => undefined, groupId: level === 'group' ? 'g1' : undefined };
}
const get = (q: string) => paramsFromQuery(new URLSearchParams(q));
const post = (parameter: unknown[]) => paramsFromBody(Buffer.from(JSON.stringify({ resourceType: 'Parameters', parameter })), 'application/fhir+json', rules);

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (isFhirError(e)) return `${e.status} ${e.messageCode}`;
    throw e;
  }
  return 'no error';
}

test('GET and POST forms with the same parameters give the same spec', () => {
  const fromGet = parseKickoff(input('patient', get('_type=Patient&_type=Observation&_since=2024-01-01T00:00:00Z&_elements=Observation.status,code'))).spec;
  const fromPost = parseKickoff(
    input(
      'patient',
      post([
        { name: '_type', valueString: 'Patient,Observation' },
        { name: '_since', valueInstant: '2024-01-01T00:00:00Z' },
        { name: '_elements', valueString: 'Observation.status' },
        { name: '_elements', valueString: 'code' },
      ]),
    ),
  ).spec;
  expect(fromPost).toEqual(fromGet);
  expect(fromGet).toMatchObject({ types: ['Patient', 'Observation'], elements: { Observation: ['status'], '*': ['code'] } });
  expect(elementsFor(fromGet, 'Observation')).toEqual(['code', 'status']);
  expect(elementsFor(fromGet, 'Patient')).toEqual(['code']);
  expect(elementsFor({ ...fromGet, elements: { Observation: ['status'] } }, 'Patient')).toBeUndefined();
});

test('patient: POST only, not at system level, Patient references of this server only', () => {
  const ref = (reference: string) => ({ name: 'patient', valueReference: { reference } });
  expect(parseKickoff(input('group', post([ref('Patient/a'), ref(`${BASE}/Patient/b`), ref('Patient/a')]))).spec.patients).toEqual(['a', 'b']);
  expect(codeOf(() => parseKickoff(input('patient', get('patient=Patient/a'))))).toBe('400 MSG_PARAM_UNKNOWN');
  expect(codeOf(() => parseKickoff(input('system', post([ref('Patient/a')]))))).toBe('400 MSG_BULK_PATIENT');
  expect(codeOf(() => parseKickoff(input('patient', post([ref('http://elsewhere.example/fhir/Patient/a')]))))).toBe('400 MSG_BULK_PATIENT');
  expect(codeOf(() => parseKickoff(input('patient', post([ref('Device/a')]))))).toBe('400 MSG_BULK_PATIENT');
});

test('_elements takes root elements only, of exported types', () => {
  expect(codeOf(() => parseKickoff(input('system', get('_elements=Observation.value.unit'))))).toBe('400 MSG_PARAM_INVALID');
  expect(codeOf(() => parseKickoff(input('system', get('_type=Patient&_elements=Observation.status'))))).toBe('400 MSG_PARAM_INVALID');
  expect(codeOf(() => parseKickoff(input('system', get('_elements=Observation.status'))))).toBe('no error');
});

test('what STU 2 does not define, or this server does not keep, is refused by name', () => {
  for (const q of ['_until=2030-01-01T00:00:00Z', 'includeAssociatedData=LatestProvenanceResources', 'organizeOutputBy=Patient', 'allowPartialManifests=true']) {
    expect([q, codeOf(() => parseKickoff(input('system', get(q))))]).toEqual([q, '400 MSG_PARAM_UNKNOWN']);
  }
  expect(codeOf(() => parseKickoff(input('system', get('_since=2024-01-01T00:00:00Z&_since=2024-02-01T00:00:00Z'))))).toBe('400 MSG_PARAM_INVALID');
});

test('a POST body is a Parameters resource with the IG\'s value types', () => {
  expect(codeOf(() => post([{ name: '_since', valueDateTime: '2024-01-01T00:00:00Z' }]))).toBe('400 MSG_BULK_PARAMETERS');
  expect(codeOf(() => post([{ name: '_type', valueString: 'Patient', valueCode: 'x' }]))).toBe('400 MSG_BULK_PARAMETERS');
  expect(codeOf(() => post([{ name: 'patient', valueReference: { display: 'no reference' } }]))).toBe('400 MSG_BULK_PARAMETERS');
  expect(codeOf(() => post([{ valueString: 'nameless' }]))).toBe('400 MSG_BULK_PARAMETERS');
  expect(codeOf(() => paramsFromBody(Buffer.from('{"resourceType":"Bundle"}'), 'application/json', rules))).toBe('400 MSG_BULK_PARAMETERS');
  expect(codeOf(() => paramsFromBody(Buffer.from('{}'), 'text/plain', rules))).toBe('415 MSG_UNSUPPORTED_MEDIA_TYPE');
  expect(codeOf(() => paramsFromBody(Buffer.alloc(0), 'application/fhir+json', rules))).toBe('400 MSG_BODY_MISSING');
});
