import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Bundle, Resource, Subscription } from 'fhir/r4';
import type { Response } from 'supertest';
import { createTestContext, FHIR_JSON, heartRate, patient, postBundle, type TestContext } from '../support/context';
import { errorsOf, OFFLINE_ONLY, R4Judge, type JudgeIssue } from '../support/r4-judge';
import { ABNORMAL, topicSubscription } from './subscriptions/fixtures';
import { WebhookReceiver, type Received } from './subscriptions/receiver';

/**
 * Every kind of body the server emits, judged by a strict R4 parser and validator the project does
 * not write (HAPI FHIR, R4 core, offline; see test/support/r4-judge.ts). The bodies are produced
 * once, judged in one run, and each group below must have zero errors. Not counted, because the
 * judge cannot load them offline (and only those, each needed by some body): OFFLINE_ONLY in
 * r4-judge.ts (the xver packages' cross-version extensions that topics as Basic carry; the Backport
 * IG's profiles). Codes of systems outside R4 core (LOINC) raise warnings only, which do not count.
 */
jest.setTimeout(600_000);

const GROUPS = [
  'capability',
  'read',
  'vread',
  'history',
  'write',
  'searchset',
  'batch',
  'transaction',
  'outcome',
  'subscription',
  'topic',
  'status',
  'events',
  'notification',
  'compartment',
  'everything',
] as const;

let ctx: TestContext;
let hook: WebhookReceiver;
const judge = new R4Judge();
let verdict: Map<string, JudgeIssue[]>;
/** What the steps below saw, for the checks that the bodies are the ones meant. */
const seen = new Map<string, unknown>();

function keep(label: string, res: Response | Received | string): Resource {
  const text = typeof res === 'string' ? res : 'text' in res ? res.text : res.body;
  judge.add(label, text);
  const body = JSON.parse(text) as Resource;
  seen.set(label, body);
  return body;
}

const get = (url: string, headers: Record<string, string> = {}) => ctx.request.get(`/fhir/${url}`).set({ Accept: FHIR_JSON, ...headers });
const send = (method: 'post' | 'put', url: string, body: unknown) => ctx.request[method](`/fhir/${url}`).set('Content-Type', FHIR_JSON).send(JSON.stringify(body));
const nextOf = (b: Resource) => (b as Bundle).link?.find((l) => l.relation === 'next')?.url;
const rel = (url: string) => url.slice(url.indexOf('/fhir/') + '/fhir/'.length);

