import type { Observation, Subscription } from 'fhir/r4';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { allowAllPolicy } from '../../../src/auth/types';
import type { SearchService } from '../../../src/search/service';
import { ActiveIndex, patientKey, pinnedKeys, pinnedPatients } from '../../../src/subscriptions/matcher';
import { parseSubscription, type SubscriptionSpec } from '../../../src/subscriptions/spec';
import { compileTopic, topicFires, type CompiledTopic, type SubscriptionTopicResource } from '../../../src/subscriptions/topics';
import { realSearch } from './search';
import { SERVED_TYPES } from '../../../src/resources/registry';

const IG = path.join(__dirname, '../../../ig');
const topicJson = (n: string) => JSON.parse(readFileSync(path.join(IG, `SubscriptionTopic-${n}.json`), 'utf8')) as SubscriptionTopicResource;
const V3 = 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation';
const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition';

function obs(patient: string, value: number, interp?: string, extra: Partial<Observation> = {}): Observation {
  return {
    resourceType: 'Observation',
    id: `o-${patient}-${value}`,
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
    subject: { reference: `Patient/${patient}` },
    device: { reference: 'Device/watch-1' },
    valueQuantity: { value, system: 'http://unitsofmeasure.org', code: '/min', unit: '/min' },
    ...(interp ? { interpretation: [{ coding: [{ system: V3, code: interp }] }] } : {}),
    ...extra,
  };
}

