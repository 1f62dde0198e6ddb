import { subscriptionPatient } from '../../../src/search/subscription-pins';
import { consentPage, describeScope, esc, loginPage } from '../../../src/auth/pages';
import type { Resource } from 'fhir/r4';

const FILTER = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria';
const r4 = (criteria: string) => ({ resourceType: 'Subscription', status: 'requested', reason: 'x', criteria, channel: { type: 'websocket' } }) as Resource;
const topic = (filters: string[]) =>
  ({ ...r4('http://vigil-fhir.org/fhir/SubscriptionTopic/abnormal-vital-sign'), _criteria: { extension: filters.map((valueString) => ({ url: FILTER, valueString })) } }) as Resource;

describe('the patient a Subscription pins', () => {
  it.each([
    ['Observation?patient=Patient/p1&code=http://loinc.org|8867-4', 'p1'],
    ['Observation?patient=p1', 'p1'],
    ['Observation?subject=Patient/p1', 'p1'],
    ['Observation?subject:Patient=p1', 'p1'],
    ['Observation?patient=https://fhir.example.org/fhir/Patient/p1', 'p1'],
    ['Observation?subject=p1', undefined], // a bare subject id may name a Group or Device
    ['Observation?patient=p1,p2', undefined],
    ['Observation?patient=p1&subject=Patient/p2', undefined],
    ['Observation?code=http://loinc.org|8867-4', undefined],
  ])('%s -> %s', (criteria, expected) => {
    expect(subscriptionPatient(r4(criteria))).toBe(expected);
  });

  it('topic subscriptions: every filter must pin the same patient', () => {
    expect(subscriptionPatient(topic(['Observation?patient=Patient/p1']))).toBe('p1');
    expect(subscriptionPatient(topic(['Observation?patient=Patient/p1', 'Observation?code=x']))).toBeUndefined();
    expect(subscriptionPatient(topic(['Observation?patient=Patient/p1', 'Observation?patient=Patient/p2']))).toBeUndefined();
    expect(subscriptionPatient(topic([]))).toBeUndefined();
  });

  it('other resource types pin nothing', () => {
    expect(subscriptionPatient({ resourceType: 'Patient', id: 'p1' })).toBeUndefined();
  });
});

describe('pages', () => {
  it('describe scopes in plain words', () => {
    expect(describeScope('patient/Observation.rs')).toBe('Read and search measurements and vital signs of this patient');
    expect(describeScope('user/Patient.read')).toBe('Read and search patient details (name, birth date, contacts) that you can see');
    expect(describeScope('patient/Subscription.cruds')).toBe('Create, read, change, delete and search alert subscriptions of this patient');
    expect(describeScope('offline_access')).toMatch(/Keep access after you close the app/);
    expect(describeScope('patient/Observation.rs?category=vital-signs')).toMatch(/\(only category=vital-signs\)$/);
  });

  it('escape everything they print and carry no script', () => {
    const html = loginPage({ rid: 'r"1', csrf: '<c>', clientName: '<script>alert(1)</script>', error: '&' });
    expect(html).not.toMatch(/<script/i);
    expect(html).toContain('&lt;script&gt;');
    expect(html).toContain('value="r&quot;1"');
    const consent = consentPage({ rid: 'r', csrf: 'c', clientName: 'App', userName: 'u', scopes: ['patient/Observation.rs', 'openid'] });
    expect(consent.match(/type="checkbox" [^>]*name="scope"[^>]*checked/g)).toHaveLength(2);
    expect(consent).toContain('name="decision" value="allow"');
    expect(consent).toContain('name="decision" value="deny"');
    expect(esc(`'`)).toBe('&#39;');
  });
});
