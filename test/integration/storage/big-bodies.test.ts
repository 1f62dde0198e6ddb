import { randomBytes } from 'node:crypto';
import type { Bundle, Resource, Subscription } from 'fhir/r4';
import { createTestContext, FHIR_JSON, heartRate, type TestContext } from '../../support/context';
import { resourceText, resourceTexts } from '../../support/json-text';
import { outboxIdle } from '../../support/outbox-idle';
import { WebhookReceiver } from '../subscriptions/receiver';
import { kickoff, pathOf, waitForManifest } from '../bulk/helpers';

/**
 * Big valid resources (a ~4 MB photo, a long waveform) are stored out of line: every read path
 * returns them exactly as stored (decimal spellings included), ordinary searches page as before,
 * and no document that queries scan holds a big body.
 */
let ctx: TestContext;
let hook: WebhookReceiver;
let subId: string;
const tag = randomBytes(4).toString('hex');
const family = `Bigbody${tag}`;
const big = [0, 1, 2].map((i) => `bb${i}-${tag}`);
const small = [0, 1].map((i) => `bs${i}-${tag}`);
const waveId = `bw-${tag}`;
// ~4 MB of base64, inside the 5 MB body limit; each photo different.
const photos = big.map(() => randomBytes(3 * 1024 * 1024 - 4096).toString('base64'));
const wave = Array.from({ length: 40_000 }, (_v, i) => String((i * 7) % 1000)).join(' ');

/** A Patient body as text, with a decimal spelled `1.00` (JSON.stringify would write 1). */
function patientText(id: string, given: string, photo?: string): string {
  const res = {
    resourceType: 'Patient',
    id,
    extension: [{ url: 'http://example.org/fhir/StructureDefinition/body-weight-ratio', valueDecimal: '@DEC@' }],
    name: [{ family, given: [given] }],
    gender: 'female',
    ...(photo ? { photo: [{ contentType: 'image/jpeg', data: photo }] } : {}),
  };
  return JSON.stringify(res).replace('"@DEC@"', '1.00');
}

function waveText(): string {
  const obs = {
    ...heartRate(big[0], 70),
    id: waveId,
    valueQuantity: undefined,
    valueSampledData: { origin: { value: '@DEC@', unit: 'mV' }, period: 2.5, dimensions: 1, data: wave },
  };
  return JSON.stringify(obs).replace('"@DEC@"', '1.00');
}

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, limitMs = 30_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const get = (path: string) => ctx.request.get(path).set('Accept', FHIR_JSON);
async function put(type: string, id: string, text: string): Promise<void> {
  const r = await ctx.request.put(`/fhir/${type}/${id}`).set('Content-Type', FHIR_JSON).send(text);
  if (r.status >= 300) throw new Error(`${type}/${id}: ${r.status} ${r.text.slice(0, 500)}`);
}
/** What a plain read answers: the reference text every other path must repeat. */
const stored = new Map<string, string>();

beforeAll(async () => {
  ctx = await createTestContext({ listen: true, env: { SUBSCRIPTION_POLL_MS: '50', NEWS2_ENABLED: 'false', ALERTING_ENABLED: 'false' } });
  hook = await new WebhookReceiver().start();
  const sub = await ctx.request
    .post('/fhir/Subscription')
    .set('Content-Type', FHIR_JSON)
    .send(JSON.stringify({ resourceType: 'Subscription', status: 'requested', reason: 'big bodies', criteria: `Patient?family=${family}`, channel: { type: 'rest-hook', endpoint: hook.url, payload: 'application/fhir+json' } } as Subscription));
  expect(sub.status).toBe(201);
  subId = sub.body.id;
  await until('subscription active', async () => ((await get(`/fhir/Subscription/${subId}`)).body.status === 'active' ? true : undefined));
  await put('Patient', big[0], patientText(big[0], 'First'));
  await put('Patient', big[0], patientText(big[0], 'Ann', photos[0]));
  await put('Patient', big[1], patientText(big[1], 'Bea', photos[1]));
  // The journal's path (a transaction) stores a big body too.
  const entry = `{"resource":${patientText(big[2], 'Cy', photos[2])},"request":{"method":"PUT","url":"Patient/${big[2]}"}}`;
  const tx = await ctx.request.post('/fhir').set('Content-Type', FHIR_JSON).send(`{"resourceType":"Bundle","type":"transaction","entry":[${entry}]}`);
  expect(tx.status).toBe(200);
  for (const id of small) await put('Patient', id, patientText(id, 'Small'));
  for (const [i, p] of [...big, ...small].entries()) await put('Observation', `bo${i}-${tag}`, JSON.stringify({ ...heartRate(p, 60 + i), id: `bo${i}-${tag}` }));
  await put('Observation', waveId, waveText());
  for (const [type, id] of [...[...big, ...small].map((id) => ['Patient', id]), ['Observation', waveId]]) {
    const r = await get(`/fhir/${type}/${id}`);
    expect(r.status).toBe(200);
    stored.set(id, r.text);
  }
  await outboxIdle(ctx.vigil);
}, 180_000);

