import fc from 'fast-check';
import type { AddressInfo } from 'node:net';
import { createTestContext, heartRate, patient, type TestContext } from '../../support/context';
import { isOutcome, send, sendRaw, type Answer } from './client';
import { CATEGORIES, FUZZ_LIMITS, type Case } from './corpus';

/**
 * Issue 12's hostile corpus as a seeded, deterministic fuzz run against the real server and
 * database: no 5xx, every error an OperationOutcome, nothing written by a refused request,
 * nothing accepted altered, seeded data unchanged, the audit trail recording, the server healthy
 * afterwards and no request over its deadline.
 */

const SEED = 20261201;
const RUNS_PER_CATEGORY = 24;
const DEADLINE_MS = 10_000;
/**
 * Cases that only the number-preserving body parser can refuse (duplicate keys: JSON.parse keeps
 * the last one). Off until that parser is merged; then set true and they must be refused too.
 */
const ENFORCE_PARSER_DEPENDENT_CASES = true;

let ctx: TestContext;
let port: number;
let target: { id: string; text: string };
const seeded: { path: string; vid: string; text: string }[] = [];

const strip = (r: Record<string, unknown>) => {
  const { id: _id, meta: _meta, ...rest } = r;
  return rest;
};

beforeAll(async () => {
  ctx = await createTestContext({
    listen: true,
    env: {
      REQUEST_DEADLINE_MS: String(DEADLINE_MS),
      BUNDLE_MAX_ENTRIES: String(FUZZ_LIMITS.bundleEntries),
      JSON_MAX_ARRAY_LENGTH: String(FUZZ_LIMITS.arrayElements),
      RESOURCE_MAX_ELEMENTS: String(FUZZ_LIMITS.resourceElements),
      JSON_MAX_STRING_LENGTH: String(FUZZ_LIMITS.stringLength),
      JSON_MAX_DEPTH: String(FUZZ_LIMITS.depth),
      BODY_LIMIT: String(FUZZ_LIMITS.bodyBytes),
      SEARCH_FORM_LIMIT: '8kb',
    },
  });
  port = (ctx.server!.address() as AddressInfo).port;
  const FHIR = { 'Content-Type': 'application/fhir+json' };
  for (const [i, body] of [patient('Seeded', ['Ann'], 'S-1'), patient('Seeded', ['Bob'], 'S-2'), patient('Seeded', ['Cy'], 'S-3')].entries()) {
    const p = await send(port, { method: 'POST', path: '/fhir/Patient', headers: FHIR, body: JSON.stringify(body) });
    expect(p.status).toBe(201);
    const id = (JSON.parse(p.text) as { id: string }).id;
    const o = await send(port, { method: 'POST', path: '/fhir/Observation', headers: FHIR, body: JSON.stringify(heartRate(id, 60 + i)) });
    expect(o.status).toBe(201);
    for (const [path, a] of [[`/fhir/Patient/${id}`, p], [`/fhir/Observation/${(JSON.parse(o.text) as { id: string }).id}`, o]] as const) {
      seeded.push({ path, vid: String(a.headers.etag), text: JSON.stringify(strip(JSON.parse(a.text) as Record<string, unknown>)) });
    }
  }
  const t = await send(port, { method: 'POST', path: '/fhir/Patient', headers: FHIR, body: JSON.stringify(patient('Target', ['Patch'], 'T-1')) });
  target = { id: (JSON.parse(t.text) as { id: string }).id, text: t.text };
});

afterAll(async () => ctx?.close());

async function run(c: Case): Promise<Answer> {
  if (c.raw) return sendRaw(port, c.raw);
  const r = c.request!;
  return send(port, { ...r, path: r.path.replace('{target}', target.id) });
}

/** Every stored text (current and history) of the types the corpus writes. */
async function storedText(): Promise<string> {
  const parts: string[] = [];
  for (const t of ['Patient', 'Observation']) {
    for (const d of await ctx.db.collection(t).find({}, { projection: { res: 1 } }).toArray()) parts.push(JSON.stringify(d.res));
  }
  for (const d of await ctx.db.collection('history').find({ type: { $in: ['Patient', 'Observation'] } }, { projection: { res: 1 } }).toArray()) parts.push(JSON.stringify(d.res));
  return parts.join('\n');
}

