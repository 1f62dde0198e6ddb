// Ingest benchmark: Observations per second through the FHIR API beside the raw driver writing
// the same documents into the same database, in one run (JSON lines):
//
//   raw-insertOne-c<N>  the driver's insertOne of { _id, res } at concurrency N   | single-post-c<N>: POST /Observation at N
//   raw-insertMany-100  the driver's insertMany of 100 such documents, one call at a time | transaction-100: 100-entry transaction Bundles, one at a time
//
// Each pair runs back to back on the same database, with the same documents (the POSTed JSON is
// what the raw case stores under `res`) and the same concurrency. Ours is measured to the last
// acknowledgement (`perSec`, the figure `ratioToRaw` and the aims use); the outbox's
// post-commit work (search entries, subscriptions, alerting) then drains, and `sustainedPerSec`
// counts that time too. Every request also writes its AuditEvent (the audit trail is always on).
// Then: `memory`, the server + database resident memory (VmRSS of this process, which runs the
// server, and of the FerretDB process) after the load and the drain; `engine-costs`, what the
// engine charges for each kind of document one write stores beside the raw document.
//
// Settings (environment):
//   BENCH_INGEST_SINGLE=1500        POSTs per concurrency            BENCH_INGEST_CONCURRENCY=1,8,32
//   BENCH_INGEST_BUNDLES=20         transaction Bundles of 100        BENCH_INGEST_ALERTING=on|off (alerting and NEWS2)
//   BENCH_INGEST_OUTBOX=running|paused (paused: post-commit work only between cases)
//   BENCH_INGEST_TOTAL=0            afterwards, load transaction Bundles until this many Observations are stored
//                                   (100000 for the memory aim), then report memory
import { randomUUID } from 'node:crypto';
import { emit, request, rssMb, startStack } from '../lib.mjs';

const SINGLE = Number(process.env.BENCH_INGEST_SINGLE ?? 1500);
const BUNDLES = Number(process.env.BENCH_INGEST_BUNDLES ?? 20);
const CONCURRENCY = (process.env.BENCH_INGEST_CONCURRENCY ?? '1,8,32').split(',').map(Number);
const ALERTING = (process.env.BENCH_INGEST_ALERTING ?? 'on') !== 'off';
const TOTAL = Number(process.env.BENCH_INGEST_TOTAL ?? 0);
// `paused`: the outbox does not run beside the load; each case's post-commit work is drained after
// it (drainSecs), so perSec is the commit path alone and drainSecs the consumers alone.
const OUTBOX = process.env.BENCH_INGEST_OUTBOX ?? 'running';
const AIM = { single: 0.8, transaction: 0.5, rssMb: 400 };

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
    valueQuantity: { value: Math.round((lo + (((i * 7919) % 1000) / 1000) * (hi - lo)) * 10) / 10, unit, system: 'http://unitsofmeasure.org', code: ucum },
  };
}

const HEADERS = { 'Content-Type': 'application/fhir+json', Prefer: 'return=minimal' };
const round2 = (x) => Math.round(x * 100) / 100;

/** Runs `one(i)` for i in [0, total) on `concurrency` workers; seconds taken. */
async function timed(concurrency, total, one) {
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < total; i = next++) await one(i);
    }),
  );
  return Number(process.hrtime.bigint() - started) / 1e9;
}

function figures(n, secs) {
  return { perSec: Math.round(n / secs), secs: round2(secs) };
}

/** Our case's failures by status (a 503 is back-pressure refusing a write). */
function tally() {
  const statuses = {};
  return {
    statuses,
    note(status, ok) {
      if (status !== ok) statuses[status] = (statuses[status] ?? 0) + 1;
    },
    get failures() {
      return Object.values(statuses).reduce((a, b) => a + b, 0);
    },
  };
}