afterAll(async () => {
  await hook.close();
  await ctx.close();
});

test('a read returns the big resource exactly as sent, decimal text included', () => {
  for (const [i, id] of big.entries()) {
    const text = stored.get(id)!;
    expect(text).toContain('"valueDecimal":1.00');
    expect(JSON.parse(text).photo[0].data).toBe(photos[i]);
  }
  expect(stored.get(waveId)).toContain('"origin":{"value":1.00');
  expect(JSON.parse(stored.get(waveId)!).valueSampledData.data).toBe(wave);
});

test('no scanned document holds a big body; the bodies collection does', async () => {
  for (const name of ['Patient', 'Observation', 'history']) {
    for await (const d of ctx.db.collection(name).find({})) {
      const size = JSON.stringify(d).length;
      if (size > 64 * 1024) throw new Error(`${name} ${String(d._id)} holds ${size} characters`);
      for (const p of photos) expect(JSON.stringify(d)).not.toContain(p.slice(0, 4096));
    }
  }
  const bodies = await ctx.db.collection('bodies').find({}, { projection: { _id: 1 } }).toArray();
  // Patient v2 of big[0], big[1], big[2], and the waveform (the small first version stays inline).
  expect(bodies.length).toBe(4);
  const current = await ctx.db.collection('Patient').findOne({ _id: big[0] as never });
  expect(typeof current!.body).toBe('string');
  expect(current!.dec).toBeUndefined();
  expect((await ctx.db.collection('Patient').findOne({ _id: small[0] as never }))!.body).toBeUndefined();
});

test('vread and history at every level repeat the stored text', async () => {
  for (const id of big) {
    const vid = JSON.parse(stored.get(id)!).meta.versionId;
    expect((await get(`/fhir/Patient/${id}/_history/${vid}`)).text).toBe(stored.get(id));
    expect(resourceText((await get(`/fhir/Patient/${id}/_history`)).text, 'Patient', id)).toBe(stored.get(id));
  }
  expect(JSON.parse((await get(`/fhir/Patient/${big[0]}/_history/1`)).text).photo).toBeUndefined();
  const typeLevel = (await get('/fhir/Patient/_history?_count=20')).text;
  for (const id of big) expect(resourceText(typeLevel, 'Patient', id)).toBe(stored.get(id));
  // System level: pages of 20 (the audit trail's records are in history too) until all are seen.
  const found = new Set<string>();
  let next: string | undefined = '/fhir/_history?_count=20';
  for (let pages = 0; next && found.size < big.length && pages < 50; pages++) {
    const res = await get(next);
    for (const id of big) if (resourceTexts(res.text, 'Patient', id).includes(stored.get(id)!)) found.add(id);
    const link = (JSON.parse(res.text) as Bundle).link?.find((l) => l.relation === 'next')?.url;
    next = link ? pathOf(link) : undefined;
  }
  expect([...found].sort()).toEqual([...big].sort());
});

