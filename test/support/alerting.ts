import type { Bundle, Flag, Observation, Parameters, Subscription } from 'fhir/r4';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { createTestContext, FHIR_JSON, type TestContext, type TestContextOptions } from './context';
import { topicSubscription } from '../integration/subscriptions/fixtures';
import { paramValue, WebhookReceiver } from '../integration/subscriptions/receiver';

/**
 * The alerting suites' shared set-up and helpers: one real app listening on loopback (fast
 * subscription polling, quiet period off unless asked) and, when asked, a real webhook receiver,
 * built before the suite and closed after it.
 */
export interface AlertingSuite {
  ctx: TestContext;
  hook: WebhookReceiver;
}

export const ALERTING_ENV: Record<string, string> = { SUBSCRIPTION_POLL_MS: '50', ALERT_QUIET_PERIOD_MIN: '0' };

/** Registers beforeAll/afterAll for a suite; the returned object is filled in before the first test. */
export function useAlertingSuite(opts: { env?: Record<string, string>; webhook?: boolean } & Omit<TestContextOptions, 'env'> = {}): AlertingSuite {
  const { env, webhook = true, ...rest } = opts;
  const suite = {} as AlertingSuite;
  beforeAll(async () => {
    suite.ctx = await createTestContext({ listen: true, ...rest, env: { ...ALERTING_ENV, ...env } });
    if (webhook) suite.hook = await new WebhookReceiver().start();
  });
  afterAll(async () => {
    await suite.hook?.close();
    await suite.ctx?.close();
  });
  return suite;
}

export const ALERT_TOPIC = 'http://vigil-fhir.org/fhir/SubscriptionTopic/alert-episode';
export const EVENT_EXT = 'http://vigil-fhir.org/fhir/StructureDefinition/alert-event';

export const uid = (p: string) => `${p}-${randomBytes(4).toString('hex')}`;

export function eventOf(f: Flag | undefined): string | undefined {
  return f?.extension?.find((e) => e.url === EVENT_EXT)?.valueCode;
}

export async function post<T>(ctx: TestContext, type: string, body: unknown): Promise<T> {
  const res = await ctx.request.post(`/fhir/${type}`).set('Content-Type', FHIR_JSON).send(JSON.stringify(body));
  if (res.status !== 201) throw new Error(`POST ${type}: ${res.status} ${res.text}`);
  return JSON.parse(res.text) as T;
}

export async function getJson<T>(ctx: TestContext, path: string): Promise<T> {
  const res = await ctx.request.get(`/fhir/${path}`);
  if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${res.text}`);
  return JSON.parse(res.text) as T;
}

/**
 * Waits until the outbox has handed every committed version to its consumers, including the
 * Flags and NEWS2 Observations alerting writes itself (their intents exist before the intent of
 * the reading that caused them is let go, so an empty outbox means the cascade is done).
 */
export async function settle(ctx: TestContext): Promise<void> {
  ctx.vigil.outbox.nudge();
  await until('the outbox to drain', async () => ((await ctx.db.collection('outbox').countDocuments({})) === 0 ? true : undefined), 30_000);
}

export async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function activeSubscription(ctx: TestContext, sub: Subscription): Promise<Subscription> {
  const created = await post<Subscription>(ctx, 'Subscription', sub);
  await until(`Subscription/${created.id} active`, async () => ((await getJson<Subscription>(ctx, `Subscription/${created.id}`)).status === 'active' ? true : undefined));
  return created;
}

export function alertSubscription(endpoint: string, patient: string, extraFilter = ''): Subscription {
  return topicSubscription(endpoint, ALERT_TOPIC, [`Flag?patient=Patient/${patient}${extraFilter}`]);
}

/** Events recorded for a subscription so far (SubscriptionStatus events-since-subscription-start). */
export async function eventCount(ctx: TestContext, subId: string): Promise<number> {
  const b = await getJson<Bundle>(ctx, `Subscription/${subId}/$status`);
  return Number(paramValue(b.entry?.[0]?.resource as Parameters, 'events-since-subscription-start'));
}

/** The Flags carried by the notifications received (in event-number order). */
export function flagsIn(bundles: Bundle[]): Flag[] {
  return bundles.flatMap((b) => (b.entry ?? []).slice(1).map((e) => e.resource as Flag).filter((r) => r?.resourceType === 'Flag'));
}

export class WsClient {
  readonly messages: string[] = [];
  private ws!: WebSocket;
  async bind(ctx: TestContext, subId: string): Promise<this> {
    const tok = await getJson<Parameters>(ctx, `Subscription/${subId}/$get-ws-binding-token`);
    this.ws = new WebSocket(paramValue(tok, 'websocket-url') as string);
    this.ws.on('message', (d) => this.messages.push(d.toString()));
    await new Promise((r) => this.ws.once('open', r));
    this.ws.send(`bind-with-token ${paramValue(tok, 'token') as string}`);
    await until('websocket handshake', () => (this.messages.some((m) => m.includes('"handshake"')) ? true : undefined));
    return this;
  }
  notifications(): Bundle[] {
    return this.messages.map((m) => JSON.parse(m) as Bundle).filter((b) => JSON.stringify(b.entry?.[0]).includes('"event-notification"'));
  }
  close(): void {
    this.ws.close();
  }
}

export function hookNotifications(hook: WebhookReceiver, subId: string): Bundle[] {
  return hook.events().filter((r) => r.headers['x-vigil-subscription'] === subId).map((r) => r.bundle!);
}

export function vital(patient: string, loinc: string, value: number, unit: string, extra: Partial<Observation> = {}): Observation {
  return {
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: loinc }] },
    subject: { reference: `Patient/${patient}` },
    effectiveDateTime: new Date().toISOString(),
    valueQuantity: { value, unit, system: 'http://unitsofmeasure.org', code: unit },
    ...extra,
  };
}
