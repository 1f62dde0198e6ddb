// Alert-episode benchmark. (1) POST-to-webhook latency of a raised episode (a high heart rate for
// a patient without an open episode -> the Flag's "raised" notification) with 1,000 active
// alert-episode subscriptions (one matches; the others are pinned to other patients and seeded as
// state). (2) Per-Observation cost of episode tracking + NEWS2: committed Observations (vital
// signs of every NEWS2 parameter, abnormal heart rates) replayed through a fresh alerting
// instance, first time each (so every write it makes is real), timed per Observation.
// Figures are JSON lines. Env: BENCH_EPISODES_SUBS (1000), BENCH_EPISODES_SAMPLES (100),
// BENCH_EPISODES_RATE (5 per s), BENCH_EPISODES_OBS (300).
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';
import { emit, percentiles, request, startStack } from '../lib.mjs';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const SUBS = Number(process.env.BENCH_EPISODES_SUBS ?? 1000);
const SAMPLES = Number(process.env.BENCH_EPISODES_SAMPLES ?? 100);
const RATE = Number(process.env.BENCH_EPISODES_RATE ?? 5);
const OBS = Number(process.env.BENCH_EPISODES_OBS ?? 300);
const TOPIC = 'http://vigil-fhir.org/fhir/SubscriptionTopic/alert-episode';
const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition';
const HEADERS = { 'Content-Type': 'application/fhir+json' };
const { flagIdOf } = require(path.join(root, 'dist/alerting/flag.js'));

function vital(patient, code, value, unit, extra = {}) {
  return {
    resourceType: 'Observation', status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code }] }, subject: { reference: `Patient/${patient}` },
    effectiveDateTime: new Date().toISOString(), valueQuantity: { value, unit, system: 'http://unitsofmeasure.org', code: unit }, ...extra,
  };
}

function subscription(endpoint, filter) {
  return {
    resourceType: 'Subscription', status: 'requested', reason: 'bench', criteria: TOPIC,
    _criteria: { extension: [{ url: `${BACKPORT}/backport-filter-criteria`, valueString: filter }] },
    channel: { type: 'rest-hook', endpoint, payload: 'application/fhir+json', _payload: { extension: [{ url: `${BACKPORT}/backport-payload-content`, valueCode: 'id-only' }] } },
  };
}

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
        const id = e.fullUrl.split('/').pop();
        if (!arrived.has(id)) arrived.set(id, at);
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
    await new Promise((r) => setTimeout(r, 50));
  }
}

const drained = (db) => until(async () => (await db.collection('outbox').countDocuments({})) === 0, 600_000, 'outbox');

async function latency(stack, hook, endpoint) {
  const r = await request(`${stack.baseUrl}/Subscription`, { method: 'POST', headers: HEADERS, body: JSON.stringify(subscription(endpoint, 'Flag?code=http://loinc.org|8867-4')) });
  if (r.status !== 201) throw new Error(`Subscription POST failed: ${r.status} ${r.body}`);
  await until(() => hook.handshakes() >= 1, 120_000, 'handshake');
  const t = await until(() => stack.db.collection('sub_state').findOne({ status: 'active' }), 120_000, 'activation');
  const docs = [];
  for (let i = 1; i < SUBS; i++) {
    const id = `seeded-${i}`;
    docs.push({ ...t, _id: id, spec: { ...t.spec, id, filters: [{ resourceType: 'Flag', query: `patient=Patient/other-${i}` }] }, resourceVid: 1, handshakeVid: 0 });
  }
  if (docs.length) await stack.db.collection('sub_state').insertMany(docs);
  await stack.db.collection('sub_meta').updateOne({ _id: 'generation' }, { $inc: { n: 1 } }, { upsert: true });
  await request(`${stack.baseUrl}/Observation`, { method: 'POST', headers: HEADERS, body: JSON.stringify(vital('warm-up', '8867-4', 115, '/min')) });
  await drained(stack.db);
  await new Promise((r) => setTimeout(r, 1000));

  const sent = new Map();
  const t0 = performance.now();
  const posts = [];
  for (let i = 0; i < SAMPLES; i++) {
    const wait = t0 + (i * 1000) / RATE - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const patient = `bench-${i}`;
    const start = performance.now();
    posts.push(request(`${stack.baseUrl}/Observation`, { method: 'POST', headers: HEADERS, body: JSON.stringify(vital(patient, '8867-4', 115, '/min')) }).then((res) => {
      if (res.status !== 201) throw new Error(`POST failed: ${res.status}`);
      sent.set(flagIdOf(`Patient/${patient}|8867-4`, 1), start);
    }));
  }
  await Promise.all(posts);
  await until(() => [...sent.keys()].every((id) => hook.arrived.has(id)), 120_000, 'raised notifications');
  const lat = [...sent].map(([id, start]) => hook.arrived.get(id) - start);
  emit({ bench: 'alerts', figure: 'post-to-raised-episode-ms', subscriptions: SUBS, matching: 1, ratePerSec: RATE, samples: lat.length, ...percentiles(lat), database: stack.database });
}

