import type { Subscription } from 'fhir/r4';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { createTestContext, FHIR_JSON, heartRate, type TestContext } from '../../support/context';
import { outboxIdle } from '../../support/outbox-idle';
import { WebhookReceiver } from '../subscriptions/receiver';

/** GET /metrics parsed by a Prometheus text-format parser, checked to move when traffic moves. */
const TOKEN = 'metrics-token-0123456789abcdef';
let ctx: TestContext;
let hook: WebhookReceiver;

interface Family {
  name: string;
  type: string;
  metrics: { value?: string; labels?: Record<string, string>; count?: string; sum?: string; buckets?: Record<string, string> }[];
}

async function scrape(): Promise<Map<string, Family>> {
  const r = await ctx.request.get('/metrics').set('Authorization', `Bearer ${TOKEN}`);
  expect(r.status).toBe(200);
  expect(r.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  const families = parsePrometheusTextFormat(r.text) as Family[];
  // The parser keeps no labels on histogram series; read their `_count` samples as untyped ones.
  const untyped = parsePrometheusTextFormat(r.text.replace(/^# TYPE \S+ histogram$/gm, '')) as Family[];
  const out = new Map(families.map((f) => [f.name, f]));
  // Series of one histogram are interleaved, so the same `_count` name comes back in several groups.
  for (const f of untyped) {
    if (!f.name.endsWith('_count')) continue;
    const seen = out.get(f.name);
    out.set(f.name, seen ? { ...seen, metrics: [...seen.metrics, ...f.metrics] } : f);
  }
  return out;
}

/** The value (counters, gauges) or count (histograms) of the sample whose labels include `labels`. */
function sample(m: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const f = m.get(name);
  if (!f) return 0;
  const hit = f.metrics.filter((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v));
  return hit.reduce((sum, s) => sum + Number(s.count ?? s.value ?? 0), 0);
}

beforeAll(async () => {
  ctx = await createTestContext({ listen: true, env: { METRICS_TOKEN: TOKEN, SUBSCRIPTION_POLL_MS: '50' } });
  hook = await new WebhookReceiver().start();
});
afterAll(async () => {
  await hook.close();
  await ctx.close();
});

test('the endpoint needs its own bearer token', async () => {
  expect((await ctx.request.get('/metrics')).status).toBe(401);
  expect((await ctx.request.get('/metrics').set('Authorization', 'Bearer wrong-token-wrong-token')).status).toBe(401);
  const off = await createTestContext();
  try {
    expect((await off.request.get('/metrics').set('Authorization', `Bearer ${TOKEN}`)).status).toBe(404);
  } finally {
    await off.close();
  }
});

test('request, ingest, database, delivery and subscription metrics move with traffic', async () => {
  const before = await scrape();
  for (const name of ['vigil_nodejs_eventloop_lag_seconds', 'vigil_process_resident_memory_bytes', 'vigil_nodejs_heap_size_used_bytes', 'vigil_outbox_lag_seconds', 'vigil_db_write_latency_seconds']) {
    expect(before.has(name)).toBe(true);
  }
  expect(before.get('vigil_http_request_duration_seconds')?.type).toBe('HISTOGRAM');

  const sub = await ctx.request
    .post('/fhir/Subscription')
    .set('Content-Type', FHIR_JSON)
    .send(JSON.stringify({ resourceType: 'Subscription', status: 'requested', reason: 'metrics', criteria: 'Observation?code=http://loinc.org|8867-4&value-quantity=gt150', channel: { type: 'rest-hook', endpoint: hook.url, payload: 'application/fhir+json' } } as Subscription));
  expect(sub.status).toBe(201);
  const deadline = Date.now() + 20_000;
  while (JSON.parse((await ctx.request.get(`/fhir/Subscription/${sub.body.id}`)).text).status !== 'active') {
    if (Date.now() > deadline) throw new Error('subscription never became active');
    await new Promise((r) => setTimeout(r, 50));
  }

  for (let i = 0; i < 3; i++) {
    const r = await ctx.request.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(JSON.stringify(heartRate('m1', 160 + i)));
    expect(r.status).toBe(201);
  }
  expect((await ctx.request.get('/fhir/Observation?patient=m1')).status).toBe(200);
  // An R4 criteria rest-hook with a payload is a PUT [endpoint]/Observation/[id] per event.
  await hook.waitFor((received) => received.some((r) => r.method === 'PUT'));
  await outboxIdle(ctx.vigil);
  // Deliveries happen in the background; wait (bounded) until the third event is counted.
  let after = await scrape();
  while (sample(after, 'vigil_notification_events_delivered_total', { channel: 'rest-hook' }) - sample(before, 'vigil_notification_events_delivered_total', { channel: 'rest-hook' }) < 3) {
    if (Date.now() > deadline + 20_000) throw new Error('deliveries were not counted');
    await new Promise((r) => setTimeout(r, 50));
    after = await scrape();
  }

  const delta = (name: string, labels: Record<string, string> = {}) => sample(after, name, labels) - sample(before, name, labels);
  expect(delta('vigil_http_requests_total', { interaction: 'create', type: 'Observation', status: '201' })).toBe(3);
  expect(delta('vigil_http_request_duration_seconds_count', { interaction: 'create', type: 'Observation', status: '201' })).toBe(3);
  expect(delta('vigil_http_requests_total', { interaction: 'search-type', type: 'Observation', status: '200' })).toBe(1);
  // (at least: alerting may write derived Observations such as NEWS2 scores)
  expect(delta('vigil_resources_committed_total', { type: 'Observation' })).toBeGreaterThanOrEqual(3);
  expect(delta('vigil_db_command_duration_seconds_count', { command: 'insert', outcome: 'ok' })).toBeGreaterThanOrEqual(6);
  expect(delta('vigil_notification_attempts_total', { channel: 'rest-hook' })).toBeGreaterThanOrEqual(1);
  expect(delta('vigil_notification_delay_seconds_count', { channel: 'rest-hook' })).toBeGreaterThanOrEqual(3);
  expect(sample(after, 'vigil_notification_failures_total', { channel: 'rest-hook' })).toBe(0);
  expect(sample(after, 'vigil_subscriptions_active', { channel: 'rest-hook' })).toBe(1);
  expect(sample(after, 'vigil_subscriptions_active', { channel: 'websocket' })).toBe(0);
  // Three heart rates over 150/min for one patient: one open alert episode.
  expect(after.has('vigil_alert_episodes_open')).toBe(true);
});

test('a module can register a gauge read at scrape time (the alerting hook)', async () => {
  let open = 2;
  ctx.vigil.metrics.gauge({ name: 'vigil_test_episodes_open', help: 'test gauge', labelNames: ['severity'], collect: () => [{ labels: { severity: 'high' }, value: open }] });
  expect(sample(await scrape(), 'vigil_test_episodes_open', { severity: 'high' })).toBe(2);
  open = 5;
  expect(sample(await scrape(), 'vigil_test_episodes_open', { severity: 'high' })).toBe(5);
});
