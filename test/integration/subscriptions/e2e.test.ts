import type { Bundle, Observation, Parameters, Subscription } from 'fhir/r4';
import WebSocket from 'ws';
import { createTestContext, FHIR_JSON, heartRate, type TestContext } from '../../support/context';
import { verifySignature } from '../../../src/subscriptions';
import { ABNORMAL, BACKPORT, topicSubscription as baseTopicSubscription } from './fixtures';
import { eventNumbers, paramValue, typeOf, WebhookReceiver, type Received } from './receiver';

const SECRET_EXT = 'http://vigil-fhir.org/fhir/StructureDefinition/subscription-signing-secret';

/** The shared builder, declaring the Backport profile as a client app would. */
function topicSubscription(endpoint: string, filters: string[], extra: Partial<Subscription['channel']> = {}, content = 'full-resource'): Subscription {
  return {
    ...baseTopicSubscription(endpoint, ABNORMAL, filters, extra, content),
    meta: { profile: [`${BACKPORT}/backport-subscription`] },
    reason: 'Abnormal vital signs for the care team',
  };
}

describe('subscriptions over HTTP (real app, real webhook receiver, real websocket)', () => {
  let ctx: TestContext;
  let hook: WebhookReceiver;

  beforeAll(async () => {
    ctx = await createTestContext({
      listen: true,
      env: { SUBSCRIPTION_BACKOFF_BASE_MS: '50', SUBSCRIPTION_BACKOFF_MAX_MS: '200', SUBSCRIPTION_POLL_MS: '50', SUBSCRIPTION_ERROR_AFTER_FAILURES: '2' },
    });
    hook = await new WebhookReceiver().start();
  });
  afterAll(async () => {
    await hook.close();
    await ctx.close();
  });

  async function createSub(sub: Subscription): Promise<Subscription> {
    const res = await ctx.request.post('/fhir/Subscription').set('Content-Type', FHIR_JSON).send(JSON.stringify(sub));
    expect(res.status).toBe(201);
    return JSON.parse(res.text) as Subscription;
  }

  async function readSub(id: string): Promise<Subscription> {
    return JSON.parse((await ctx.request.get(`/fhir/Subscription/${id}`)).text) as Subscription;
  }

  async function waitStatus(id: string, status: string): Promise<Subscription> {
    for (let i = 0; i < 200; i++) {
      const s = await readSub(id);
      if (s.status === status) return s;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`Subscription/${id} never became ${status}`);
  }

  async function postObs(o: Record<string, unknown>): Promise<Observation> {
    const res = await ctx.request.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(JSON.stringify(o));
    expect(res.status).toBe(201);
    return JSON.parse(res.text) as Observation;
  }

  it('handshakes, activates, then pushes an abnormal heart rate signed with the subscription secret', async () => {
    const secret = 'a-long-enough-test-secret-0001';
    const sub = await createSub(
      topicSubscription(hook.url, ['Observation?patient=Patient/p1'], {
        header: ['Authorization: Bearer downstream-token'],
        extension: [{ url: SECRET_EXT, valueString: secret }],
      }),
    );
    expect(sub.status).toBe('requested');
    // The write-only secret never appears in the stored resource.
    expect(JSON.stringify(sub)).not.toContain(secret);
    await hook.waitFor((r) => r.some((x) => typeOf(x) === 'handshake' && x.headers['x-vigil-subscription'] === sub.id));
    await waitStatus(sub.id!, 'active');

    const before = hook.events().length;
    const obs = await postObs(heartRate('p1', 150)); // no interpretation: derived HH from the shipped range
    expect(obs.interpretation?.[0].coding?.[0].code).toBe('HH');
    await postObs(heartRate('p2', 160)); // another patient: filtered out
    await postObs(heartRate('p1', 72)); // normal: no event

    const got = await hook.waitFor(() => hook.events().length >= before + 1);
    const note = hook.events()[before];
    expect(note.headers['content-type']).toContain('application/fhir+json');
    expect(note.headers.authorization).toBe('Bearer downstream-token');
    expect(verifySignature(String(note.headers['x-vigil-signature']), note.body, [secret])).toBe(true);
    expect(verifySignature(String(note.headers['x-vigil-signature']), note.body, ['wrong-secret-xxxxxxxxxx'])).toBe(false);
    const bundle = note.bundle as Bundle;
    expect(bundle.type).toBe('history');
    expect(paramValue(note.status, 'topic')).toBe(ABNORMAL);
    expect(paramValue(note.status, 'events-since-subscription-start')).toBe('1');
    expect(eventNumbers(note)).toEqual([1]);
    expect((bundle.entry?.[1].resource as Observation).id).toBe(obs.id);
    expect(got.length).toBeGreaterThan(0);

    // Nothing else arrives for this subscription (p2 filtered, normal value not abnormal).
    const status = JSON.parse((await ctx.request.get(`/fhir/Subscription/${sub.id}/$status`)).text) as Bundle;
    const p = status.entry?.[0].resource as Parameters;
    expect(paramValue(p, 'type')).toBe('query-status');
    expect(paramValue(p, 'status')).toBe('active');
    expect(paramValue(p, 'events-since-subscription-start')).toBe('1');
  });

  it('keeps every event while the receiver is down, goes to error, recovers and delivers all in order', async () => {
    const down = await new WebhookReceiver().start();
    try {
      const sub = await createSub(topicSubscription(down.url, ['Observation?patient=Patient/p3']));
      await down.waitFor((r) => r.some((x) => typeOf(x) === 'handshake'));
      await waitStatus(sub.id!, 'active');
      down.answer = 503;
      for (let i = 0; i < 6; i++) await postObs(heartRate('p3', 140 + i));
      await waitStatus(sub.id!, 'error');
      down.answer = 200;
      await down.waitFor(() => down.events().flatMap(eventNumbers).length >= 6);
      await waitStatus(sub.id!, 'active');
      const numbers = down.events().flatMap(eventNumbers);
      expect(numbers).toEqual([1, 2, 3, 4, 5, 6]);
      const values = down.events().flatMap((r) => (r.bundle?.entry ?? []).slice(1).map((e) => (e.resource as Observation).valueQuantity?.value));
      expect(values).toEqual([140, 141, 142, 143, 144, 145]);

      // $events replays by number, id-only on request.
      const ev = JSON.parse((await ctx.request.get(`/fhir/Subscription/${sub.id}/$events?eventsSinceNumber=2&eventsUntilNumber=4&content=id-only`)).text) as Bundle;
      expect(ev.type).toBe('history');
      const sp = ev.entry?.[0].resource as Parameters;
      expect(paramValue(sp, 'type')).toBe('query-event');
      expect(sp.parameter?.filter((x) => x.name === 'notification-event').map((x) => x.part?.[0].valueString)).toEqual(['2', '3', '4']);
      expect(ev.entry?.slice(1).every((e) => e.resource === undefined && e.fullUrl?.includes('/Observation/'))).toBe(true);
    } finally {
      await down.close();
    }
  });

  it('refuses what it cannot honour, with a reason', async () => {
    const cases: Array<[Subscription, string]> = [
      [{ ...topicSubscription(hook.url, []), criteria: 'http://example.org/SubscriptionTopic/nope' }, 'Unknown SubscriptionTopic'],
      [topicSubscription(hook.url, ['Observation?status=final']), 'cannot be filtered by status'],
      [topicSubscription(hook.url, ['Observation?code=http://loinc.org|8867-4&_sort=date']), 'cannot be filtered by _sort'],
      [{ ...topicSubscription(hook.url, []), channel: { type: 'email', endpoint: 'mailto:a@b.c' } } as Subscription, 'not supported'],
      [{ ...topicSubscription('ftp://x/y', []) }, 'absolute http(s) endpoint'],
      [{ ...topicSubscription(hook.url, []), channel: { type: 'rest-hook', endpoint: hook.url, payload: 'application/fhir+xml' } } as Subscription, 'Payload type'],
      [{ resourceType: 'Subscription', status: 'requested', reason: 'x', criteria: 'Observation?nonsense-param=1', channel: { type: 'rest-hook', endpoint: hook.url } } as Subscription, 'cannot be evaluated'],
      [{ resourceType: 'Subscription', status: 'requested', reason: 'x', criteria: 'Observation?subject.name=Smith', channel: { type: 'rest-hook', endpoint: hook.url } } as Subscription, 'cannot be evaluated'],
      [{ ...topicSubscription(hook.url, [], { header: ['Content-Type: text/plain'] }) }, 'set by the server'],
    ];
    for (const [sub, why] of cases) {
      const res = await ctx.request.post('/fhir/Subscription').set('Content-Type', FHIR_JSON).send(JSON.stringify(sub));
      expect([res.status, res.text]).toEqual([422, expect.stringContaining(why)]);
      const oo = JSON.parse(res.text) as { resourceType: string; issue: Array<{ code: string; details?: { coding?: Array<{ code?: string }> } }> };
      expect(oo.resourceType).toBe('OperationOutcome');
      expect(oo.issue[0].code).toBe('invalid');
      expect(oo.issue[0].details?.coding?.[0].code).toMatch(/^MSG_SUBSCRIPTION_/);
    }
  });

  it('R4 criteria subscription with a payload: PUT [endpoint]/[type]/[id] with the resource and channel.header, exactly what the same search finds', async () => {
    const sub = await createSub({
      resourceType: 'Subscription',
      status: 'requested',
      reason: 'Very high heart rate',
      criteria: 'Observation?code=http://loinc.org|8867-4&value-quantity=gt120',
      channel: { type: 'rest-hook', endpoint: `${hook.url}/r4base/`, payload: 'application/fhir+json', header: ['Authorization: Bearer receiver-token'] },
    } as Subscription);
    await waitStatus(sub.id!, 'active');
    await postObs(heartRate('p9', 110));
    const high = await postObs(heartRate('p9', 125));
    const isMine = (r: Received) => r.headers['x-vigil-subscription'] === sub.id;
    await hook.waitFor((all) => all.some((r) => isMine(r) && r.method === 'PUT'));
    const mine = hook.received.filter(isMine);
    // R4 has no handshake or notification Bundle: the endpoint is a FHIR base that takes updates.
    expect(mine.map((r) => [r.method, r.url])).toEqual([['PUT', `/hook/r4base/Observation/${high.id}`]]);
    expect(mine[0].headers.authorization).toBe('Bearer receiver-token');
    expect(mine[0].headers['content-type']).toMatch(/^application\/fhir\+json/);
    expect(mine[0].bundle).toBeUndefined();
    expect(mine[0].resource).toMatchObject({ resourceType: 'Observation', id: high.id, meta: { versionId: '1' } });
    const search = JSON.parse((await ctx.request.get('/fhir/Observation?code=http://loinc.org|8867-4&value-quantity=gt120&patient=p9')).text) as Bundle;
    expect(search.entry?.map((e) => e.resource?.id)).toEqual([high.id]);
  });

  it('R4 criteria subscription without a payload: a POST with no body to the endpoint', async () => {
    const sub = await createSub({
      resourceType: 'Subscription',
      status: 'requested',
      reason: 'Any heart rate of p10',
      criteria: 'Observation?code=http://loinc.org|8867-4&patient=p10',
      channel: { type: 'rest-hook', endpoint: `${hook.url}/ping`, header: ['X-Receiver: r4'] },
    } as Subscription);
    await waitStatus(sub.id!, 'active');
    await postObs(heartRate('p10', 80));
    const pings = (all: Received[]) => all.filter((r) => r.headers['x-vigil-subscription'] === sub.id && r.headers['x-vigil-notification-type'] === 'event-notification');
    await hook.waitFor((all) => pings(all).length >= 1);
    const p = pings(hook.received)[0];
    expect([p.method, p.url, p.body, p.headers['content-type'], p.headers['x-receiver']]).toEqual(['POST', '/hook/ping', '', undefined, 'r4']);
  });

  it('websocket: bind-with-token receives the handshake and then notifications', async () => {
    const sub = await createSub({ ...topicSubscription('', ['Observation?patient=Patient/w1']), channel: { type: 'websocket', payload: 'application/fhir+json', _payload: { extension: [{ url: `${BACKPORT}/backport-payload-content`, valueCode: 'id-only' }] } } } as Subscription);
    await waitStatus(sub.id!, 'active');
    const tok = JSON.parse((await ctx.request.get(`/fhir/Subscription/${sub.id}/$get-ws-binding-token`)).text) as Parameters;
    const token = paramValue(tok, 'token') as string;
    const url = paramValue(tok, 'websocket-url') as string;
    expect(url).toBe(`${ctx.baseUrl.replace('http', 'ws')}/websocket`);
    const ws = new WebSocket(url);
    const messages: string[] = [];
    ws.on('message', (d) => messages.push(d.toString()));
    await new Promise((r) => ws.once('open', r));
    ws.send(`bind-with-token ${token}`);
    const until = async (pred: () => boolean) => {
      for (let i = 0; i < 400 && !pred(); i++) await new Promise((r) => setTimeout(r, 25));
      expect(pred()).toBe(true);
    };
    await until(() => messages.some((m) => m.includes('"handshake"')));
    const obs = await postObs(heartRate('w1', 35));
    await until(() => messages.some((m) => m.includes('"event-notification"')));
    const note = JSON.parse(messages.find((m) => m.includes('"event-notification"'))!) as Bundle;
    expect(note.entry?.[1].fullUrl).toContain(`/Observation/${obs.id}`);
    expect(note.entry?.[1].resource).toBeUndefined();
    ws.close();

    // A bad token is refused in-band.
    const bad = new WebSocket(url);
    const badMsgs: string[] = [];
    bad.on('message', (d) => badMsgs.push(d.toString()));
    await new Promise((r) => bad.once('open', r));
    bad.send('bind-with-token nope');
    await until(() => badMsgs.length > 0);
    expect(badMsgs[0]).toMatch(/^error token unknown or expired/);
    bad.close();
  });

  it('advertises topics, channels and the websocket URL in the CapabilityStatement', async () => {
    const cs = JSON.parse((await ctx.request.get('/fhir/metadata')).text) as { rest: Array<{ extension?: Array<{ url: string; valueUri?: string }>; resource: Array<{ type: string; extension?: Array<{ url: string; valueCanonical?: string }> }> }> };
    const subRes = cs.rest[0].resource.find((r) => r.type === 'Subscription');
    expect(subRes?.extension?.map((e) => e.valueCanonical).filter(Boolean)).toEqual(expect.arrayContaining([ABNORMAL]));
    expect(cs.rest[0].extension?.some((e) => e.valueUri?.endsWith('/websocket'))).toBe(true);
  });
});
