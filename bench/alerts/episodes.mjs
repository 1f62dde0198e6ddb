// Alert-episode benchmark: the two aims of issue 10, and nothing else. JSON lines on stdout.
//
// (1) post-to-raised-notification-ms: with BENCH_EPISODES_SUBS (1,000) active alert-episode
//     rest-hook Subscriptions, created through the API (one matches every heart-rate episode; the
//     others are pinned to other patients), the time from the POST of a high heart rate for a
//     patient with no open episode to the receipt, at a loopback webhook, of the notification
//     carrying that episode's Flag ("raised"). Aim: p99 < 100 ms.
// (2) tracking-plus-news2-ms-per-observation: the alerting consumer's own time per Observation
//     (each outbox batch's time shared among its Observations, src/alerting/service.ts
//     observationCosts), over a steady stream of vital signs (every NEWS2 parameter and abnormal
//     heart rates, episodes open) after a warm-up round. Aim: < 2 ms. Beside it, the raw database
//     round trip (point read, insert) on the same database, so the ratio shows our own cost.
//
// Run (after `npm run build`): node bench/alerts/episodes.mjs   (a few minutes on a quiet machine)
// Also printed: subscription-setup-s, how long the 1,000 Subscriptions took to create and handshake.
// Env: BENCH_EPISODES_SUBS (1000), BENCH_EPISODES_SAMPLES (200), BENCH_EPISODES_RATE (10 per s),
//      BENCH_EPISODES_PATIENTS (10), BENCH_EPISODES_ROUNDS (5), MONGODB_URI (else embedded FerretDB).
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';
import { emit, percentiles, request, startStack } from '../lib.mjs';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const SUBS = Number(process.env.BENCH_EPISODES_SUBS ?? 1000);
const SAMPLES = Number(process.env.BENCH_EPISODES_SAMPLES ?? 200);
const RATE = Number(process.env.BENCH_EPISODES_RATE ?? 10);
const PATIENTS = Number(process.env.BENCH_EPISODES_PATIENTS ?? 10);
const ROUNDS = Number(process.env.BENCH_EPISODES_ROUNDS ?? 5);
const TOPIC = 'http://vigil-fhir.org/fhir/SubscriptionTopic/alert-episode';
const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition';
const HEADERS = { 'Content-Type': 'application/fhir+json' };
const { flagIdOf } = require(path.join(root, 'dist/alerting/flag.js'));

function vital(patient, code, value, unit) {
  return {
    resourceType: 'Observation', status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code }] }, subject: { reference: `Patient/${patient}` },
    effectiveDateTime: new Date().toISOString(), valueQuantity: { value, unit, system: 'http://unitsofmeasure.org', code: unit },
  };
}

function subscription(endpoint, filter) {
  return {
    resourceType: 'Subscription', status: 'requested', reason: 'bench', criteria: TOPIC,
    _criteria: { extension: [{ url: `${BACKPORT}/backport-filter-criteria`, valueString: filter }] },
    channel: { type: 'rest-hook', endpoint, payload: 'application/fhir+json', _payload: { extension: [{ url: `${BACKPORT}/backport-payload-content`, valueCode: 'id-only' }] } },
  };
}

