import type { Device, Observation, Patient } from 'fhir/r4';
import { MATCH_NOTHING, ScopePolicy } from '../../../src/auth/policy';
import { parseScope, type ResourceScope } from '../../../src/auth/scopes';
import { FhirError } from '../../../src/errors';
import { testCriteria } from './criteria-port';

const VITALS_SYS = 'http://terminology.hl7.org/CodeSystem/observation-category';
const VITALS = `category=${VITALS_SYS}|vital-signs`;

function policy(scopes: string[], patient?: string, strict = false): ScopePolicy {
  return new ScopePolicy(
    scopes.map((s) => parseScope(s) as ResourceScope),
    patient,
    testCriteria,
    { strict },
  );
}

function obs(id: string, category: string, subject = 'Patient/p1'): Observation {
  return {
    resourceType: 'Observation',
    id,
    status: 'final',
    category: [{ coding: [{ system: VITALS_SYS, code: category }] }],
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
    subject: { reference: subject },
  };
}
const patient = (id: string): Patient => ({ resourceType: 'Patient', id });
const device = (id: string): Device => ({ resourceType: 'Device', id, patient: { reference: 'Patient/p1' } });

function forbidden(fn: () => void): FhirError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FhirError);
    return e as FhirError;
  }
  throw new Error('expected a 403');
}

describe('ScopePolicy.assertAllowed', () => {
  it('maps v1 read to read, vread, history, search and operations, but not writes', () => {
    const pol = policy(['system/Observation.read']);
    for (const i of ['read', 'vread', 'history', 'search', 'operation'] as const) {
      expect(() => pol.assertAllowed(i, 'Observation')).not.toThrow();
    }
    for (const i of ['create', 'update', 'patch', 'delete'] as const) {
      const e = forbidden(() => pol.assertAllowed(i, 'Observation'));
      expect(e.status).toBe(403);
      expect(e.code).toBe('forbidden');
      expect(e.messageCode).toBe('MSG_AUTH_SCOPE');
      expect(e.message).toContain(`${i} on Observation`);
      expect(e.message).toContain('granted: system/Observation.read');
    }
  });

  it('maps v2 letters one by one', () => {
    const pol = policy(['system/Observation.cu', 'system/Patient.s']);
    expect(() => pol.assertAllowed('create', 'Observation')).not.toThrow();
    expect(() => pol.assertAllowed('update', 'Observation')).not.toThrow();
    expect(() => pol.assertAllowed('patch', 'Observation')).not.toThrow();
    expect(() => pol.assertAllowed('delete', 'Observation')).toThrow(FhirError);
    expect(() => pol.assertAllowed('read', 'Observation')).toThrow(FhirError);
    expect(() => pol.assertAllowed('search', 'Patient')).not.toThrow();
    expect(() => pol.assertAllowed('read', 'Patient')).toThrow(/needs a scope with r on Patient/);
  });

  it('lets a wildcard type cover every type', () => {
    const pol = policy(['user/*.write']);
    expect(() => pol.assertAllowed('delete', 'Device')).not.toThrow();
    expect(() => pol.assertAllowed('read', 'Device')).toThrow(FhirError);
  });

  it('drops patient/ scopes when the token has no patient context', () => {
    const pol = policy(['patient/*.*']);
    expect(() => pol.assertAllowed('read', 'Observation')).toThrow(/granted: \(none\)/);
  });

  it('grants nothing without scopes', () => {
    expect(() => policy([]).assertAllowed('read', 'Patient')).toThrow(FhirError);
  });
});

describe('ScopePolicy.readCond', () => {
  it('is unrestricted for system/ and user/ scopes', () => {
    expect(policy(['system/*.read']).readCond('Observation')).toBeUndefined();
    expect(policy(['user/Observation.rs']).readCond('Observation')).toBeUndefined();
  });

  it('limits patient/ scopes to the compartment, and Patient to its id', () => {
    const pol = policy(['patient/*.read'], 'p1');
    expect(pol.readCond('Observation')).toEqual({ k: 'eq', f: 'comp', v: 'Patient/p1' });
    expect(pol.readCond('Device')).toEqual({ k: 'eq', f: 'comp', v: 'Patient/p1' });
    expect(pol.readCond('Patient')).toEqual({ k: 'eq', f: '_id', v: 'p1' });
  });

  it('ANDs the v2 restriction with the compartment', () => {
    const pol = policy([`patient/Observation.rs?${VITALS}`], 'p1');
    expect(pol.readCond('Observation')).toEqual({
      k: 'and',
      c: [{ k: 'eq', f: 'comp', v: 'Patient/p1' }, { k: 'eq', f: 'idx.category', v: `${VITALS_SYS}|vital-signs` }],
    });
  });

  it('ORs across scopes granting the same type; one unrestricted scope lifts the filter', () => {
    const pol = policy([`patient/Observation.rs?${VITALS}`, 'system/Observation.s?category=laboratory'], 'p1');
    expect(pol.readCond('Observation')).toEqual({
      k: 'or',
      c: [
        { k: 'and', c: [{ k: 'eq', f: 'comp', v: 'Patient/p1' }, { k: 'eq', f: 'idx.category', v: `${VITALS_SYS}|vital-signs` }] },
        { k: 'eq', f: 'idx.category', v: '|laboratory' },
      ],
    });
    expect(policy([`patient/Observation.rs?${VITALS}`, 'system/Observation.r'], 'p1').readCond('Observation')).toBeUndefined();
  });

  it('narrows by interaction when asked', () => {
    const pol = policy(['patient/Observation.r', 'system/Observation.s'], 'p1');
    expect(pol.readCond('Observation', 'read')).toEqual({ k: 'eq', f: 'comp', v: 'Patient/p1' });
    expect(pol.readCond('Observation', 'search')).toBeUndefined();
    expect(pol.readCond('Observation')).toBeUndefined();
  });

  it('matches nothing for types the caller cannot read at all (e.g. _include targets)', () => {
    const pol = policy(['patient/Observation.rs', 'system/Device.c'], 'p1');
    expect(pol.readCond('Patient')).toEqual(MATCH_NOTHING);
    expect(pol.readCond('Device')).toEqual(MATCH_NOTHING);
  });
});

