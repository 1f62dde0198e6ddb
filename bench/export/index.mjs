// Export benchmark: a Bulk Data system export of N Observations (default 100,000): resources per
// second for the job and for downloading its files, and the server's peak memory meanwhile, next to
// the raw driver's scan of the same collection. The Observations are seeded with raw inserts of
// current documents through the server's own indexer (no history versions: the export reads only
// current documents), since seeding 100,000 through the API takes long on the embedded database.
//
//   quick check (about a minute):  npm run build && BENCH_EXPORT_N=2000 node bench/run.mjs export
//   the figure:            npm run build && BENCH_EXPORT_N=100000 node bench/run.mjs export
import { emit, request, startStack } from '../lib.mjs';

const N = Number(process.env.BENCH_EXPORT_N ?? 100_000);
if (!Number.isInteger(N) || N < 1) throw new Error(`BENCH_EXPORT_N must be a positive integer, got ${process.env.BENCH_EXPORT_N}`);

function observation(i) {
  return {
    resourceType: 'Observation',
    id: `bx-${i}`,
    meta: { versionId: '1', lastUpdated: new Date(Date.UTC(2024, 0, 1) + i * 1000).toISOString() },
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
    subject: { reference: `Patient/bx-p${i % 500}` },
    effectiveDateTime: new Date(Date.UTC(2024, 0, 1) + i * 60_000).toISOString(),
    valueQuantity: { value: 50 + (i % 90), unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
  };
}

async function seed(stack) {
  const col = stack.db.collection('Observation');
  const started = process.hrtime.bigint();
  for (let i = 0; i < N; i += 1000) {
    const docs = [];
    for (let k = i; k < Math.min(N, i + 1000); k++) {
      const res = observation(k);
      const { idx, comp } = stack.vigil.search.index(res);
      docs.push({ _id: res.id, res, vid: 1, ts: new Date(res.meta.lastUpdated), deleted: false, idx, comp });
    }
    await col.insertMany(docs, { ordered: false });
  }
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/** Peak resident and heap memory of this process (the server runs in it) while `fn` runs. */
async function withPeakMemory(fn) {
  let rss = 0;
  let heap = 0;
  const sample = () => {
    const m = process.memoryUsage();
    rss = Math.max(rss, m.rss);
    heap = Math.max(heap, m.heapUsed);
  };
  sample();
  const t = setInterval(sample, 50);
  try {
    const result = await fn();
    sample();
    return { result, peakRssMb: Math.round(rss / 1048576), peakHeapMb: Math.round(heap / 1048576) };
  } finally {
    clearInterval(t);
  }
}

const stack = await startStack({ env: { BULK_CHUNK_RESOURCES: '1000' } });
try {
  const seedSecs = await seed(stack);
  emit({ bench: 'export', case: 'seed-raw-insertMany-1000', database: stack.database, observations: N, secs: Math.round(seedSecs * 10) / 10, perSec: Math.round(N / seedSecs) });

  const rawStart = process.hrtime.bigint();
  let rawCount = 0;
  let rawBytes = 0;
  for await (const d of stack.db.collection('Observation').find({ deleted: false }, { projection: { res: 1 }, batchSize: 1000 })) {
    rawBytes += JSON.stringify(d.res).length + 1;
    rawCount++;
  }
  const rawSecs = Number(process.hrtime.bigint() - rawStart) / 1e9;
  emit({ bench: 'export', case: 'raw-scan-stringify', database: stack.database, resources: rawCount, secs: Math.round(rawSecs * 10) / 10, perSec: Math.round(rawCount / rawSecs), mb: Math.round(rawBytes / 1048576) });

  global.gc?.();
  const baseRssMb = Math.round(process.memoryUsage().rss / 1048576);
  const job = await withPeakMemory(async () => {
    const started = process.hrtime.bigint();
    const k = await request(`${stack.baseUrl}/$export?_type=Observation`, { headers: { Prefer: 'respond-async', Accept: 'application/fhir+json' } });
    if (k.status !== 202) throw new Error(`kick-off: ${k.status} ${k.body}`);
    // Content-Location is not returned by lib.request: find the job through the database.
    const jobDoc = await stack.db.collection('bulk_jobs').findOne({});
    const statusUrl = `${stack.baseUrl}/$export-status/${jobDoc._id}`;
    for (;;) {
      const s = await request(statusUrl);
      if (s.status === 200) return { manifest: JSON.parse(s.body), secs: Number(process.hrtime.bigint() - started) / 1e9 };
      if (s.status !== 202) throw new Error(`status: ${s.status} ${s.body}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  });
  const total = job.result.manifest.output.reduce((n, o) => n + o.count, 0);
  emit({
    bench: 'export',
    case: 'bulk-export-job',
    database: stack.database,
    resources: total,
    secs: Math.round(job.result.secs * 10) / 10,
    perSec: Math.round(total / job.result.secs),
    ratioToRaw: Math.round((total / job.result.secs / (rawCount / rawSecs)) * 100) / 100,
    baseRssMb,
    peakRssMb: job.peakRssMb,
    peakHeapMb: job.peakHeapMb,
  });

  const dl = await withPeakMemory(async () => {
    const started = process.hrtime.bigint();
    let lines = 0;
    let bytes = 0;
    for (const o of job.result.manifest.output) {
      const r = await request(o.url);
      if (r.status !== 200) throw new Error(`download: ${r.status}`);
      bytes += r.body.length;
      lines += r.body.split('\n').length - 1;
    }
    return { lines, bytes, secs: Number(process.hrtime.bigint() - started) / 1e9 };
  });
  emit({
    bench: 'export',
    case: 'download-ndjson',
    database: stack.database,
    resources: dl.result.lines,
    mb: Math.round(dl.result.bytes / 1048576),
    secs: Math.round(dl.result.secs * 10) / 10,
    perSec: Math.round(dl.result.lines / dl.result.secs),
    peakRssMb: dl.peakRssMb,
    note: 'the benchmark client buffers each file in the same process, so this peak includes it',
  });
} finally {
  await stack.stop();
}
