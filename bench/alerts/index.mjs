// Alert latency benchmark: time from the POST of an abnormal Observation to its receipt at a
// webhook on loopback (p50/p99) at a steady rate, with 1, 100 and 1,000 active subscriptions
// (one of which matches; the others are pinned to other patients), plus the in-memory matching
// cost per event as subscriptions grow, and the raw-database baseline for the same work
// (insert the Observation + insert one notification row). Figures are JSON lines.
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';
import { emit, percentiles, request, startStack } from '../lib.mjs';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const COUNTS = (process.env.BENCH_ALERTS_SUBS ?? '1,100,1000').split(',').map(Number);
const RATE = Number(process.env.BENCH_ALERTS_RATE ?? 10); // Observations per second
const SAMPLES = Number(process.env.BENCH_ALERTS_SAMPLES ?? 200);
const ABNORMAL = 'http://vigil-fhir.org/fhir/SubscriptionTopic/abnormal-vital-sign';
const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition';
const HEADERS = { 'Content-Type': 'application/fhir+json' };

function abnormalHeartRate(patient, value) {
  return {
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
    subject: { reference: `Patient/${patient}` },
    effectiveDateTime: new Date().toISOString(),
    // No interpretation: the server derives HH from the shipped heart-rate range, and the topic fires.
    valueQuantity: { value, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
  };
}

function subscription(endpoint, patient) {
  return {
    resourceType: 'Subscription',
    status: 'requested',
    reason: 'bench',
    criteria: ABNORMAL,
    _criteria: { extension: [{ url: `${BACKPORT}/backport-filter-criteria`, valueString: `Observation?patient=Patient/${patient}` }] },
    channel: {
      type: 'rest-hook',
      endpoint,
      payload: 'application/fhir+json',
      _payload: { extension: [{ url: `${BACKPORT}/backport-payload-content`, valueCode: 'id-only' }] },
    },
  };
}

/** Webhook receiver: records when each Observation id arrived. */
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
      const type = b.entry?.[0]?.resource?.parameter?.find((p) => p.name === 'type')?.valueCode;
      if (type === 'handshake') handshakes++;
      for (const e of (b.entry ?? []).slice(1)) {
        const id = e.fullUrl.split('/').pop();
        if (!arrived.has(id)) arrived.set(id, at);
      }
    });
  });
  server.keepAliveTimeout = 60_000;
  return {
    arrived,
    handshakes: () => handshakes,
    async start() {
      await new Promise((r) => server.listen(0, '127.0.0.1', r));
      return `http://127.0.0.1:${server.address().port}/hook`;
    },
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

async function until(pred, ms, what) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Brings the number of active subscriptions up to `subs`: the first (the one that matches) is
 * created through the API and handshaken; the others, pinned to other patients, are seeded as
 * subscription state straight into the database (creating a thousand through the API measures
 * the store and the handshakes, not alerting), then the shared generation is bumped so the
 * server reloads its index.
 */
async function ensureSubscriptions(stack, hook, endpoint, subs, created) {
  if (created.n === 0) {
    const r = await request(`${stack.baseUrl}/Subscription`, { method: 'POST', headers: HEADERS, body: JSON.stringify(subscription(endpoint, 'live')) });
    if (r.status !== 201) throw new Error(`Subscription POST failed: ${r.status} ${r.body}`);
    await until(() => hook.handshakes() >= 1, 120_000, 'handshake');
    created.n = 1;
    created.template = await until2(() => stack.db.collection('sub_state').findOne({ status: 'active' }), 120_000, 'activation');
  }
  const docs = [];
  for (let i = created.n; i < subs; i++) {
    const t = created.template;
    const id = `seeded-${i}`;
    docs.push({
      ...t,
      _id: id,
      spec: { ...t.spec, id, filters: [{ resourceType: 'Observation', query: `patient=Patient/other-${i}` }] },
      resourceVid: 1,
      handshakeVid: 0,
    });
  }
  if (docs.length) await stack.db.collection('sub_state').insertMany(docs);
  created.n = subs;
  await stack.db.collection('sub_meta').updateOne({ _id: 'generation' }, { $inc: { n: 1 } }, { upsert: true });
  for (const end = Date.now() + 600_000; (await stack.db.collection('outbox').countDocuments({})) > 0; ) {
    if (Date.now() > end) throw new Error('outbox did not drain');
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function until2(f, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function latencyRun(stack, hook, endpoint, subs, created) {
  await ensureSubscriptions(stack, hook, endpoint, subs, created);
  // One untimed Observation lets the server notice the new generation and reload its index.
  const t = performance.now();
  await request(`${stack.baseUrl}/Observation`, { method: 'POST', headers: HEADERS, body: JSON.stringify(abnormalHeartRate('warm-up', 150)) });
  for (let i = 0; i < 600 && (await stack.db.collection('outbox').countDocuments({})) > 0; i++) await new Promise((r) => setTimeout(r, 100));
  emit({ bench: 'alerts', figure: 'index-reload-ms', subscriptions: subs, ms: Math.round(performance.now() - t) });
  await new Promise((r) => setTimeout(r, 2000));

  const sent = new Map();
  const interval = 1000 / RATE;
  const t0 = performance.now();
  const posts = [];
  for (let i = 0; i < SAMPLES; i++) {
    const due = t0 + i * interval;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const start = performance.now();
    posts.push(
      request(`${stack.baseUrl}/Observation`, { method: 'POST', headers: HEADERS, body: JSON.stringify(abnormalHeartRate('live', 150 + (i % 30))) }).then((r) => {
        if (r.status !== 201) throw new Error(`POST failed: ${r.status} ${r.body}`);
        sent.set(JSON.parse(r.body).id, start);
      }),
    );
  }
  await Promise.all(posts);
  await until(() => [...sent.keys()].every((id) => hook.arrived.has(id)), 60_000, 'notifications');
  const lat = [...sent].map(([id, start]) => hook.arrived.get(id) - start);
  emit({ bench: 'alerts', figure: 'post-to-webhook-ms', subscriptions: subs, matching: 1, ratePerSec: RATE, samples: lat.length, ...percentiles(lat), database: stack.database });
}

/** Raw baseline: the database work the same alert needs at minimum (history insert + notification row). */
async function rawBaseline(db) {
  const col = db.collection('bench_raw_history');
  const rows = db.collection('bench_raw_rows');
  const lat = [];
  for (let i = 0; i < SAMPLES; i++) {
    const doc = { _id: `raw-${i}`, res: abnormalHeartRate('live', 150), ts: new Date() };
    const start = performance.now();
    await col.insertOne(doc);
    await rows.insertOne({ _id: `row-${i}`, sub: 's', num: i + 1, historyId: doc._id });
    lat.push(performance.now() - start);
  }
  emit({ bench: 'alerts', figure: 'raw-baseline-ms', what: 'insertOne history + insertOne notification row', samples: lat.length, ...percentiles(lat) });
}

/** In-memory matching cost per event, pinned (cannot match) and unpinned (must be evaluated) subscriptions. */
async function matchingCost() {
  const { SearchService } = require(path.join(root, 'dist/search/service.js'));
  const { loadConfig } = require(path.join(root, 'dist/config.js'));
  const { ActiveIndex } = require(path.join(root, 'dist/subscriptions/matcher.js'));
  const { compileTopic, topicFires, loadShippedTopics } = require(path.join(root, 'dist/subscriptions/topics.js'));
  const { MongoClient } = require('mongodb');
  const search = await SearchService.create({
    db: new MongoClient('mongodb://127.0.0.1:1').db('unused'),
    config: loadConfig({ BASE_URL: 'http://127.0.0.1/fhir', CURSOR_SECRET: 'bench-cursor-secret-0123456789abcdef', LOG_LEVEL: 'silent' }),
  });
  const topic = compileTopic(loadShippedTopics(path.join(root, 'ig')).find((t) => t.url === ABNORMAL), search);
  const allow = { assertAllowed() {}, readFilter() {}, canRead: () => true, canWrite: () => true };
  const event = { ...abnormalHeartRate('p-0', 150), interpretation: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: 'HH' }] }] };
  const KINDS = {
    // Filters the index can answer from the resource (bucketed): cost must not grow with n.
    'patient-filter-other-patients': (i) => `patient=Patient/p-${i + 1}`,
    'code-filter-other-codes': (i) => `code=http://loinc.org|${1000 + i}-0`,
    // A filter the index cannot bucket: every subscription of the topic is evaluated.
    'unbucketed-category-filter': (i) => `category=other-${i}`,
  };
  for (const n of [1, 100, 1000, 10000]) {
    for (const [kind, query0] of Object.entries(KINDS)) {
      if (kind.startsWith('unbucketed') && n > 1000) continue;
      const idx = new ActiveIndex(search);
      for (let i = 0; i < n; i++) {
        const query = query0(i);
        idx.put({ id: `s${i}`, kind: 'topic', topic: ABNORMAL, filters: [{ resourceType: 'Observation', query }], channelType: 'rest-hook', endpoint: 'http://x/', headers: [], content: 'id-only', maxCount: 1, status: 'active' }, allow, topic.resourceTypes);
      }
      const iterations = Math.max(50, Math.min(5000, Math.floor(200000 / n)));
      let matched = 0;
      const start = performance.now();
      for (let k = 0; k < iterations; k++) {
        if (!(await topicFires(topic, { type: 'Observation', interaction: 'create', current: event, previous: async () => undefined }, search))) continue;
        for (const s of idx.topicCandidates(ABNORMAL, 'Observation', event)) if (idx.filtersPass(s, 'Observation', event)) matched++;
      }
      const us = ((performance.now() - start) * 1000) / iterations;
      emit({ bench: 'alerts', figure: 'matching-us-per-event', subscriptions: n, kind, usPerEvent: Math.round(us * 10) / 10, matchedPerEvent: matched / iterations });
    }
  }
}

const stack = await startStack({ env: { SUBSCRIPTION_POLL_MS: '500' } });
const hook = receiver();
try {
  const endpoint = await hook.start();
  const created = { n: 0 };
  for (const n of COUNTS) await latencyRun(stack, hook, endpoint, n, created);
  await rawBaseline(stack.db);
} finally {
  await hook.close();
  await stack.stop();
}
// Last, so that its large in-memory indexes cannot disturb the latency runs.
if (process.env.BENCH_ALERTS_MATCHING !== '0') await matchingCost();