test('the hostile corpus: no 5xx, OperationOutcomes, nothing refused written, nothing accepted altered', async () => {
  const failures: string[] = [];
  const refusedMarkers: string[] = [];
  const accepted: { marker: string; sent: Record<string, unknown>; id: string }[] = [];
  const counts: Record<string, number> = {};
  let total = 0;
  for (const [i, [name, arb]] of Object.entries(CATEGORIES).entries()) {
    for (const c of fc.sample(arb, { seed: SEED + i, numRuns: RUNS_PER_CATEGORY })) {
      total++;
      counts[name] = (counts[name] ?? 0) + 1;
      const a = await run(c);
      const what = `${c.category} ${c.raw ? JSON.stringify(String(c.raw).slice(0, 80)) : `${c.request!.method} ${c.request!.path.slice(0, 120)}`}`;
      const head = c.request?.method === 'HEAD';
      if (a.status === 0 || a.status >= 500) failures.push(`${what}: status ${a.status} ${a.text.slice(0, 200)}`);
      if (a.status >= 400 && !head && !isOutcome(a.text)) failures.push(`${what}: ${a.status} without an OperationOutcome`);
      const mustRefuse = c.refuse && (!c.parserDependent || ENFORCE_PARSER_DEPENDENT_CASES);
      if (mustRefuse && a.status < 400) failures.push(`${what}: accepted (${a.status}), must be refused`);
      if (c.accept && (a.status < 200 || a.status > 299)) failures.push(`${what}: refused (${a.status} ${a.text.slice(0, 200)}), must be accepted`);
      if (a.ms > 2 * DEADLINE_MS) failures.push(`${what}: took ${a.ms} ms, over the deadline`);
      if (c.marker && a.status >= 400) refusedMarkers.push(c.marker);
      if (c.marker && c.sent && a.status === 201) accepted.push({ marker: c.marker, sent: c.sent, id: (JSON.parse(a.text) as { id: string }).id });
    }
  }
  expect(total).toBeGreaterThanOrEqual(300);
  expect(failures).toEqual([]);

  // Nothing a refused request carried was stored, in current versions or in history.
  const stored = await storedText();
  expect(refusedMarkers.filter((m) => stored.includes(`"${m}`))).toEqual([]);
  // What was accepted is served exactly as sent.
  for (const a of accepted) {
    const r = await send(port, { method: 'GET', path: `/fhir/Patient/${a.id}` });
    expect(strip(JSON.parse(r.text) as Record<string, unknown>)).toEqual(a.sent);
  }
  // Seeded data and the patch target are unchanged; no prototype was touched.
  for (const s of seeded) {
    const r = await send(port, { method: 'GET', path: s.path });
    expect({ path: s.path, vid: r.headers.etag, text: JSON.stringify(strip(JSON.parse(r.text) as Record<string, unknown>)) }).toEqual(s);
  }
  const t = await send(port, { method: 'GET', path: `/fhir/Patient/${target.id}` });
  expect(t.text).toBe(target.text);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  expect(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted')).toBe(false);
  // A generous bound: the run takes about 15 s on an idle 2-core machine, over a minute under heavy load.
}, 240_000);

test('after the corpus: healthy, still writing, still auditing', async () => {
  expect((await send(port, { method: 'GET', path: '/healthz' })).status).toBe(200);
  expect((await send(port, { method: 'GET', path: '/readyz' })).status).toBe(200);
  const c = await send(port, { method: 'POST', path: '/fhir/Patient', headers: { 'Content-Type': 'application/fhir+json' }, body: JSON.stringify(patient('After', ['Fuzz'], 'A-1')) });
  expect(c.status).toBe(201);
  const requestId = `fuzz-final-${Date.now().toString(36)}`;
  expect((await send(port, { method: 'GET', path: `/fhir/Patient/${(JSON.parse(c.text) as { id: string }).id}`, headers: { 'X-Request-Id': requestId } })).status).toBe(200);
  await ctx.vigil.audit.flush();
  const events = await ctx.db.collection('AuditEvent').find({}, { projection: { res: 1 } }).toArray();
  expect(events.some((e) => JSON.stringify(e.res).includes(requestId))).toBe(true);
  expect(ctx.vigil.counters.get('audit.dropped')).toBe(0);
});

test('an audit event with text that cannot be stored is escaped, noted, and does not block the next', async () => {
  const at = new Date();
  const base = { principal: undefined, action: 'R' as const, interaction: 'read', patients: [], outcome: 400, at };
  ctx.vigil.audit.record({ ...base, type: 'Pat\u0000ient', id: '\u0000\ud800', requestId: 'poison-1' });
  ctx.vigil.audit.record({ ...base, type: 'Patient', id: 'fine', requestId: 'poison-2' });
  await ctx.vigil.audit.flush();
  const events = (await ctx.db.collection('AuditEvent').find({}, { projection: { res: 1 } }).toArray()).map((e) => JSON.stringify(e.res));
  const poisoned = events.find((e) => e.includes('poison-1'));
  expect(poisoned).toBeDefined();
  expect(poisoned).toContain('sanitized');
  expect(poisoned).toContain('\\\\u0000');
  expect(events.some((e) => e.includes('poison-2'))).toBe(true);
});