describe('subscription matching with the real search evaluator', () => {
  let search: SearchService;
  let abnormal: CompiledTopic;
  let created: CompiledTopic;
  const topics = new Map<string, CompiledTopic>();

  beforeAll(async () => {
    search = await realSearch();
    abnormal = compileTopic(topicJson('abnormal-vital-sign'), search);
    created = compileTopic(topicJson('observation-created'), search);
    topics.set(abnormal.url, abnormal).set(created.url, created);
  });

  const fires = (t: CompiledTopic, current: Observation | undefined, interaction: 'create' | 'update' | 'delete' = 'create') =>
    topicFires(t, { type: 'Observation', interaction, current, previous: async () => undefined }, search);

  it('abnormal-vital-sign fires on every abnormal code, on components too, and not on normal ones', async () => {
    for (const c of ['H', 'L', 'HH', 'LL', 'A', 'AA', 'HU', 'LU', '>', '<']) expect(await fires(abnormal, obs('1', 1, c))).toBe(true);
    for (const c of ['N', 'IND', 'POS']) expect(await fires(abnormal, obs('1', 1, c))).toBe(false);
    expect(await fires(abnormal, obs('1', 1))).toBe(false);
    const otherSystem = obs('1', 1, undefined, { interpretation: [{ coding: [{ system: 'http://example.org/local', code: 'H' }] }] });
    expect(await fires(abnormal, otherSystem)).toBe(false);
    const comp = obs('1', 1, undefined, { component: [{ code: { text: 'sys' }, interpretation: [{ coding: [{ system: V3, code: 'HH' }] }] }] });
    expect(await fires(abnormal, comp)).toBe(true);
    expect(await fires(abnormal, obs('1', 1, 'H'), 'update')).toBe(true);
    expect(await fires(abnormal, undefined, 'delete')).toBe(false);
  });

  it('observation-created fires on creates only', async () => {
    expect(await fires(created, obs('1', 1))).toBe(true);
    expect(await fires(created, obs('1', 1), 'update')).toBe(false);
  });

  it('topic filters mean what the same search means (patient, code, device, category)', async () => {
    const idx = new ActiveIndex(search);
    const sub = (id: string, filters: string[]): SubscriptionSpec =>
      parseSubscription(
        {
          resourceType: 'Subscription',
          id,
          status: 'requested',
          reason: 't',
          criteria: abnormal.url,
          _criteria: { extension: filters.map((f) => ({ url: `${BACKPORT}/backport-filter-criteria`, valueString: f })) },
          channel: { type: 'rest-hook', endpoint: 'http://127.0.0.1:9/h' },
        } as Subscription,
        { criteria: search, topic: (u) => topics.get(u) },
      );
    idx.put(sub('byPatient', ['Observation?patient=Patient/1']), allowAllPolicy, abnormal.resourceTypes);
    idx.put(sub('byCode', ['Observation?code=http://loinc.org|9279-1']), allowAllPolicy, abnormal.resourceTypes);
    idx.put(sub('byDevice', ['device=Device/watch-1']), allowAllPolicy, abnormal.resourceTypes);
    idx.put(sub('byCategoryAndPatient', ['Observation?category=vital-signs', 'Observation?patient=2']), allowAllPolicy, abnormal.resourceTypes);
    const matched = (o: Observation) =>
      idx
        .topicCandidates(abnormal.url, 'Observation', o)
        .filter((s) => idx.filtersPass(s, 'Observation', o))
        .map((s) => s.spec.id)
        .sort();
    expect(matched(obs('1', 150, 'H'))).toEqual(['byDevice', 'byPatient']);
    expect(matched(obs('2', 150, 'H'))).toEqual(['byCategoryAndPatient', 'byDevice']);
    expect(matched(obs('3', 150, 'H', { device: undefined }))).toEqual([]);
    expect(matched(obs('3', 25, 'L', { code: { coding: [{ system: 'http://loinc.org', code: '9279-1' }] } }))).toEqual(['byCode', 'byDevice']);
  });

  it('R4 criteria: value-quantity and code as the search defines them; other types never looked at', async () => {
    const idx = new ActiveIndex(search);
    const spec = parseSubscription(
      { resourceType: 'Subscription', id: 'r4', status: 'requested', reason: 'x', criteria: 'Observation?code=http://loinc.org|8867-4&value-quantity=gt120', channel: { type: 'rest-hook', endpoint: 'http://127.0.0.1:9/' } } as Subscription,
      { criteria: search, topic: () => undefined },
    );
    idx.put(spec, allowAllPolicy);
    const hit = (o: Observation) => idx.criteriaCandidates('Observation', o).some((s) => idx.filtersPass(s, 'Observation', o));
    expect(hit(obs('1', 121))).toBe(true);
    expect(hit(obs('1', 120))).toBe(false);
    expect(hit(obs('1', 130, undefined, { code: { coding: [{ system: 'http://loinc.org', code: '9279-1' }] } }))).toBe(false);
    expect(idx.criteriaCandidates('Patient', { resourceType: 'Patient' })).toEqual([]);
  });

  it('pins subscriptions to a patient so unrelated ones are not even evaluated', () => {
    const idx = new ActiveIndex(search);
    for (let i = 0; i < 1000; i++) {
      const spec: SubscriptionSpec = {
        id: `s${i}`, kind: 'criteria', filters: [{ resourceType: 'Observation', query: `patient=Patient/p${i}&code=http://loinc.org|8867-4` }],
        channelType: 'rest-hook', endpoint: 'http://127.0.0.1:9/', headers: [], content: 'empty', maxCount: 1, status: 'active',
      };
      idx.put(spec, allowAllPolicy);
    }
    expect(idx.criteriaCandidates('Observation', obs('p7', 1)).map((s) => s.spec.id)).toEqual(['s7']);
    expect(idx.criteriaCandidates('Observation', obs('nobody', 1))).toEqual([]);
    idx.remove('s7');
    expect(idx.criteriaCandidates('Observation', obs('p7', 1))).toEqual([]);
  });

  it('pins alert-episode Flags by patient: 1,000 subscriptions, only the pinned one and the unpinned are looked at', async () => {
    const idx = new ActiveIndex(await realSearch([...SERVED_TYPES]));
    const topic = 'http://vigil-fhir.org/fhir/SubscriptionTopic/alert-episode';
    const mk = (id: string, query: string): SubscriptionSpec => ({
      id, kind: 'topic', topic, filters: [{ resourceType: 'Flag', query }], channelType: 'rest-hook', endpoint: 'http://127.0.0.1:9/', headers: [], content: 'id-only', maxCount: 1, status: 'active',
    });
    for (let i = 0; i < 999; i++) idx.put(mk(`f${i}`, `patient=Patient/other-${i}`), allowAllPolicy, new Set(['Flag']));
    idx.put(mk('hr', 'code=http://loinc.org|8867-4'), allowAllPolicy, new Set(['Flag']));
    const flag = (patient: string) =>
      ({ resourceType: 'Flag', id: 'x', status: 'active', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: `Patient/${patient}` } }) as const;
    const cands = (patient: string) => idx.topicCandidates(topic, 'Flag', flag(patient)).map((s) => s.spec.id).sort();
    expect(cands('other-5')).toEqual(['f5', 'hr']);
    expect(cands('nobody')).toEqual(['hr']);
    const passes = (patient: string) => idx.topicCandidates(topic, 'Flag', flag(patient)).filter((s) => idx.filtersPass(s, 'Flag', flag(patient))).map((s) => s.spec.id).sort();
    expect(passes('other-5')).toEqual(['f5', 'hr']);
  });

  it('pins by code and device too, and pinned candidates still go through the real evaluator', () => {
    const idx = new ActiveIndex(search);
    const mk = (id: string, query: string): SubscriptionSpec => ({
      id, kind: 'criteria', filters: [{ resourceType: 'Observation', query }], channelType: 'rest-hook', endpoint: 'http://127.0.0.1:9/', headers: [], content: 'empty', maxCount: 1, status: 'active',
    });
    for (let i = 0; i < 500; i++) idx.put(mk(`c${i}`, `code=http://loinc.org|${1000 + i}-0`), allowAllPolicy);
    idx.put(mk('hrAnySystem', 'code=8867-4'), allowAllPolicy);
    idx.put(mk('hrLoinc', 'code=http://loinc.org|8867-4'), allowAllPolicy);
    idx.put(mk('hrOther', 'code=http://other.org|8867-4'), allowAllPolicy);
    idx.put(mk('watch', 'device=Device/watch-1'), allowAllPolicy);
    const o = obs('p1', 80);
    const cands = idx.criteriaCandidates('Observation', o).map((s) => s.spec.id).sort();
    expect(cands).toEqual(['hrAnySystem', 'hrLoinc', 'watch']);
    expect(idx.criteriaCandidates('Observation', o).filter((s) => idx.filtersPass(s, 'Observation', o)).map((s) => s.spec.id).sort()).toEqual(['hrAnySystem', 'hrLoinc', 'watch']);
  });

  it('normalises patient references for pinning, and does not pin what it cannot read safely', () => {
    expect(patientKey('Patient/1', false)).toBe('Patient/1');
    expect(patientKey('http://h/fhir/Patient/1/_history/3', false)).toBe('Patient/1');
    expect(patientKey('1', true)).toBe('Patient/1');
    expect(patientKey('1', false)).toBeUndefined();
    expect(pinnedPatients({ resourceType: 'Observation', query: 'patient=1,2' })).toEqual(['Patient/1', 'Patient/2']);
    expect(pinnedPatients({ resourceType: 'Observation', query: 'subject=Group/1' })).toBeUndefined();
    expect(pinnedPatients({ resourceType: 'Observation', query: 'patient:missing=true' })).toBeUndefined();
    expect(pinnedPatients({ resourceType: 'Device', query: 'patient=1' })).toBeUndefined();
    expect(pinnedKeys({ resourceType: 'Observation', query: 'code=http://loinc.org|8867-4,8480-6' })).toEqual(['code:http://loinc.org|8867-4', 'code:8480-6']);
    expect(pinnedKeys({ resourceType: 'Observation', query: 'code:text=heart' })).toBeUndefined();
    expect(pinnedKeys({ resourceType: 'Observation', query: 'device=Device/w1' })).toEqual(['Device/w1']);
  });

  it('refuses subscriptions it cannot honour, with the element at fault', () => {
    const parse = (s: Partial<Subscription>) =>
      parseSubscription({ resourceType: 'Subscription', status: 'requested', reason: 'x', ...s } as Subscription, { criteria: search, topic: (u) => topics.get(u) });
    const expectRefused = (s: Partial<Subscription>, msg: RegExp, expression: string) => {
      try {
        parse(s);
        throw new Error('accepted');
      } catch (e) {
        expect((e as { status: number }).status).toBe(422);
        expect((e as Error).message).toMatch(msg);
        expect((e as { expression: string[] }).expression?.[0]).toBe(expression);
      }
    };
    const rest = { type: 'rest-hook' as const, endpoint: 'http://127.0.0.1:9/' };
    expectRefused({ channel: rest }, /criteria is required/, 'Subscription.criteria');
    expectRefused({ criteria: 'not a query', channel: rest }, /must look like/, 'Subscription.criteria');
    expectRefused({ criteria: 'Observation?_include=Observation:subject', channel: rest }, /_include/, 'Subscription.criteria');
    expectRefused({ criteria: 'Observation?code=x', channel: { type: 'rest-hook' } }, /absolute http/, 'Subscription.channel.endpoint');
    expectRefused({ criteria: 'Observation?code=x', channel: { ...rest, header: ['no colon'] } }, /Name: value/, 'Subscription.channel.header[0]');
    expectRefused({ criteria: 'Observation?code=x', channel: { ...rest, header: ['X-Vigil-Signature: forged'] } }, /set by the server/, 'Subscription.channel.header[0]');
    expectRefused({ criteria: 'Observation?code=x', channel: { type: 'sms', endpoint: 'tel:1' } }, /not supported/, 'Subscription.channel.type');
    expectRefused({ criteria: 'Observation?code=x', end: 'soon', channel: rest }, /not an instant/, 'Subscription.end');
    expectRefused(
      { criteria: abnormal.url, channel: { ...rest, extension: [{ url: `${BACKPORT}/backport-heartbeat-period`, valueUnsignedInt: 0 }] } },
      /between 1 and 86400/,
      'Subscription.channel.extension(heartbeat-period)',
    );
    expectRefused(
      { criteria: abnormal.url, _criteria: { extension: [{ url: `${BACKPORT}/backport-filter-criteria`, valueString: 'Patient?name=x' }] }, channel: rest } as Partial<Subscription>,
      /no trigger on Patient/,
      'Subscription.criteria.extension[0]',
    );
  });

  it('reads Backport channel options', () => {
    const spec = parseSubscription(
      {
        resourceType: 'Subscription', status: 'requested', reason: 'x', criteria: abnormal.url,
        channel: {
          type: 'rest-hook', endpoint: 'https://example.org/hook', payload: 'application/fhir+json', header: ['X-Api-Key: abc'],
          extension: [
            { url: `${BACKPORT}/backport-heartbeat-period`, valueUnsignedInt: 60 },
            { url: `${BACKPORT}/backport-timeout`, valueUnsignedInt: 5 },
            { url: `${BACKPORT}/backport-max-count`, valuePositiveInt: 10 },
          ],
          _payload: { extension: [{ url: `${BACKPORT}/backport-payload-content`, valueCode: 'full-resource' }] },
        },
      } as Subscription,
      { criteria: search, topic: (u) => topics.get(u) },
    );
    expect(spec).toMatchObject({ kind: 'topic', heartbeatSeconds: 60, timeoutSeconds: 5, maxCount: 10, content: 'full-resource', headers: [{ name: 'X-Api-Key', value: 'abc' }] });
  });
});
