import type { Flag } from 'fhir/r4';
import { eventBetween } from '../../../src/alerting/episodes';
import { buildFlag, flagIdOf, type EpisodeView } from '../../../src/alerting/flag';
import { canonicalLoinc, withLoincEquivalents } from '../../../src/terminology/vital-codes';

const stream = { key: 'Patient/1|8867-4', subject: { reference: 'Patient/1' }, code: { system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' } };
const view = (v: Partial<EpisodeView> = {}): EpisodeView => ({
  stream, n: 1, level: 1, severity: 'H', start: new Date('2026-01-01T00:00:00Z'), firstRef: 'Observation/a', latestRef: 'Observation/a', ...v,
});

describe('episode events are the difference between the stored Flag and the episode', () => {
  const stored = (v: EpisodeView, e: Parameters<typeof buildFlag>[1] = 'raised'): Flag => buildFlag(v, e, 2);
  it('no Flag yet: raised', () => expect(eventBetween(undefined, view())).toBe('raised'));
  it('a repeat of the same severity: updated', () => expect(eventBetween(stored(view()), view({ latestRef: 'Observation/b' }))).toBe('updated'));
  it('a lower severity: updated', () => expect(eventBetween(stored(view({ level: 2, severity: 'HH' })), view({ level: 2, severity: 'HH' }))).toBe('updated'));
  it('a higher severity: escalated', () => expect(eventBetween(stored(view()), view({ level: 2, severity: 'HH' }))).toBe('escalated'));
  it('ended while active: resolved; already inactive: nothing new', () => {
    const end = view({ end: new Date('2026-01-01T01:00:00Z') });
    expect(eventBetween(stored(view()), end)).toBe('resolved');
    expect(eventBetween(stored(end, 'resolved'), end)).toBe('resolved');
  });
  it('a new acknowledgement: acknowledged; the same one again: updated', () => {
    const acked = view({ ack: { level: 1, by: 'nurse-app', at: new Date('2026-01-01T00:05:00Z') } });
    expect(eventBetween(stored(view()), acked)).toBe('acknowledged');
    expect(eventBetween(stored(acked, 'acknowledged'), acked)).toBe('updated');
  });
  it('an escalation after an acknowledgement still escalates', () => {
    const acked = view({ ack: { level: 1, by: 'nurse-app', at: new Date('2026-01-01T00:05:00Z') } });
    expect(eventBetween(stored(acked, 'acknowledged'), { ...acked, level: 2, severity: 'HH' })).toBe('escalated');
  });
  it('Flag ids are deterministic per stream and episode number', () => {
    expect(flagIdOf(stream.key, 1)).toBe(flagIdOf(stream.key, 1));
    expect(flagIdOf(stream.key, 1)).not.toBe(flagIdOf(stream.key, 2));
    expect(flagIdOf(stream.key, 1)).toMatch(/^[A-Za-z0-9\-.]{1,64}$/);
  });
});

describe('MDC to LOINC equivalence', () => {
  it('maps PHD vital-sign codes and keeps the sent codes', () => {
    const mdc = [{ system: 'urn:iso:std:iso:11073:10101', code: '150456' }];
    expect(withLoincEquivalents(mdc)).toEqual([{ system: 'http://loinc.org', code: '59408-5' }, ...mdc]);
    expect(canonicalLoinc([{ system: 'urn:iso:std:iso:11073:10101', code: '150021' }])).toBe('8480-6');
    expect(canonicalLoinc([{ system: 'urn:iso:std:iso:11073:10101', code: '151562' }])).toBe('9279-1');
    expect(canonicalLoinc([{ system: 'urn:iso:std:iso:11073:10101', code: '150364' }])).toBe('8310-5');
    expect(canonicalLoinc([{ system: 'urn:iso:std:iso:11073:10101', code: '147842' }])).toBe('8867-4');
  });
  it('adds nothing when the LOINC code is already there, or for unknown codes', () => {
    const both = [{ system: 'urn:iso:std:iso:11073:10101', code: '147842' }, { system: 'http://loinc.org', code: '8867-4' }];
    expect(withLoincEquivalents(both)).toEqual(both);
    expect(withLoincEquivalents([{ system: 'urn:iso:std:iso:11073:10101', code: '1' }])).toEqual([{ system: 'urn:iso:std:iso:11073:10101', code: '1' }]);
  });
});