/** Waits until the outbox has handed on every committed version (post-commit work done); seconds. */
async function drained(vigil) {
  const started = process.hrtime.bigint();
  for (;;) {
    await vigil.outbox.drainNow();
    if ((await vigil.outbox.oldestPendingAt()) === undefined) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return Number(process.hrtime.bigint() - started) / 1e9;
}

async function rawInsertOne(db, concurrency, offset) {
  const col = db.collection('bench_raw');
  return figures(SINGLE, await timed(concurrency, SINGLE, (i) => col.insertOne({ _id: randomUUID(), res: observation(offset + i) })));
}

async function singlePosts(stack, concurrency, total, offset) {
  const t = tally();
  const secs = await timed(concurrency, total, async (i) => {
    const r = await request(`${stack.baseUrl}/Observation`, { method: 'POST', headers: HEADERS, body: JSON.stringify(observation(offset + i)) });
    t.note(r.status, 201);
  });
  // Refused writes (back-pressure 503s) are not counted as ingested.
  return { ...figures(total - t.failures, secs), failures: t.failures, statuses: t.statuses };
}

async function rawInsertMany(db, count, offset) {
  const col = db.collection('bench_raw');
  const docs = (b) => Array.from({ length: 100 }, (_, k) => ({ _id: randomUUID(), res: observation(offset + b * 100 + k) }));
  return figures(count * 100, await timed(1, count, (b) => col.insertMany(docs(b))));
}

async function bundles(stack, count, offset) {
  const t = tally();
  const secs = await timed(1, count, async (b) => {
    const entry = Array.from({ length: 100 }, (_, k) => ({ resource: observation(offset + b * 100 + k), request: { method: 'POST', url: 'Observation' } }));
    const r = await request(stack.baseUrl, { method: 'POST', headers: HEADERS, body: JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry }) });
    t.note(r.status, 200);
  });
  return { ...figures((count - t.failures) * 100, secs), failures: t.failures, statuses: t.statuses };
}

/** Emits one of our cases beside its raw twin, after the outbox has drained. */
async function report(stack, name, ours, raw, rawCase, aim, perFailure = 1) {
  const drainSecs = await drained(stack.vigil);
  const ratioToRaw = round2(ours.perSec / raw.perSec);
  const stored = ours.observations - ours.failures * perFailure;
  emit({
    bench: 'ingest',
    case: name,
    database: stack.database,
    alerting: ALERTING,
    outbox: OUTBOX,
    ...ours,
    drainSecs: round2(drainSecs),
    sustainedPerSec: Math.round(stored / (ours.secs + drainSecs)),
    rawCase,
    rawPerSec: raw.perSec,
    ratioToRaw,
    ...(aim ? { aim, meetsAim: ratioToRaw >= aim } : {}),
  });
}

/**
 * What the engine charges for the documents one Observation write stores, beside the raw
 * document: insertOne and insertMany(100) of copies of the stored shapes (taken from the
 * database after the load) into scratch collections. `ceiling*` are the ratios ours could reach
 * if everything but these inserts were free (a single write stores intent, version and current
 * document one after the other; a transaction stores each kind in one insertMany).
 */
async function engineCosts(db) {
  const cur = await db.collection('Observation').findOne({});
  const hist = await db.collection('history').findOne({ type: 'Observation', tx: { $exists: false } });
  const auditCur = await db.collection('AuditEvent').findOne({});
  const shapes = {
    raw: (i) => ({ _id: randomUUID(), res: observation(i) }),
    outbox: () => ({ _id: randomUUID(), at: new Date() }),
    history: () => ({ ...hist, _id: randomUUID() }),
    current: () => ({ ...cur, _id: randomUUID() }),
    ...(auditCur ? { auditCurrent: () => ({ ...auditCur, _id: randomUUID() }) } : {}),
  };
  const ms = async (f) => {
    const t = process.hrtime.bigint();
    await f();
    return Number(process.hrtime.bigint() - t) / 1e6;
  };
  const out = {};
  for (const [name, make] of Object.entries(shapes)) {
    const col = db.collection(`bench_cost_${name}`);
    let one = 0;
    let many = 0;
    for (let i = 0; i < 40; i++) one += await ms(() => col.insertOne(make(i)));
    for (let i = 0; i < 5; i++) many += await ms(() => col.insertMany(Array.from({ length: 100 }, (_, k) => make(i * 100 + k))));
    out[name] = { jsonBytes: JSON.stringify(make(0)).length, insertOneMs: round2(one / 40), insertMany100Ms: round2(many / 5) };
  }
  const sum = (k) => out.outbox[k] + out.history[k] + out.current[k];
  return { ...out, ceilingSingleC1: round2(out.raw.insertOneMs / sum('insertOneMs')), ceilingTransaction: round2(out.raw.insertMany100Ms / sum('insertMany100Ms')) };
}

