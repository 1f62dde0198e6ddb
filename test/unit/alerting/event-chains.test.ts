import type { Resource } from 'fhir/r4';
import { eventChains } from '../../../src/alerting/event-chains';
import type { CommittedEvent } from '../../../src/storage';

function ev(resource: Resource): CommittedEvent {
  return { historyId: `${resource.resourceType}/${resource.id}/1`, type: resource.resourceType, id: resource.id!, vid: 1, ts: new Date(0), method: 'PUT', resource, previous: async () => undefined };
}
const obs = (id: string, patient?: string, device?: string): Resource =>
  ({ resourceType: 'Observation', id, status: 'final', code: {}, ...(patient ? { subject: { reference: patient } } : {}), ...(device ? { device: { reference: device } } : {}) }) as Resource;
const ids = (chains: CommittedEvent[][]) => chains.map((c) => c.map((e) => e.id));

describe('event chains', () => {
  it('keeps each patient in its own chain, in batch order', () => {
    const chains = eventChains([ev(obs('a1', 'Patient/a')), ev(obs('b1', 'Patient/b')), ev(obs('a2', 'Patient/a')), ev(obs('b2', 'Patient/b'))]);
    expect(ids(chains)).toEqual([['a1', 'a2'], ['b1', 'b2']]);
  });

  it('joins chains that share a device, a patient record or a Goal subject', () => {
    const chains = eventChains([
      ev(obs('a1', 'Patient/a', 'Device/d')),
      ev(obs('b1', 'Patient/b', 'Device/d')),
      ev(obs('c1', 'Patient/c')),
      ev({ resourceType: 'Patient', id: 'c' }),
      ev({ resourceType: 'Goal', id: 'g', lifecycleStatus: 'active', description: { text: 't' }, subject: { reference: 'Patient/e' } } as Resource),
      ev(obs('e1', 'Patient/e')),
      ev({ resourceType: 'Device', id: 'd', patient: { reference: 'Patient/f' } } as Resource),
      ev(obs('x1')),
    ]);
    expect(ids(chains)).toEqual([['a1', 'b1', 'd'], ['c1', 'c'], ['g', 'e1'], ['x1']]);
  });
});
