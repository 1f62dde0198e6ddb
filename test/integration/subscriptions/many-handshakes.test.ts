import type { Subscription } from 'fhir/r4';
import { createTestContext, FHIR_JSON, heartRate, type TestContext } from '../../support/context';
import { ABNORMAL, topicSubscription } from './fixtures';
import { eventNumbers, typeOf, WebhookReceiver } from './receiver';

/**
 * Many rest-hook Subscriptions created at once (their versions reach the outbox consumer in the
 * same batches, are applied together and handshaken in waves of shared lease claims): each gets
 * exactly one handshake and becomes active, and each then receives exactly the events it matches.
 */
const COUNT = 30;

describe('many Subscriptions at once', () => {
  let ctx: TestContext;
  let hook: WebhookReceiver;
  const tag = `many-${Date.now()}`;

  beforeAll(async () => {
    ctx = await createTestContext({ listen: true, env: { SUBSCRIPTION_POLL_MS: '50', NEWS2_ENABLED: 'false', ALERTING_ENABLED: 'false' } });
    hook = await new WebhookReceiver().start();
  });
  afterAll(async () => {
    await hook.close();
    await ctx.close();
  });

  const subOf = (r: { headers: Record<string, unknown> }) => String(r.headers['x-vigil-subscription']);

  it('handshakes each once, activates all, and notifies each only of its own patient', async () => {
    const created = await Promise.all(
      Array.from({ length: COUNT }, async (_, i) => {
        const sub = topicSubscription(hook.url, ABNORMAL, [`Observation?patient=Patient/${tag}-${i}`], {}, 'id-only');
        const res = await ctx.request.post('/fhir/Subscription').set('Content-Type', FHIR_JSON).send(JSON.stringify(sub));
        expect(res.status).toBe(201);
        return (JSON.parse(res.text) as Subscription).id!;
      }),
    );
    const ids = new Set(created);
    const handshakes = () => hook.received.filter((r) => typeOf(r) === 'handshake' && ids.has(subOf(r)));
    await hook.waitFor(() => new Set(handshakes().map(subOf)).size === COUNT, 60_000);

    // Active: the server's own status write after each handshake.
    const deadline = Date.now() + 30_000;
    for (const id of created) {
      for (;;) {
        const res = await ctx.request.get(`/fhir/Subscription/${id}`);
        if ((JSON.parse(res.text) as Subscription).status === 'active') break;
        if (Date.now() > deadline) throw new Error(`Subscription/${id} never became active`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }

    // Three patients' readings: exactly their own subscriptions hear of them, event number 1 each.
    const chosen = [3, 11, 27];
    for (const i of chosen) {
      const res = await ctx.request.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(JSON.stringify(heartRate(`${tag}-${i}`, 150)));
      expect(res.status).toBe(201);
    }
    const events = () => hook.received.filter((r) => typeOf(r) === 'event-notification' && ids.has(subOf(r)));
    await hook.waitFor(() => new Set(events().map(subOf)).size === chosen.length, 30_000);
    expect(new Set(events().map(subOf))).toEqual(new Set(chosen.map((i) => created[i])));
    for (const r of events()) expect(eventNumbers(r)).toEqual([1]);
    // Exactly one handshake each (none repeated by a second wave or a re-offered version).
    expect(handshakes()).toHaveLength(COUNT);
  }, 120_000);
});
