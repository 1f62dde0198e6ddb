import type { Observation, Parameters, Subscription } from 'fhir/r4';
import WebSocket from 'ws';
import { createTestContext, FHIR_JSON, type TestContext } from '../../support/context';
import { resourceText } from '../../support/json-text';
import { ABNORMAL, BACKPORT, topicSubscription } from './fixtures';
import { paramValue, typeOf, WebhookReceiver } from './receiver';

/** Full-resource notifications carry decimals exactly as the sender wrote them (raw text compared). */

let ctx: TestContext;
let hook: WebhookReceiver;

beforeAll(async () => {
  ctx = await createTestContext({ listen: true, env: { SUBSCRIPTION_POLL_MS: '50', SUBSCRIPTION_BACKOFF_BASE_MS: '50', SUBSCRIPTION_BACKOFF_MAX_MS: '200' } });
  hook = await new WebhookReceiver().start();
});
afterAll(async () => {
  await hook.close();
  await ctx.close();
});

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 400; i++) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function createActive(sub: Subscription): Promise<Subscription> {
  const res = await ctx.request.post('/fhir/Subscription').set('Content-Type', FHIR_JSON).send(JSON.stringify(sub));
  expect(res.status).toBe(201);
  const created = JSON.parse(res.text) as Subscription;
  return until(`Subscription/${created.id} active`, async () => {
    const s = JSON.parse((await ctx.request.get(`/fhir/Subscription/${created.id}`)).text) as Subscription;
    return s.status === 'active' ? s : undefined;
  });
}

const reading = (patient: string) => `{"resourceType":"Observation","status":"final",
  "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
  "code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},
  "subject":{"reference":"Patient/${patient}"},"effectiveDateTime":"2024-05-01T10:00:00Z",
  "valueQuantity":{"value":150.0,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"},
  "component":[{"code":{"text":"variability"},"valueQuantity":{"value":66.899999999999991}},{"code":{"text":"tiny"},"valueQuantity":{"value":1E-22}}]}`;

it('rest-hook, websocket and $events full-resource payloads carry the stored text of every decimal', async () => {
  const patient = `pdn-${Date.now().toString(36)}`;
  const filter = [`Observation?patient=Patient/${patient}`];
  const rest = await createActive(topicSubscription(hook.url, ABNORMAL, filter));
  const wsSub = await createActive({
    ...topicSubscription('', ABNORMAL, filter),
    channel: { type: 'websocket', payload: 'application/fhir+json', _payload: { extension: [{ url: `${BACKPORT}/backport-payload-content`, valueCode: 'full-resource' }] } },
  } as Subscription);
  const tok = JSON.parse((await ctx.request.get(`/fhir/Subscription/${wsSub.id}/$get-ws-binding-token`)).text) as Parameters;
  const ws = new WebSocket(paramValue(tok, 'websocket-url') as string);
  const messages: string[] = [];
  ws.on('message', (d) => messages.push(d.toString()));
  try {
    await new Promise((r) => ws.once('open', r));
    ws.send(`bind-with-token ${String(paramValue(tok, 'token'))}`);
    await until('websocket handshake', () => (messages.some((m) => m.includes('"handshake"')) ? true : undefined));

    const posted = await ctx.request.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(reading(patient));
    expect(posted.status).toBe(201);
    const obs = JSON.parse(posted.text) as Observation;
    expect(obs.interpretation?.[0].coding?.[0].code).toBe('HH'); // derived by the server: the topic fires
    const stored = (await ctx.request.get(`/fhir/Observation/${obs.id}`)).text;
    for (const t of ['"value":150.0,', '"value":66.899999999999991}', '"value":1E-22}']) expect(stored).toContain(t);

    const note = await until('rest-hook notification', () =>
      hook.events().find((r) => r.headers['x-vigil-subscription'] === rest.id && typeOf(r) === 'event-notification'),
    );
    expect(resourceText(note.body, 'Observation', obs.id!)).toBe(stored);
    const pushed = await until('websocket notification', () => messages.find((m) => m.includes('"event-notification"')));
    expect(resourceText(pushed, 'Observation', obs.id!)).toBe(stored);
    const events = (await ctx.request.get(`/fhir/Subscription/${rest.id}/$events?content=full-resource`)).text;
    expect(resourceText(events, 'Observation', obs.id!)).toBe(stored);
  } finally {
    ws.close();
  }
});