async function produce(): Promise<void> {
  keep('capability:metadata', await get('metadata'));
  // The published snapshot too (ig/, kept equal to /metadata by ig-capability.test.ts).
  keep('capability:ig-snapshot', readFileSync(path.join(__dirname, '..', '..', 'ig', 'CapabilityStatement-vigil.json'), 'utf8'));

  // Writes, reads, versions, history (instance, type, system; a deletion in it).
  const pat = keep('write:create-patient', await send('post', 'Patient', patient('Conform', ['Ada'], 'MRN-C1'))) as { id: string };
  const pid = pat.id;
  keep('write:update-patient', await send('put', `Patient/${pid}`, { ...patient('Conform', ['Ada', 'B'], 'MRN-C1'), id: pid }));
  keep('read:patient', await get(`Patient/${pid}`));
  keep('read:elements', await get(`Patient/${pid}?_elements=name`));
  keep('read:summary', await get(`Patient/${pid}?_summary=true`));
  keep('vread:patient-v1', await get(`Patient/${pid}/_history/1`));
  const device = (await send('post', 'Device', { resourceType: 'Device', status: 'active', patient: { reference: `Patient/${pid}` }, deviceName: [{ name: 'Home BP cuff', type: 'user-friendly-name' }] })).body as { id: string };
  const obsIds: string[] = [];
  for (const v of [72, 88, 131]) {
    const o = { ...heartRate(pid, v, `2024-05-0${obsIds.length + 1}T10:00:00Z`), device: { reference: `Device/${device.id}` } };
    obsIds.push(((await send('post', 'Observation', o)).body as { id: string }).id);
  }
  const gone = (await send('post', 'Observation', heartRate(pid, 60))).body as { id: string };
  await ctx.request.delete(`/fhir/Observation/${gone.id}`);
  keep('history:instance', await get(`Patient/${pid}/_history`));
  keep('history:type-with-deletion', await get('Observation/_history'));
  keep('history:system', await get('_history?_count=5'));

  // Searchsets: includes, paging, outcome entries, _elements, _summary, system level, $lastn.
  const p1 = keep('searchset:include-page1', await get(`Observation?patient=${pid}&_include=Observation:patient&_include=Observation:device&_count=2&_sort=date`));
  const next = nextOf(p1);
  if (!next) throw new Error('expected a next page');
  keep('searchset:include-page2', await get(rel(next)));
  keep('searchset:outcome-entry', await get(`Observation?patient=${pid}&bogus=1`));
  keep('searchset:elements', await get(`Observation?patient=${pid}&_elements=code`));
  for (const s of ['true', 'text', 'data', 'count']) keep(`searchset:summary-${s}`, await get(`Observation?patient=${pid}&_summary=${s}`));
  keep('searchset:total', await get(`Patient?_id=${pid}&_total=accurate&_revinclude=Observation:subject`));
  keep('searchset:system', await get(`?_type=Patient,Device&_count=3`));
  keep('searchset:lastn', await get(`Observation/$lastn?patient=${pid}&max=2`));
  keep('searchset:empty', await get('Patient?family=nobody-has-this-name'));

  // Batch and transaction responses (a failing batch entry carries its OperationOutcome).
  keep('transaction:response', await postBundle(ctx, [
    { fullUrl: 'urn:uuid:0b8d7a90-7c42-4f5e-9f6c-2f6d4d5d1a01', resource: patient('Trans', ['T'], 'MRN-T1'), request: { method: 'POST', url: 'Patient' } },
    { resource: { ...heartRate('x', 70), subject: { reference: 'urn:uuid:0b8d7a90-7c42-4f5e-9f6c-2f6d4d5d1a01' } }, request: { method: 'POST', url: 'Observation' } },
  ]));
  keep('batch:response', await postBundle(ctx, [
    { request: { method: 'GET', url: `Patient/${pid}` } },
    { request: { method: 'GET', url: 'Patient/does-not-exist' } },
    { resource: { resourceType: 'Observation', status: 'final' }, request: { method: 'POST', url: 'Observation' } },
    { request: { method: 'GET', url: `Observation?patient=${pid}&_count=1` } },
  ], 'batch'));

  // OperationOutcomes of every class of failure, and of $validate.
  keep('outcome:404', await get('Patient/does-not-exist'));
  keep('outcome:400-modifier', await get('Observation?code:bogus=1'));
  keep('outcome:400-sort', await get('Observation?_sort=bogus'));
  keep('outcome:422', await send('post', 'Observation', { resourceType: 'Observation', status: 'final' }));
  keep('outcome:405', await ctx.request.delete('/fhir/metadata'));
  keep('outcome:406', await ctx.request.get('/fhir/metadata').set('Accept', 'application/fhir+xml'));
  keep('outcome:415', await ctx.request.post('/fhir/Patient').set('Content-Type', 'text/plain').send('x'));
  keep('outcome:validate', await send('post', 'Observation/$validate', heartRate(pid, 70)));
  keep('outcome:prefer', await ctx.request.post('/fhir/Patient').set({ 'Content-Type': FHIR_JSON, Prefer: 'return=OperationOutcome' }).send(JSON.stringify(patient('Oo'))));

  // Topics, as R4 Basic resources.
  keep('topic:read', await get('Basic/abnormal-vital-sign'));
  keep('topic:search', await get('Basic?code=http://hl7.org/fhir/fhir-types|SubscriptionTopic'));

  // Subscriptions, their operations and the notifications a real receiver gets.
  const full = keep('subscription:topic-full', await send('post', 'Subscription', topicSubscription(`${hook.url}/full`, ABNORMAL, [`Observation?patient=Patient/${pid}`]))) as Subscription;
  const ids = keep('subscription:topic-id-only', await send('post', 'Subscription', topicSubscription(`${hook.url}/ids`, ABNORMAL, [`Observation?patient=Patient/${pid}`], {}, 'id-only'))) as Subscription;
  const r4 = keep('subscription:criteria', await send('post', 'Subscription', {
    resourceType: 'Subscription',
    status: 'requested',
    reason: 'R4 criteria',
    criteria: `Observation?patient=${pid}&value-quantity=gt120`,
    channel: { type: 'rest-hook', endpoint: `${hook.url}/r4`, payload: 'application/fhir+json' },
  })) as Subscription;
  // Bounded waits for conditions (generous: the machine is shared), never fixed sleeps.
  await hook.waitFor((all) => [full.id, ids.id].every((id) => all.some((r) => r.headers['x-vigil-subscription'] === id && r.headers['x-vigil-notification-type'] === 'handshake')), 60_000);
  const alarm = ((await send('post', 'Observation', heartRate(pid, 190))).body as { id: string }).id;
  const mine = (id: string | undefined, type: string) => (all: Received[]) => all.find((r) => r.headers['x-vigil-subscription'] === id && r.headers['x-vigil-notification-type'] === type);
  await hook.waitFor((all) => Boolean(mine(full.id, 'event-notification')(all) && mine(ids.id, 'event-notification')(all) && all.some((r) => r.method === 'PUT')), 60_000);
  keep('notification:handshake', mine(full.id, 'handshake')(hook.received)!);
  keep('notification:full-resource', mine(full.id, 'event-notification')(hook.received)!);
  keep('notification:id-only', mine(ids.id, 'event-notification')(hook.received)!);
  const put = hook.received.find((r) => r.method === 'PUT' && r.headers['x-vigil-subscription'] === r4.id)!;
  seen.set('r4-put-url', put.url);
  keep('notification:r4-update', put);
  keep('subscription:read', await get(`Subscription/${full.id}`));
  keep('status:instance', await get(`Subscription/${full.id}/$status`));
  keep('status:type', await get(`Subscription/$status?id=${full.id}`));
  keep('events:all', await get(`Subscription/${full.id}/$events`));
  keep('events:id-only', await get(`Subscription/${full.id}/$events?content=id-only`));
  keep('subscription:ws-token', await get(`Subscription/${full.id}/$get-ws-binding-token`));
  seen.set('alarm', alarm);

  // Compartment search and $everything, paged.
  keep('compartment:observations', await get(`Patient/${pid}/Observation?_count=2`));
  keep('compartment:devices', await get(`Patient/${pid}/Device`));
  const e1 = keep('everything:page1', await get(`Patient/${pid}/$everything?_count=3`));
  keep('everything:page2', await get(rel(nextOf(e1)!)));
  keep('everything:type-level', await get('Patient/$everything?_type=Patient,Device&_count=50'));

  // Deliberately broken bodies: the judge must refuse them (so a green run means something).
  judge.add('broken:observation-without-code', { resourceType: 'Observation', status: 'final' });
  judge.add('broken:unknown-element', { resourceType: 'Patient', colour: 'blue' });
  judge.add('broken:r5-subscription-topic', { resourceType: 'SubscriptionTopic', url: ABNORMAL, status: 'active' });
  judge.add('broken:searchset-entry-without-fullUrl', {
    resourceType: 'Bundle',
    type: 'searchset',
    entry: [{ resource: { resourceType: 'OperationOutcome', issue: [{ severity: 'warning', code: 'not-supported', diagnostics: 'x' }] }, search: { mode: 'outcome' } }],
  });
}