test('search pages, _include, $everything and $lastn repeat the stored text; pages are complete', async () => {
  const seen: string[] = [];
  let next: string | undefined = `/fhir/Patient?family=${family}&_count=2`;
  while (next) {
    const res = await get(next);
    expect(res.status).toBe(200);
    const b = JSON.parse(res.text) as Bundle;
    for (const e of b.entry ?? []) {
      seen.push(e.resource!.id!);
      expect(resourceText(res.text, 'Patient', e.resource!.id!)).toBe(stored.get(e.resource!.id!));
    }
    const link = b.link?.find((l) => l.relation === 'next')?.url;
    next = link ? pathOf(link) : undefined;
  }
  expect(seen.sort()).toEqual([...big, ...small].sort());
  const all = JSON.parse((await get('/fhir/Patient?_count=20')).text) as Bundle;
  expect(all.entry!.map((e) => e.resource!.id).sort()).toEqual([...big, ...small].sort());
  const obs = JSON.parse((await get('/fhir/Observation?code=http://loinc.org|8867-4&_count=20')).text) as Bundle;
  expect(obs.entry!.map((e) => e.resource!.id).sort()).toEqual([...[...big, ...small].map((_p, i) => `bo${i}-${tag}`), waveId].sort());

  const inc = await get(`/fhir/Observation?subject=Patient/${big[1]}&_include=Observation:subject`);
  expect(resourceText(inc.text, 'Patient', big[1])).toBe(stored.get(big[1]));
  const everything = await get(`/fhir/Patient/${big[0]}/$everything`);
  expect(everything.status).toBe(200);
  expect(resourceText(everything.text, 'Patient', big[0])).toBe(stored.get(big[0]));
  expect(resourceText(everything.text, 'Observation', waveId)).toBe(stored.get(waveId));
  const lastn = await get(`/fhir/Observation/$lastn?patient=${big[0]}&max=5`);
  expect(lastn.status).toBe(200);
  expect(resourceText(lastn.text, 'Observation', waveId)).toBe(stored.get(waveId));
});

test('notifications and $events carry the stored text', async () => {
  for (const id of big) {
    const note = await until(`notification for ${id}`, () => hook.received.find((r) => r.method === 'PUT' && r.url.endsWith(`/Patient/${id}`) && r.body.includes('"photo"')));
    expect(resourceText(note.body, 'Patient', id)).toBe(stored.get(id));
  }
  const events = await get(`/fhir/Subscription/${subId}/$events?content=full-resource`);
  expect(events.status).toBe(200);
  for (const id of big) expect(resourceTexts(events.text, 'Patient', id)).toContain(stored.get(id));
});

test('a bulk export holds the big resources whole', async () => {
  const manifest = await waitForManifest(ctx.request, await kickoff(ctx.request, '/fhir/$export?_type=Patient'));
  const lines: Resource[] = [];
  for (const o of manifest.output) {
    const r = await ctx.request.get(pathOf(o.url)).set('Accept', 'application/fhir+ndjson');
    expect(r.status).toBe(200);
    for (const l of String(r.text).split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Resource);
  }
  for (const [i, id] of big.entries()) {
    const line = lines.find((r) => r.id === id) as { photo?: { data?: string }[] } | undefined;
    expect(line?.photo?.[0].data).toBe(photos[i]);
  }
});

test('deleting a big resource keeps its versions readable, and an update replaces the body', async () => {
  const id = big[1];
  const vid = Number(JSON.parse(stored.get(id)!).meta.versionId);
  expect((await ctx.request.delete(`/fhir/Patient/${id}`)).status).toBe(204);
  expect((await get(`/fhir/Patient/${id}`)).status).toBe(410);
  expect((await get(`/fhir/Patient/${id}/_history/${vid}`)).text).toBe(stored.get(id));
  await put('Patient', id, patientText(id, 'Bea', photos[0]));
  const again = await get(`/fhir/Patient/${id}`);
  expect(JSON.parse(again.text).photo[0].data).toBe(photos[0]);
  expect(again.text).toContain('"valueDecimal":1.00');
});
