// Big stored resources versus ordinary queries (issue 12): `Patient?_count=20`,
// `Observation?code=...&_count=20` and `_history?_count=20` before and after three Patients with a
// 4 MB photo each are stored. Prints JSON lines: our p50 beside the raw driver's figure for the same
// query over the same collections, and the raw figure over a copy that keeps the photos inline
// (what every scan would decode without out-of-line bodies). About a minute on 2 cores (BENCH_BIG_RUNS runs per figure, default 8).
//   npm run build && node bench/hostile/big-bodies.mjs
import { randomBytes } from 'node:crypto';
import { emit, percentiles, request, startStack } from '../lib.mjs';

const RUNS = Number(process.env.BENCH_BIG_RUNS ?? 8);
const FHIR = { 'Content-Type': 'application/fhir+json' };
const CODE = 'http://loinc.org|8867-4';

function observation(patientId, i) {
  return {
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
    subject: { reference: `Patient/${patientId}` },
    effectiveDateTime: new Date(Date.UTC(2024, 0, 1) + i * 60_000).toISOString(),
    valueQuantity: { value: 60 + (i % 40), unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
  };
}

async function time(fn) {
  const samples = [];
  for (let i = 0; i < RUNS; i++) {
    const t = process.hrtime.bigint();
    await fn();
    samples.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return percentiles(samples);
}

async function ok(p) {
  const r = await p;
  if (r.status >= 300) throw new Error(`${r.status} ${r.body.slice(0, 300)}`);
  return r;
}

const stack = await startStack({ env: { ALERTING_ENABLED: 'false', NEWS2_ENABLED: 'false' } });
try {
  const base = stack.baseUrl;
  const db = stack.db;
  const patients = [];
  for (let i = 0; i < 50; i++) {
    const r = await ok(request(`${base}/Patient`, { method: 'POST', headers: FHIR, body: JSON.stringify({ resourceType: 'Patient', name: [{ family: `Bench${i}` }] }) }));
    patients.push(JSON.parse(r.body).id);
  }
  for (let b = 0; b < 5; b++) {
    const entry = Array.from({ length: 100 }, (_, i) => ({ resource: observation(patients[(b * 100 + i) % 50], b * 100 + i), request: { method: 'POST', url: 'Observation' } }));
    await ok(request(base, { method: 'POST', headers: FHIR, body: JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry }) }));
  }
  await stack.vigil.outbox.drainNow();

  const queries = {
    'Patient?_count=20': {
      ours: () => ok(request(`${base}/Patient?_count=20`)),
      raw: (col = 'Patient') => db.collection(col).find({ deleted: false }).sort({ _id: 1 }).limit(21).toArray(),
    },
    'Observation?code&_count=20': {
      ours: () => ok(request(`${base}/Observation?code=${encodeURIComponent(CODE)}&_count=20`)),
      raw: () => db.collection('Observation').find({ deleted: false, 'res.code.coding.code': '8867-4' }).sort({ _id: 1 }).limit(21).toArray(),
    },
    '_history?_count=20': {
      ours: () => ok(request(`${base}/_history?_count=20`)),
      raw: (col = 'history') => db.collection(col).find({}).sort({ ts: -1, _id: -1 }).limit(21).toArray(),
    },
  };
  const measure = async (phase) => {
    for (const [query, q] of Object.entries(queries)) {
      const ours = await time(q.ours);
      const raw = await time(() => q.raw());
      emit({ bench: 'hostile-big-bodies', phase, query, database: stack.database, runs: RUNS, oursP50Ms: ours.p50, oursP99Ms: ours.p99, rawP50Ms: raw.p50, ratio: Math.round((ours.p50 / raw.p50) * 100) / 100 });
    }
  };
  await measure('before');

  for (let i = 0; i < 3; i++) {
    const photo = randomBytes(3 * 1024 * 1024 - 4096).toString('base64');
    const body = JSON.stringify({ resourceType: 'Patient', name: [{ family: `Photo${i}` }], photo: [{ contentType: 'image/jpeg', data: photo }] });
    await ok(request(`${base}/Patient`, { method: 'POST', headers: FHIR, body }));
  }
  await stack.vigil.outbox.drainNow();
  await measure('after three 4 MB photos');

  // What the same scans cost when the photos stay inline (raw copies of both collections with the
  // bodies put back): the figure this design avoids.
  for (const [from, to, key] of [['Patient', 'bench_inline_patient', '_id'], ['history', 'bench_inline_history', '_id']]) {
    const docs = await db.collection(from).find({}).toArray();
    for (const d of docs) {
      if (!d.body) continue;
      const b = await db.collection('bodies').findOne({ _id: d.body });
      d.res = b.res;
      delete d.body;
    }
    await db.collection(to).insertMany(docs.map((d) => ({ ...d, [key]: d[key] })));
  }
  for (const [query, col] of [['Patient?_count=20', 'bench_inline_patient'], ['_history?_count=20', 'bench_inline_history']]) {
    const raw = await time(() => queries[query].raw(col));
    emit({ bench: 'hostile-big-bodies', phase: 'raw scan with the photos inline', query, database: stack.database, runs: RUNS, rawP50Ms: raw.p50, rawP99Ms: raw.p99 });
  }
} finally {
  await stack.stop();
}