/** A loopback webhook: when each Flag id first arrived, and how many handshakes came. */
function receiver() {
  const arrived = new Map();
  let handshakes = 0;
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const at = performance.now();
      res.end();
      const body = Buffer.concat(chunks).toString('utf8');
      if (!body) return;
      const b = JSON.parse(body);
      if (b.entry?.[0]?.resource?.parameter?.find((p) => p.name === 'type')?.valueCode === 'handshake') handshakes++;
      for (const e of (b.entry ?? []).slice(1)) {
        const id = (e.fullUrl ?? e.resource?.id ?? '').split('/').pop();
        if (id && !arrived.has(id)) arrived.set(id, at);
      }
    });
  });
  return {
    arrived, handshakes: () => handshakes,
    async start() {
      await new Promise((r) => server.listen(0, '127.0.0.1', r));
      return `http://127.0.0.1:${server.address().port}/hook`;
    },
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

async function until(f, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** POST; set-up requests (`patient`) wait out back-pressure (503 + Retry-After), measured ones must not meet it. */
async function post(stack, type, body, { patient = false } = {}) {
  for (let attempt = 0; ; attempt++) {
    const r = await request(`${stack.baseUrl}/${type}`, { method: 'POST', headers: HEADERS, body: JSON.stringify(body) });
    if (r.status === 201) return JSON.parse(r.body);
    if (r.status === 503 && patient && attempt < 600) {
      await new Promise((res) => setTimeout(res, 1000));
      continue;
    }
    throw new Error(`POST ${type}: ${r.status} ${r.body}`);
  }
}

const round = (x) => Math.round(x * 100) / 100;
const idle = (stack) => until(async () => (await stack.vigil.outbox.oldestPendingAt()) === undefined, 120_000, 'the outbox to drain');

/** Raw database round trips on the same database: point reads and single inserts. */
async function rawRoundTrips(db) {
  const col = db.collection('bench_raw');
  const reads = [];
  const inserts = [];
  for (let i = 0; i < 200; i++) {
    let t = performance.now();
    await col.insertOne({ _id: `raw-${i}`, at: new Date(), v: i });
    inserts.push(performance.now() - t);
    t = performance.now();
    await col.findOne({ _id: `raw-${i}` });
    reads.push(performance.now() - t);
  }
  await col.drop().catch(() => undefined);
  return { pointRead: percentiles(reads), insert: percentiles(inserts) };
}

async function latency(stack, hook, endpoint, raw) {
  const setup = performance.now();
  await post(stack, 'Subscription', subscription(endpoint, 'Flag?code=http://loinc.org|8867-4'), { patient: true });
  for (let i = 1; i < SUBS; i += 16) {
    const n = Math.min(16, SUBS - i);
    await Promise.all(Array.from({ length: n }, (_, k) => post(stack, 'Subscription', subscription(endpoint, `Flag?patient=Patient/other-${i + k}`), { patient: true })));
  }
  const posted = performance.now();
  await until(() => hook.handshakes() >= SUBS, Math.max(150_000, SUBS * 300), `${SUBS} handshakes`);
  const handshaken = performance.now();
  await idle(stack);
  emit({
    bench: 'alerts', figure: 'subscription-setup-s', activeSubscriptions: SUBS,
    postedS: round((posted - setup) / 1000), allHandshakesS: round((handshaken - setup) / 1000), idleS: round((performance.now() - setup) / 1000),
    note: 'POSTs 16 at a time; handshake = the rest-hook handshake Bundle received; idle = the outbox drained (every Subscription active)',
    database: stack.database,
  });
  await post(stack, 'Observation', vital('warm-up', '8867-4', 115, '/min'), { patient: true });
  await until(() => hook.arrived.has(flagIdOf('Patient/warm-up|8867-4', 1)), 30_000, 'the warm-up notification');
  await idle(stack);

  const sent = new Map();
  const t0 = performance.now();
  const posts = [];
  for (let i = 0; i < SAMPLES; i++) {
    const wait = t0 + (i * 1000) / RATE - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const patient = `raise-${i}`;
    const start = performance.now();
    sent.set(flagIdOf(`Patient/${patient}|8867-4`, 1), start);
    posts.push(post(stack, 'Observation', vital(patient, '8867-4', 115, '/min')));
  }
  await Promise.all(posts);
  await until(() => [...sent.keys()].every((id) => hook.arrived.has(id)), 60_000, 'raised notifications');
  const lat = [...sent].map(([id, start]) => hook.arrived.get(id) - start);
  emit({ bench: 'alerts', figure: 'post-to-raised-notification-ms', activeSubscriptions: SUBS, matching: 1, ratePerSec: RATE, samples: lat.length, ...percentiles(lat), aimP99Ms: 100, rawDbRoundTripMs: raw, database: stack.database });
}

async function perObservation(stack, raw) {
  const set = (p, round) => [
    vital(p, '9279-1', 22, '/min'), vital(p, '59408-5', 95, '%'), vital(p, '3151-8', 21, '%'), vital(p, '8480-6', 105, 'mm[Hg]'),
    vital(p, '8867-4', 115 + (round % 3), '/min'), vital(p, '8310-5', 38.4, 'Cel'),
    {
      ...vital(p, '67775-7', 0, '1'), valueQuantity: undefined,
      valueCodeableConcept: { coding: [{ system: 'http://snomed.info/sct', code: '248234009', display: 'Alert' }] },
    },
  ];
  const interval = 1000 / (RATE * 2);
  let observations = 0;
  for (let round = 0; round <= ROUNDS; round++) {
    for (let p = 0; p < PATIENTS; p++) {
      for (const o of set(`cost-${p}`, round)) {
        const t = performance.now();
        await post(stack, 'Observation', o);
        observations++;
        const wait = interval - (performance.now() - t);
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
    }
    await idle(stack);
    // Round 0 opens the episodes and loads the patients: the steady state starts after it.
    if (round === 0) stack.vigil.alerting.observationCosts(true);
  }
  const costs = stack.vigil.alerting.observationCosts(true);
  emit({
    bench: 'alerts', figure: 'tracking-plus-news2-ms-per-observation', source: 'consumer timing (in-process)', samples: costs.length,
    ...percentiles(costs), aimMs: 2, patients: PATIENTS, rounds: ROUNDS, posted: observations,
    rawDbRoundTripMs: raw, database: stack.database,
    note: 'each batch time shared among its Observations; includes the batch commit of Flags and NEWS2 Observations',
  });
}

const stack = await startStack();
const hook = receiver();
try {
  const endpoint = await hook.start();
  const raw = await rawRoundTrips(stack.db);
  await latency(stack, hook, endpoint, raw);
  await perObservation(stack, raw);
} finally {
  await hook.close();
  await stack.stop();
}
