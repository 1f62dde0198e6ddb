import {
  formatScope,
  grantScopes,
  intersectScope,
  parseScope,
  ScopeSyntaxError,
  type ResourceScope,
} from '../../../src/auth/scopes';

const VITALS = 'category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs';

function p(s: string): ResourceScope {
  const r = parseScope(s);
  if (!r) throw new Error(`not a resource scope: ${s}`);
  return r;
}

describe('parseScope', () => {
  it.each([
    ['patient/Observation.read', { context: 'patient', type: 'Observation', perms: ['r', 's'], version: 1 }],
    ['user/*.write', { context: 'user', type: '*', perms: ['c', 'u', 'd'], version: 1 }],
    ['system/*.*', { context: 'system', type: '*', perms: ['c', 'r', 'u', 'd', 's'], version: 1 }],
    ['system/Patient.cruds', { context: 'system', type: 'Patient', perms: ['c', 'r', 'u', 'd', 's'], version: 2 }],
    ['patient/Device.rs', { context: 'patient', type: 'Device', perms: ['r', 's'], version: 2 }],
    ['user/Observation.c', { context: 'user', type: 'Observation', perms: ['c'], version: 2 }],
    [
      `patient/Observation.rs?${VITALS}`,
      { context: 'patient', type: 'Observation', perms: ['r', 's'], query: VITALS, version: 2 },
    ],
  ])('parses %s', (raw, expected) => {
    expect(parseScope(raw)).toEqual(expected);
  });

  it.each(['openid', 'fhirUser', 'launch/patient', 'offline_access', 'online_access'])(
    'returns undefined for the non-resource scope %s',
    (raw) => {
      expect(parseScope(raw)).toBeUndefined();
    },
  );

  it.each([
    ['patient/Observation', /expected <context>\/<type>.<permissions>/],
    ['patient/.read', /expected/],
    ['system/observation.read', /not a resource type/],
    ['system/Obs-ervation.read', /not a resource type/],
    ['system/*.rw', /permissions must be/],
    ['system/*.sr', /permissions must be/],
    ['system/*.', /permissions must be/],
    ['system/*.READ', /permissions must be/],
    ['system/Observation.read?category=x', /need SMART v2/],
    ['system/*.rs?category=x', /concrete resource type/],
    ['system/Observation.rs?', /empty restriction/],
  ])('refuses the malformed scope %s', (raw, reason) => {
    expect(() => parseScope(raw)).toThrow(ScopeSyntaxError);
    expect(() => parseScope(raw)).toThrow(reason);
  });
});

describe('formatScope', () => {
  it('keeps the v1 dialect when the letters map to a v1 word', () => {
    expect(formatScope(p('patient/Observation.read'))).toBe('patient/Observation.read');
    expect(formatScope(p('user/*.write'))).toBe('user/*.write');
    expect(formatScope(p('system/*.*'))).toBe('system/*.*');
  });
  it('writes v2 letters in canonical order, with the restriction', () => {
    expect(formatScope(p(`patient/Observation.rs?${VITALS}`))).toBe(`patient/Observation.rs?${VITALS}`);
    expect(formatScope({ ...p('system/*.read'), perms: ['r'] })).toBe('system/*.r');
  });
});

describe('intersectScope', () => {
  it('narrows the type and the letters', () => {
    expect(formatScope(intersectScope(p('system/*.cruds'), p('system/Observation.rs'))!)).toBe('system/Observation.rs');
    expect(formatScope(intersectScope(p('system/Observation.*'), p('system/*.read'))!)).toBe('system/Observation.read');
  });
  it('keeps both restrictions (AND)', () => {
    const r = intersectScope(p('patient/Observation.rs?code=8867-4'), p(`patient/Observation.rs?${VITALS}`))!;
    expect(r.query).toBe(`code=8867-4&${VITALS}`);
  });
  it('keeps the allowed restriction when the request has none', () => {
    expect(intersectScope(p('patient/Observation.read'), p(`patient/*.rs`))!.query).toBeUndefined();
    expect(intersectScope(p('patient/Observation.rs'), p(`patient/Observation.r?${VITALS}`))).toEqual({
      context: 'patient',
      type: 'Observation',
      perms: ['r'],
      query: VITALS,
      version: 2,
    });
  });
  it('gives nothing across contexts, types or letters', () => {
    expect(intersectScope(p('system/Observation.rs'), p('patient/Observation.rs'))).toBeUndefined();
    expect(intersectScope(p('system/Patient.rs'), p('system/Observation.rs'))).toBeUndefined();
    expect(intersectScope(p('system/Observation.cud'), p('system/Observation.rs'))).toBeUndefined();
  });
});

describe('grantScopes (requested ∩ allowed)', () => {
  const allowed = ['system/Observation.rs', 'system/Device.read', `patient/Observation.rs?${VITALS}`];

  it('grants what is allowed and narrows wildcards', () => {
    const g = grantScopes(['system/*.cruds'], allowed, false);
    expect(g.granted).toEqual(['system/Observation.rs', 'system/Device.rs']);
  });
  it('refuses escalation: write when only read is allowed', () => {
    const g = grantScopes(['system/Observation.cud', 'system/Patient.read'], allowed, false);
    expect(g.granted).toEqual([]);
    expect(g.refused).toEqual(['system/Observation.cud', 'system/Patient.read']);
  });
  it('grants patient/ scopes only to clients with a fixed patient, keeping the restriction', () => {
    expect(grantScopes(['patient/Observation.read'], allowed, false).granted).toEqual([]);
    expect(grantScopes(['patient/Observation.read'], allowed, true).granted).toEqual([`patient/Observation.rs?${VITALS}`]);
  });
  it('grants non-resource scopes only verbatim', () => {
    expect(grantScopes(['openid', 'system/Device.read'], allowed, false)).toEqual({
      granted: ['system/Device.read'],
      refused: ['openid'],
    });
    expect(grantScopes(['launch/patient'], ['launch/patient'], false).granted).toEqual(['launch/patient']);
  });
  it('de-duplicates', () => {
    expect(grantScopes(['system/Observation.read', 'system/Observation.rs'], allowed, false).granted).toEqual([
      'system/Observation.read',
      'system/Observation.rs',
    ]);
    expect(grantScopes(['system/Device.rs', 'system/Device.rs'], allowed, false).granted).toEqual(['system/Device.rs']);
  });
});
