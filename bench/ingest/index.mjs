// Ingest benchmark: Observations per second through the FHIR API (single POSTs at several
// concurrencies, 100-entry transaction Bundles) next to the raw driver's insertMany of the
// same documents into the same database. Figures are JSON lines.
import { emit, request, startStack } from '../lib.mjs';

const SINGLE = Number(process.env.BENCH_INGEST_SINGLE ?? 1500);
const BUNDLES = Number(process.env.BENCH_INGEST_BUNDLES ?? 20);

const LOINC = [
  ['8867-4', 'Heart rate', '/min', 'beats/minute', 40, 180],
  ['59408-5', 'Oxygen saturation in Arterial blood by Pulse oximetry', '%', '%', 85, 100],
  ['8310-5', 'Body temperature', 'Cel', 'C', 35.5, 40],
  ['2339-0', 'Glucose [Mass/volume] in Blood', 'mg/dL', 'mg/dL', 60, 250],
];

function observation(i) {
  const [code, display, ucum, unit, lo, hi] = LOINC[i % LOINC.length];
  return {
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code, display }] },
    subject: { reference: `Patient/bench-${i % 200}` },
    device: { reference: `Device/dev-${i % 200}` },
    effectiveDateTime: new Date(Date.UTC(2024, 0, 1) + i * 60_000).toISOString(),
    valueQuantity: { value: Math.round((lo + ((i * 7919) % 1000) / 1000 * (hi - lo)) * 10) / 10, unit, system: 'http://unitsofmeasure.org', code: ucum },
  };
}

const HEADERS = { 'Content-Type': 'application/fhir+json', Prefer: 'return=minimal' };

async function singlePosts(baseUrl, concurrency, total, offset) {
  let next = 0;
  let failures = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < total; i = next++) {
        const r = await request(`${baseUrl}/Observation`, { method: 'POST', headers: HEADERS, body: JSON.stringify(observation(offset + i)) });
        if (r.status !== 201) failures++;
      }
    }),
  );
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  return { perSec: Math.round(total / secs), secs: Math.round(secs * 100) / 100, failures };
}

async function bundles(baseUrl, count, offset) {
  let failures = 0;
  const started = process.hrtime.bigint();
  for (let b = 0; b < count; b++) {
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: Array.from({ length: 100 }, (_, k) => ({ resource: observation(offset + b * 100 + k), request: { method: 'POST', url: 'Observation' } })),
    };
    const r = await request(baseUrl, { method: 'POST', headers: HEADERS, body: JSON.stringify(bundle) });
    if (r.status !== 200) failures++;
  }
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  return { perSec: Math.round((count * 100) / secs), secs: Math.round(secs * 100) / 100, failures };
}

async function rawInsertMany(db, total, offset) {
  const col = db.collection('bench_raw');
  const started = process.hrtime.bigint();
  for (let i = 0; i < total; i += 100) {
    const docs = Array.from({ length: Math.min(100, total - i) }, (_, k) => ({ res: observation(offset + i + k) }));
    await col.insertMany(docs);
  }
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  return { perSec: Math.round(total / secs), secs: Math.round(secs * 100) / 100 };
}

const stack = await startStack();
try {
  const raw = await rawInsertMany(stack.db, SINGLE, 0);
  emit({ bench: 'ingest', case: 'raw-insertMany-100', database: stack.database, observations: SINGLE, ...raw });
  // Warm-up so JIT and connection pools are in their steady state.
  await singlePosts(stack.baseUrl, 8, 200, 10_000_000);
  let offset = 0;
  for (const c of [1, 8, 32]) {
    const r = await singlePosts(stack.baseUrl, c, SINGLE, offset);
    offset += SINGLE;
    emit({ bench: 'ingest', case: `single-post-c${c}`, database: stack.database, observations: SINGLE, ...r, ratioToRaw: Math.round((r.perSec / raw.perSec) * 100) / 100 });
  }
  const t = await bundles(stack.baseUrl, BUNDLES, offset);
  emit({ bench: 'ingest', case: 'transaction-100', database: stack.database, observations: BUNDLES * 100, ...t, ratioToRaw: Math.round((t.perSec / raw.perSec) * 100) / 100 });
  await stack.vigil.outbox.drainNow();
} finally {
  await stack.stop();
}