/** Per-Observation cost of episode tracking + NEWS2, replaying committed Observations through a fresh instance. */
async function perObservation(stack) {
  const { createAlerting } = require(path.join(root, 'dist/alerting/index.js'));
  const { loadConfig } = require(path.join(root, 'dist/config.js'));
  const pino = require('pino');
  const set = (p) => [
    vital(p, '9279-1', 22, '/min'), vital(p, '59408-5', 95, '%'), vital(p, '3151-8', 21, '%'), vital(p, '8480-6', 105, 'mm[Hg]'),
    vital(p, '8867-4', 115, '/min'), vital(p, '8310-5', 38.4, 'Cel'),
    { ...vital(p, '67775-7', 0, '1'), valueQuantity: undefined, valueCodeableConcept: { coding: [{ system: 'http://snomed.info/sct', code: '248234009' }] } },
  ];
  const ids = [];
  for (let i = 0; ids.length < OBS; i++) {
    for (const o of set(`cost-${i % 10}`)) {
      const r = await request(`${stack.baseUrl}/Observation`, { method: 'POST', headers: HEADERS, body: JSON.stringify(o) });
      ids.push(JSON.parse(r.body).id);
    }
  }
  await drained(stack.db);
  // A fresh instance on a fresh set of alerting collections would need a fresh database; instead
  // the running instance's own work is removed so the replay does it again, for real.
  for (const c of ['alert_keys', 'alert_state', 'alert_heads', 'alert_flags', 'alert_latest', 'alert_deadlines']) await stack.db.collection(c).deleteMany({});
  await stack.db.collection('Flag').deleteMany({});
  await stack.db.collection('history').deleteMany({ type: 'Flag' });
  const config = loadConfig({ BASE_URL: stack.baseUrl, LOG_LEVEL: 'silent', NEWS2_ENABLED: 'true', ALERT_QUIET_PERIOD_MIN: '60' }).alerting;
  const v = stack.vigil;
  const alerting = createAlerting({ db: stack.db, config, logger: pino({ level: 'silent' }), store: v.store, search: v.search, clock: () => new Date() });
  const hist = stack.db.collection('history');
  const times = [];
  for (const id of ids) {
    const h = await hist.findOne({ _id: `Observation/${id}/1` });
    const ev = { historyId: h._id, type: h.type, id: h.id, vid: h.vid + 1000, ts: h.ts, method: h.method, resource: h.res, previous: async () => undefined };
    const start = performance.now();
    await alerting.onCommitted([ev]);
    times.push(performance.now() - start);
  }
  emit({ bench: 'alerts', figure: 'episode-tracking-plus-news2-ms-per-observation', samples: times.length, ...percentiles(times), database: stack.database, note: 'includes the NEWS2 Observation and Flag writes' });
}

const stack = await startStack({ env: { SUBSCRIPTION_POLL_MS: '500', ALERT_QUIET_PERIOD_MIN: '0' } });
const hook = receiver();
try {
  const endpoint = await hook.start();
  await latency(stack, hook, endpoint);
  await perObservation(stack);
} finally {
  await hook.close();
  await stack.stop();
}