const stack = await startStack({
  env: {
    ...(ALERTING ? {} : { ALERTING_ENABLED: 'false', NEWS2_ENABLED: 'false' }),
    // A paused outbox lags by design: back-pressure on outbox lag would refuse the load.
    ...(OUTBOX === 'paused' ? { BACKPRESSURE_MAX_OUTBOX_LAG_MS: '0' } : {}),
  },
});
let stored = 0;
try {
  // Warm-up (JIT, connection pools, first bucket documents); not counted.
  await rawInsertOne(stack.db, 8, 20_000_000);
  await singlePosts(stack, 8, 200, 10_000_000);
  await drained(stack.vigil);
  stored += 200;
  if (OUTBOX === 'paused') await stack.vigil.outbox.stop();
  let offset = 0;
  for (const c of CONCURRENCY) {
    const raw = await rawInsertOne(stack.db, c, offset);
    emit({ bench: 'ingest', case: `raw-insertOne-c${c}`, database: stack.database, observations: SINGLE, concurrency: c, ...raw });
    const ours = await singlePosts(stack, c, SINGLE, offset);
    offset += SINGLE;
    stored += SINGLE - ours.failures;
    await report(stack, `single-post-c${c}`, { observations: SINGLE, concurrency: c, ...ours }, raw, `raw-insertOne-c${c}`, c === Math.max(...CONCURRENCY) ? AIM.single : undefined);
  }
  const raw = await rawInsertMany(stack.db, BUNDLES, offset);
  emit({ bench: 'ingest', case: 'raw-insertMany-100', database: stack.database, observations: BUNDLES * 100, ...raw });
  const tx = await bundles(stack, BUNDLES, offset);
  offset += BUNDLES * 100;
  stored += (BUNDLES - tx.failures) * 100;
  await report(stack, 'transaction-100', { observations: BUNDLES * 100, ...tx }, raw, 'raw-insertMany-100', AIM.transaction, 100);
  if (TOTAL > stored) {
    const more = Math.ceil((TOTAL - stored) / 100);
    const fill = await bundles(stack, more, offset);
    stored += (more - fill.failures) * 100;
    const drainSecs = await drained(stack.vigil);
    emit({ bench: 'ingest', case: 'fill-transaction-100', database: stack.database, alerting: ALERTING, observations: more * 100, ...fill, drainSecs: round2(drainSecs) });
  }
  const serverMb = rssMb(process.pid);
  const databaseMb = stack.databasePid ? rssMb(stack.databasePid) : undefined;
  emit({
    bench: 'ingest',
    case: 'memory',
    database: stack.database,
    alerting: ALERTING,
    observationsStored: stored,
    serverRssMb: serverMb,
    databaseRssMb: databaseMb,
    totalRssMb: databaseMb === undefined ? undefined : serverMb + databaseMb,
    note: 'VmRSS after the load and the drain; the server process also runs the load generator',
    aimMb: AIM.rssMb,
    ...(databaseMb === undefined ? {} : { meetsAim: serverMb + databaseMb <= AIM.rssMb }),
  });
  if (stack.database === 'ferretdb-sqlite') emit({ bench: 'ingest', case: 'engine-costs', database: stack.database, note: 'sequential, after the load; jsonBytes: one document as JSON', ...(await engineCosts(stack.db)) });
} finally {
  await stack.stop();
}
