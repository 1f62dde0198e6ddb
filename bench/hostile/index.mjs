// Hostile-concurrency benchmark: one client loops the worst requests of issue 12 (heavy but
// allowed work at the limits, plus malformed input) while another does ordinary reads and writes.
// Prints JSON lines: the ordinary client's latency alone and beside the hostile one.
import { emit, percentiles, request, startStack } from '../lib.mjs';

const SECONDS = Number(process.env.BENCH_HOSTILE_SECONDS ?? 20);
const HOSTILE_CLIENTS = Number(process.env.BENCH_HOSTILE_CLIENTS ?? 2);
const FHIR = { 'Content-Type': 'application/fhir+json' };

function observation(patientId, i, codings = 1) {
  return {
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: Array.from({ length: codings }, (_, k) => ({ system: 'http://loinc.org', code: k === 0 ? '8867-4' : `x-${k}` })) },
    subject: { reference: `Patient/${patientId}` },
    effectiveDateTime: new Date(Date.UTC(2024, 0, 1) + i * 60_000).toISOString(),
    valueQuantity: { value: 60 + (i % 40), unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
  };
}

/** The worst of the corpus: each at (or just over) a limit. */
function hostileRequests(base, patients) {
  const reads = Array.from({ length: 500 }, (_, i) => ({ request: { method: 'GET', url: `Patient/${patients[i % patients.length]}` } }));
  const creates = Array.from({ length: 100 }, (_, i) => ({ resource: observation(patients[i % patients.length], i), request: { method: 'POST', url: 'Observation' } }));
  const over = Array.from({ length: 501 }, () => ({ request: { method: 'GET', url: 'Patient' } }));
  return [
    () => request(base, { method: 'POST', headers: FHIR, body: JSON.stringify({ resourceType: 'Bundle', type: 'batch', entry: reads }) }),
    () => request(base, { method: 'POST', headers: FHIR, body: JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry: creates }) }),
    () => request(base, { method: 'POST', headers: FHIR, body: JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry: over }) }),
    () => request(`${base}/Observation`, { method: 'POST', headers: FHIR, body: JSON.stringify(observation(patients[0], 1, 1000)) }),
    () => request(`${base}/Observation`, { method: 'POST', headers: FHIR, body: JSON.stringify(observation(patients[0], 1, 10_000)) }),
    () => request(`${base}/Patient/_search`, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: `family=${'x'.repeat(60_000)}` }),
    () => request(`${base}/Patient/_search`, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: `family=${'x'.repeat(1_000_000)}` }),
    () => request(`${base}/Patient`, { method: 'POST', headers: FHIR, body: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'x'.repeat(1_000_000) }] }) }),
    () => request(`${base}/Patient`, { method: 'POST', headers: FHIR, body: `${JSON.stringify({ resourceType: 'Patient', text: { status: 'generated', div: 'x'.repeat(4_000_000) } })}}` }),
    () => request(`${base}/Observation?_include=*&_revinclude=*&_count=100`),
    () => request(`${base}/Observation?value-quantity=1e999`),
    () => request(`${base}/Patient/%E0%A4%A`),
    () => request(`${base}/Patient?family=${Array.from({ length: 49 }, (_, i) => `f${i}`).join(',')}`),
  ];
}

async function ordinaryLoop(base, patients, until, samples) {
  let i = 0;
  while (Date.now() < until) {
    const p = patients[i % patients.length];
    const t = process.hrtime.bigint();
    const kind = i % 3;
    const r =
      kind === 0
        ? await request(`${base}/Patient/${p}`)
        : kind === 1
          ? await request(`${base}/Observation?subject=Patient/${p}&code=http://loinc.org|8867-4&_sort=-date&_count=20`)
          : await request(`${base}/Observation`, { method: 'POST', headers: { ...FHIR, Prefer: 'return=minimal' }, body: JSON.stringify(observation(p, i)) });
    samples.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (r.status >= 500) samples.errors = (samples.errors ?? 0) + 1;
    i++;
  }
}

async function hostileLoop(reqs, until, stats, start) {
  let i = start;
  while (Date.now() < until) {
    const r = await reqs[i++ % reqs.length]();
    stats.n++;
    stats.byStatus[r.status] = (stats.byStatus[r.status] ?? 0) + 1;
  }
}

const stack = await startStack();
try {
  const base = stack.baseUrl;
  const patients = [];
  for (let i = 0; i < 20; i++) {
    const r = await request(`${base}/Patient`, { method: 'POST', headers: FHIR, body: JSON.stringify({ resourceType: 'Patient', name: [{ family: `Bench${i}` }] }) });
    patients.push(JSON.parse(r.body).id);
  }
  for (let i = 0; i < 200; i++) await request(`${base}/Observation`, { method: 'POST', headers: FHIR, body: JSON.stringify(observation(patients[i % 20], i)) });

  const alone = [];
  await ordinaryLoop(base, patients, Date.now() + SECONDS * 1000, alone);
  emit({ bench: 'hostile', phase: 'ordinary alone', database: stack.database, seconds: SECONDS, requests: alone.length, errors5xx: alone.errors ?? 0, ...percentiles(alone) });

  const beside = [];
  const stats = { n: 0, byStatus: {} };
  const until = Date.now() + SECONDS * 1000;
  const reqs = hostileRequests(base, patients);
  const rss = [];
  const sampler = setInterval(() => rss.push(process.memoryUsage().rss), 500);
  await Promise.all([ordinaryLoop(base, patients, until, beside), ...Array.from({ length: HOSTILE_CLIENTS }, (_, k) => hostileLoop(reqs, until, stats, Math.floor((k * reqs.length) / HOSTILE_CLIENTS) + 3))]);
  clearInterval(sampler);
  emit({ bench: 'hostile', phase: 'ordinary beside hostile', database: stack.database, seconds: SECONDS, hostileClients: HOSTILE_CLIENTS, requests: beside.length, errors5xx: beside.errors ?? 0, ...percentiles(beside) });
  emit({ bench: 'hostile', phase: 'hostile client', requests: stats.n, byStatus: stats.byStatus, maxRssMb: Math.round(Math.max(...rss) / 1048576) });
  emit({ bench: 'hostile', phase: 'ratio', p50: Math.round((percentiles(beside).p50 / percentiles(alone).p50) * 100) / 100, p99: Math.round((percentiles(beside).p99 / percentiles(alone).p99) * 100) / 100 });
} finally {
  await stack.stop();
}