beforeAll(async () => {
  hook = await new WebhookReceiver().start();
  ctx = await createTestContext({ env: { SUBSCRIPTION_POLL_MS: '100' } });
  await produce();
  verdict = await judge.judge();
});

afterAll(async () => {
  judge.close();
  await ctx?.close();
  await hook?.close();
});

describe('every body the server emits is valid R4 to a strict parser and validator', () => {
  it.each(GROUPS)('%s', (group) => {
    const labels = [...verdict.keys()].filter((l) => l.startsWith(`${group}:`));
    expect(labels.length).toBeGreaterThan(0);
    const errors = Object.fromEntries(labels.map((l) => [l, errorsOf(verdict.get(l)!)]).filter(([, e]) => e.length > 0));
    expect(errors).toEqual({});
  });

  it('refuses deliberately broken bodies (the judge is not vacuous)', () => {
    const broken = [...verdict.keys()].filter((l) => l.startsWith('broken:'));
    expect(broken).toHaveLength(4);
    for (const l of broken) expect([l, errorsOf(verdict.get(l)!).length > 0]).toEqual([l, true]);
  });

  it('names what it does not count, and it is only what an offline R4-core judge cannot load', () => {
    expect(OFFLINE_ONLY.map((o) => o.why)).toEqual([
      'cross-version SubscriptionTopic extensions on Basic (Backport IG) are defined in the xver packages, not in R4 core',
      'profiles of the Subscriptions Backport IG are not loaded (R4 core only)',
    ]);
    // The topics' cross-version extensions are what most needs the exemption: it must keep matching them.
    const topic = verdict.get('topic:read') ?? [];
    expect(topic.some((i) => i.severity === 'error' && OFFLINE_ONLY[0].test(i))).toBe(true);
  });
});

describe('the bodies are the ones meant', () => {
  it('outcome entries and every other searchset entry have a fullUrl', () => {
    for (const [label, body] of seen) {
      const b = body as Bundle;
      if (b.resourceType !== 'Bundle' || (b.type !== 'searchset' && b.type !== 'history')) continue;
      for (const e of b.entry ?? []) expect([label, typeof e.fullUrl]).toEqual([label, 'string']);
    }
    const outcome = (seen.get('searchset:outcome-entry') as Bundle).entry?.find((e) => e.search?.mode === 'outcome');
    expect(outcome?.fullUrl).toMatch(/^urn:uuid:/);
  });

  it('the R4 criteria notification is the resource, PUT to [endpoint]/[type]/[id]', () => {
    const alarm = seen.get('alarm') as string;
    expect(seen.get('r4-put-url')).toBe(`/hook/r4/Observation/${alarm}`);
    expect(seen.get('notification:r4-update')).toMatchObject({ resourceType: 'Observation', id: alarm });
  });

  it('topics are Basic, $everything pages, compartment links stay in the compartment', () => {
    expect((seen.get('topic:read') as Resource).resourceType).toBe('Basic');
    expect(nextOf(seen.get('everything:page1') as Resource)).toContain('/$everything?');
    const comp = seen.get('compartment:observations') as Bundle;
    expect(comp.link?.find((l) => l.relation === 'next')?.url).toMatch(/\/fhir\/Patient\/[^/]+\/Observation\?/);
  });
});
