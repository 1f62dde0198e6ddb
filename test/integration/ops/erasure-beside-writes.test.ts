import type { Bundle, Observation } from 'fhir/r4';
import { createTestContext, FHIR_JSON, patient, type TestContext } from '../../support/context';
import { settle, uid, until, vital } from '../../support/alerting';
import { runAdmin } from '../../../src/admin';

/**
 * Erasure rewrites search structures that every patient shares (the history minute's bucket, the
 * heart-rate code's buckets and value-band directory) while other patients' readings keep being
 * stored into them. None of those readings may go missing from search or history: not when the
 * purge comes over HTTP (the outbox of the same process stores the readings), and not when an
 * operator purges from the admin command, a second storage instance beside the running server.
 */
let ctx: TestContext;
const K = uid('bwk');
const HR = 'http://loinc.org|8867-4';

/** Ids of every entry of a search or history, page by page. */
async function ids(path: string): Promise<Set<string | undefined>> {
  const out = new Set<string | undefined>();
  for (let next: string | undefined = `/fhir/${path}`; next; ) {
    const r = await ctx.request.get(next).set('Accept', FHIR_JSON);
    if (r.status !== 200) throw new Error(`GET ${next}: ${r.status} ${r.text}`);
    const b = r.body as Bundle;
    for (const e of b.entry ?? []) out.add(e.resource?.id);
    const link = b.link?.find((l) => l.relation === 'next')?.url;
    next = link ? new URL(link).pathname + new URL(link).search : undefined;
  }
  return out;
}

async function bundle(path: string): Promise<Bundle> {
  const r = await ctx.request.get(`/fhir/${path}`).set('Accept', FHIR_JSON);
  if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.text}`);
  return r.body as Bundle;
}

async function create(res: Observation): Promise<string> {
  const r = await ctx.request.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(JSON.stringify(res));
  if (r.status !== 201) throw new Error(`POST Observation: ${r.status} ${r.text}`);
  return r.body.id as string;
}

async function putPatient(id: string): Promise<void> {
  const r = await ctx.request.put(`/fhir/Patient/${id}`).set('Content-Type', FHIR_JSON).send(JSON.stringify({ ...patient('Shared', ['Sam'], `MRN-${id}`), id }));
  expect(r.status).toBe(201);
}

/** Streams K's heart rates, as one device does, until `stop` settles; the ids of those stored. */
async function streamWhile(stop: Promise<unknown>): Promise<string[]> {
  let streaming = true;
  void stop.finally(() => (streaming = false));
  const stored: string[] = [];
  for (let i = 0; streaming; i++) stored.push(await create(vital(K, '8867-4', 60 + (i % 40), '/min')));
  await stop;
  return stored;
}

/** Every one of K's readings is found by patient, by code across patients and in type history. */
async function assertAllFound(stored: readonly string[], since: Date): Promise<void> {
  await settle(ctx);
  const byPatient = await ids(`Observation?patient=${K}&_count=500`);
  const byCode = await ids(`Observation?code=${HR}&value-quantity=lt200&date=ge${since.toISOString()}&_count=500`);
  const history = await ids(`Observation/_history?_since=${since.toISOString()}&_count=500`);
  for (const [what, found] of [['patient search', byPatient], ['code and value search', byCode], ['type history', history]] as const) {
    const missing = stored.filter((id) => !found.has(id));
    if (missing.length > 0) throw new Error(`${what} lost ${missing.length} of ${stored.length} readings: ${missing.slice(0, 5).join(', ')}`);
  }
}

/** A patient with heart rates stored in this minute's shared buckets, ready to be erased. */
async function erasable(prefix: string): Promise<string> {
  const p = uid(prefix);
  await putPatient(p);
  for (let i = 0; i < 12; i++) await create(vital(p, '8867-4', 70 + i, '/min'));
  await settle(ctx);
  return p;
}

beforeAll(async () => {
  ctx = await createTestContext({ env: { ALERTING_ENABLED: 'false', NEWS2_ENABLED: 'false' } });
  await putPatient(K);
}, 60_000);

afterAll(async () => {
  await ctx.close();
});

test('a $purge over HTTP loses none of the readings other patients stream beside it', async () => {
  const P = await erasable('bwp');
  const since = new Date(Date.now() - 1000);
  let purged: { status: number } | undefined;
  const stored = await streamWhile(
    until('K streaming', () => true).then(async () => {
      purged = await ctx.request.post(`/fhir/Patient/${P}/$purge`);
    }),
  );
  expect(purged?.status).toBe(200);
  expect(stored.length).toBeGreaterThan(0);
  await assertAllFound(stored, since);
  expect((await bundle(`Observation?patient=${P}`)).entry ?? []).toHaveLength(0);
}, 120_000);

test('an operator\'s purge from the admin command (a second storage instance) loses none of them either', async () => {
  const P = await erasable('bwa');
  const since = new Date(Date.now() - 1000);
  const lines: string[] = [];
  const stored = await streamWhile(runAdmin(['erasure', 'purge', P], ctx.db, { out: (l) => lines.push(l), config: ctx.config }));
  expect(lines.join('\n')).toMatch(/erased \d+ resources/);
  // The admin instance's sweep was run by the server, the holder of the outbox lease: its count of removed entries came back.
  expect(lines.join('\n')).not.toMatch(/ 0 index entries/);
  await assertAllFound(stored, since);
  expect((await bundle(`Observation?patient=${P}`)).entry ?? []).toHaveLength(0);
}, 120_000);
