import type { Observation, Parameters } from 'fhir/r4';
import { notificationBundle, statusParameters } from '../../../src/subscriptions/bundle';

const obs: Observation = { resourceType: 'Observation', id: 'o1', status: 'final', code: { text: 'HR' } };
const base = {
  baseUrl: 'http://x/fhir',
  subscriptionId: 's1',
  topic: 'http://t/topic',
  status: 'active' as const,
  type: 'event-notification' as const,
  eventsSinceStart: 7,
};
const events = [
  { num: 6, ts: new Date('2024-01-01T00:00:00Z'), type: 'Observation', id: 'o1', vid: 1, method: 'POST' as const, resource: obs },
  { num: 7, ts: new Date('2024-01-01T00:00:01Z'), type: 'Observation', id: 'o1', vid: 2, method: 'PUT' as const, resource: obs },
];

describe('notification bundles (Backport STU 1.1, R4)', () => {
  it('puts the SubscriptionStatus Parameters first, with string event numbers', () => {
    const b = notificationBundle({ ...base, events, content: 'full-resource' });
    expect(b.type).toBe('history');
    const p = b.entry?.[0].resource as Parameters;
    expect(p.meta?.profile).toEqual(['http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4']);
    expect(p.parameter?.map((x) => x.name)).toEqual(['subscription', 'topic', 'status', 'type', 'events-since-subscription-start', 'notification-event', 'notification-event']);
    expect(p.parameter?.[4].valueString).toBe('7');
    const ev = p.parameter?.[5].part;
    expect(ev?.map((x) => x.name)).toEqual(['event-number', 'timestamp', 'focus']);
    expect(ev?.[0].valueString).toBe('6');
    expect(ev?.[2].valueReference?.reference).toBe('http://x/fhir/Observation/o1/_history/1');
    expect(b.entry?.[0].request).toEqual({ method: 'GET', url: 'http://x/fhir/Subscription/s1/$status' });
  });

  it('full-resource carries the resources; creates and updates are told apart', () => {
    const b = notificationBundle({ ...base, events, content: 'full-resource' });
    expect(b.entry).toHaveLength(3);
    expect(b.entry?.[1]).toMatchObject({ resource: obs, request: { method: 'POST', url: 'Observation' }, response: { status: '201' } });
    expect(b.entry?.[2]).toMatchObject({ request: { method: 'PUT', url: 'Observation/o1' }, response: { status: '200' } });
  });

  it('id-only has entries without resources; empty has only the status and no focus', () => {
    const idOnly = notificationBundle({ ...base, events, content: 'id-only' });
    expect(idOnly.entry?.slice(1).every((e) => e.resource === undefined && e.fullUrl === 'http://x/fhir/Observation/o1')).toBe(true);
    const empty = notificationBundle({ ...base, events, content: 'empty' });
    expect(empty.entry).toHaveLength(1);
    const p = empty.entry?.[0].resource as Parameters;
    expect(p.parameter?.filter((x) => x.name === 'notification-event').every((x) => !x.part?.some((y) => y.name === 'focus'))).toBe(true);
  });

  it('handshake and heartbeat carry no events; topic is left out for R4 criteria subscriptions', () => {
    const p = statusParameters({ ...base, topic: undefined, type: 'handshake', status: 'requested', eventsSinceStart: 0, events: [], content: 'id-only' });
    expect(p.parameter?.map((x) => x.name)).toEqual(['subscription', 'status', 'type', 'events-since-subscription-start']);
    expect(p.parameter?.find((x) => x.name === 'type')?.valueCode).toBe('handshake');
  });
});