describe('ScopePolicy.canRead / canWrite (same semantics in memory)', () => {
  it('applies the patient rule', () => {
    const pol = policy(['patient/*.cruds'], 'p1');
    expect(pol.canRead(obs('o1', 'vital-signs'), ['Patient/p1'])).toBe(true);
    expect(pol.canRead(obs('o2', 'vital-signs', 'Patient/p2'), ['Patient/p2'])).toBe(false);
    expect(pol.canRead(patient('p1'), ['Patient/p1'])).toBe(true);
    expect(pol.canRead(patient('p2'), ['Patient/p1'])).toBe(false); // by id, never through links
    expect(pol.canRead(device('d1'), ['Patient/p1'])).toBe(true);
    expect(pol.canRead(device('d2'), [])).toBe(false);
    expect(pol.canWrite(obs('o3', 'vital-signs', 'Patient/p2'), ['Patient/p2'])).toBe(false);
    expect(pol.canWrite(obs('o3', 'vital-signs'), ['Patient/p1'], 'create')).toBe(true);
  });

  it('applies the restriction', () => {
    const pol = policy([`patient/Observation.crs?${VITALS}`], 'p1');
    expect(pol.canRead(obs('o1', 'vital-signs'), ['Patient/p1'])).toBe(true);
    expect(pol.canRead(obs('o2', 'laboratory'), ['Patient/p1'])).toBe(false);
    expect(pol.canWrite(obs('o2', 'laboratory'), ['Patient/p1'], 'create')).toBe(false);
    expect(pol.canWrite(obs('o1', 'vital-signs'), ['Patient/p1'], 'create')).toBe(true);
    expect(pol.canWrite(obs('o1', 'vital-signs'), ['Patient/p1'], 'update')).toBe(false);
  });

  it('only counts scopes granting the interaction asked about', () => {
    const pol = policy(['patient/Observation.c', 'system/Observation.u?category=laboratory'], 'p1');
    const foreignVital = obs('o9', 'vital-signs', 'Patient/p2');
    expect(pol.canWrite(foreignVital, ['Patient/p2'], 'update')).toBe(false);
    expect(pol.canWrite(obs('o9', 'laboratory', 'Patient/p2'), ['Patient/p2'], 'update')).toBe(true);
    expect(pol.canWrite(foreignVital, ['Patient/p2'])).toBe(false);
    expect(pol.canRead(obs('o1', 'laboratory'), ['Patient/p1'])).toBe(false);
  });
});

describe('ScopePolicy restrictions the search engine refuses', () => {
  it('drops them (less access) by default', () => {
    const pol = policy(['system/Observation.rs?bogus=1']);
    expect(() => pol.assertAllowed('read', 'Observation')).toThrow(FhirError);
  });
  it('throws the search error when strict (token endpoint)', () => {
    expect(() => policy(['system/Observation.rs?bogus=1'], undefined, true)).toThrow(/Unknown search parameter "bogus"/);
  });
});

describe('restrictions the database can only approximate', () => {
  // A port whose compiled criteria say they are not exact (as the search engine does for some
  // range conditions on FerretDB): enforcing them as a read filter would grant a superset.
  const inexact = {
    ...testCriteria,
    compileCriteria: (type: string, query: string) => ({ ...(testCriteria.compileCriteria(type, query) as object), exact: false }),
  };

  it('are refused at the token endpoint (strict) and grant nothing in a token', () => {
    const scope = parseScope(`patient/Observation.rs?${VITALS}`) as ResourceScope;
    expect(() => new ScopePolicy([scope], 'p1', inexact, { strict: true })).toThrow(/cannot be enforced exactly/);
    const lenient = new ScopePolicy([scope], 'p1', inexact);
    expect(() => lenient.assertAllowed('search', 'Observation')).toThrow(FhirError);
    expect(lenient.canRead(obs('o1', 'vital-signs'), ['Patient/p1'])).toBe(false);
  });
});
