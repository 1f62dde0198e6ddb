import { randomBytes } from 'node:crypto';
import type { AuditEvent, Bundle, Parameters, Resource, Subscription } from 'fhir/r4';
import { createTestContext, FHIR_JSON, heartRate, patient, type TestContext } from '../../support/context';
import { outboxIdle } from '../../support/outbox-idle';
import { WebhookReceiver } from '../subscriptions/receiver';
import { downloadAll, kickoff, waitForManifest } from '../bulk/helpers';
import { runAdmin } from '../../../src/admin';

/** $purge and $expunge over HTTP: erased data is gone from every read path. */
let ctx: TestContext;
let hook: WebhookReceiver;
const tag = randomBytes(4).toString('hex');
const P = `ep-${tag}`;
const Q = `eq-${tag}`;
const mine = [`Observation/eo1-${tag}`, `Observation/eo2-${tag}`, `Observation/eo3-${tag}`, `Observation/eo-perf-${tag}`, `Device/ed-${tag}`];

async function put(res: Record<string, unknown>): Promise<void> {
  const r = await ctx.request.put(`/fhir/${res.resourceType}/${res.id}`).set('Content-Type', FHIR_JSON).send(JSON.stringify(res));
  if (r.status >= 300) throw new Error(`seed ${res.resourceType}/${res.id}: ${r.status} ${r.text}`);
}

const get = async (path: string) => ctx.request.get(path).set('Accept', FHIR_JSON);
const text = (b: unknown) => JSON.stringify(b);
const param = (p: Parameters, name: string) => p.parameter?.find((x) => x.name === name);

beforeAll(async () => {
  ctx = await createTestContext({ listen: true, env: { SUBSCRIPTION_POLL_MS: '50', ALERTING_ENABLED: 'false', NEWS2_ENABLED: 'false' } });
  hook = await new WebhookReceiver().start();
  const sub = await ctx.request
    .post('/fhir/Subscription')
    .set('Content-Type', FHIR_JSON)
    .send(JSON.stringify({ resourceType: 'Subscription', status: 'requested', reason: 'erasure', criteria: 'Observation?code=http://loinc.org|8867-4', channel: { type: 'rest-hook', endpoint: hook.url, payload: 'application/fhir+json' } } as Subscription));
  expect(sub.status).toBe(201);
  const deadline = Date.now() + 20_000;
  while ((await get(`/fhir/Subscription/${sub.body.id}`)).body.status !== 'active') {
    if (Date.now() > deadline) throw new Error('subscription never became active');
    await new Promise((r) => setTimeout(r, 50));
  }
  await put({ ...patient('Erased', ['Ella'], `MRN-${P}`), id: P });
  await put({ ...patient('Erased', ['Ella', 'Marie'], `MRN-${P}`), id: P });
  await put({ ...patient('Kept', ['Kim'], `MRN-${Q}`), id: Q });
  await put({ resourceType: 'Device', id: `ed-${tag}`, status: 'active', patient: { reference: `Patient/${P}` } });
  await put({ ...heartRate(P, 71), id: `eo1-${tag}` });
  await put({ ...heartRate(P, 72), id: `eo2-${tag}` });
  await put({ ...heartRate(P, 73), id: `eo2-${tag}` });
  await put({ ...heartRate(P, 74), id: `eo3-${tag}` });
  expect((await ctx.request.delete(`/fhir/Observation/eo3-${tag}`)).status).toBe(204);
  await put({ ...heartRate(Q, 90), id: `eo-perf-${tag}`, performer: [{ reference: `Patient/${P}` }] });
  await put({ ...heartRate(Q, 91), id: `eq1-${tag}` });
  await put({ resourceType: 'Observation', id: `eq-del-${tag}`, status: 'final', code: { text: 'note' }, subject: { reference: `Patient/${Q}` } });
  // An R4 criteria rest-hook with a payload is a PUT [endpoint]/Observation/[id] per event.
  const delivered = (id: string) => hook.received.some((r) => r.method === 'PUT' && r.url.endsWith(`/Observation/${id}`));
  await hook.waitFor(() => delivered(`eo1-${tag}`) && delivered(`eq1-${tag}`));
  await outboxIdle(ctx.vigil);
  await ctx.vigil.audit.flush();
}, 120_000);

afterAll(async () => {
  await hook.close();
  await ctx.close();
});

test('a dry run lists what would go and removes nothing', async () => {
  const r = await ctx.request.post(`/fhir/Patient/${P}/$purge?_dryRun=true`);
  expect(r.status).toBe(200);
  const p = r.body as Parameters;
  expect(param(p, 'dryRun')?.valueBoolean).toBe(true);
  const listed = p.parameter!.filter((x) => x.name === 'resource').map((x) => x.valueString);
  for (const ref of [`Patient/${P}`, ...mine]) expect(listed).toContain(ref);
  expect(listed).not.toContain(`Patient/${Q}`);
  expect(listed).not.toContain(`Observation/eq1-${tag}`);
  expect(param(p, 'versions')?.valueInteger).toBeGreaterThanOrEqual(9);
  expect(param(p, 'notifications')?.valueInteger).toBeGreaterThanOrEqual(3);
  expect((await get(`/fhir/Patient/${P}`)).status).toBe(200);
});

test('$purge erases the patient everywhere: read, vread, history, search, $lastn, exports, notifications, buckets', async () => {
  const before = await kickoff(ctx.request, '/fhir/$export?_type=Patient,Observation,Device');
  const oldManifest = await waitForManifest(ctx.request, before);
  expect(text([...(await downloadAll(ctx.request, oldManifest)).values()])).toContain(P);

  const purgedAt = new Date();
  const isLater = (res: Resource | undefined) => res?.resourceType === 'AuditEvent' && new Date((res as AuditEvent).recorded) >= purgedAt;
  const r = await ctx.request.post(`/fhir/Patient/${P}/$purge`);
  expect(r.status).toBe(200);
  expect(param(r.body as Parameters, 'dryRun')?.valueBoolean).toBe(false);
  expect(param(r.body as Parameters, 'exportLines')?.valueInteger).toBeGreaterThanOrEqual(5);

  for (const ref of [`Patient/${P}`, ...mine]) {
    expect((await get(`/fhir/${ref}`)).status).toBe(404);
    expect((await get(`/fhir/${ref}/_history/1`)).status).toBe(404);
    const h = await get(`/fhir/${ref}/_history`);
    expect(h.status === 404 || (h.body as Bundle).entry === undefined || (h.body as Bundle).entry!.length === 0).toBe(true);
  }
  const reads = [
    `/fhir/Observation?patient=${P}`,
    `/fhir/Observation?subject=Patient/${P}`,
    `/fhir/Observation?performer=Patient/${P}`,
    `/fhir/Patient?identifier=MRN-${P}`,
    `/fhir/Patient?family=Erased`,
    `/fhir/Device?patient=${P}`,
    `/fhir/Observation/$lastn?patient=${P}`,
    `/fhir/Observation?code=http://loinc.org|8867-4&date=2024-05-01&_count=100`,
    `/fhir/Observation/_history?_count=500`,
    `/fhir/Patient/_history?_count=500`,
    `/fhir/_history?_count=500`,
  ];
  for (const path of reads) {
    const res = await get(path);
    expect(res.status).toBe(200);
    // The entries (the self link repeats the query, of course), without the AuditEvents of this
    // test's own reads since the purge (they record accesses to the erased ids, answered 404).
    const entries = text(((res.body as Bundle).entry ?? []).filter((e) => !isLater(e.resource)));
    if (entries.includes(P)) {
      const bad = ((res.body as Bundle).entry ?? []).filter((e) => !isLater(e.resource) && text(e).includes(P));
      throw new Error(`${path}: ${text(bad).slice(0, 1500)}`);
    }
    for (const ref of mine) expect(entries.includes(ref.split('/')[1])).toBe(false);
  }
  // What was not the patient's stays.
  expect((await get(`/fhir/Observation/eq1-${tag}`)).status).toBe(200);
  expect((await get(`/fhir/Patient/${Q}`)).status).toBe(200);

  // The export made before: its files no longer hold the patient's lines, and the counts agree.
  const again = await waitForManifest(ctx.request, before);
  const files = await downloadAll(ctx.request, again);
  expect(text([...files.values()])).not.toContain(P);
  expect(files.get('Patient')!.map((x) => x.id)).toContain(Q);
  // A new export neither.
  const after = await waitForManifest(ctx.request, await kickoff(ctx.request, '/fhir/$export?_type=Patient,Observation,Device'));
  expect(text([...(await downloadAll(ctx.request, after)).values()])).not.toContain(P);

  // Notifications: $events keeps the numbers but names no erased resource.
  const subs = (await get('/fhir/Subscription?_count=10')).body as Bundle;
  const subId = subs.entry!.find((e) => (e.resource as Subscription).reason === 'erasure')!.resource!.id!;
  const events = await ctx.request.post(`/fhir/Subscription/${subId}/$events`).set('Accept', FHIR_JSON);
  expect(events.status).toBe(200);
  expect(text(events.body)).not.toContain(P);
  for (const ref of mine) expect(text(events.body)).not.toContain(ref.split('/')[1]);
  expect(text(events.body)).toContain(`eq1-${tag}`);

  // Stored traces: no history version, no candidate bucket entry, no notification row.
  // (Versions written before the purge; the audit records of this test's reads since name the ids.)
  expect(await ctx.db.collection('history').countDocuments({ $or: [{ comp: `Patient/${P}` }, { id: P }], ts: { $lt: purgedAt } })).toBe(0);
  const buckets = await ctx.db.collection('search_buckets').find({}).toArray();
  expect(text(buckets)).not.toContain(P);
  for (const ref of mine) expect(text(buckets)).not.toContain(ref.split('/')[1]);
  const rows = await ctx.db.collection('sub_notifications').find({}).toArray();
  expect(text(rows)).not.toContain(P);
  for (const ref of mine) expect(text(rows)).not.toContain(ref.split('/')[1]);

  // The erasure is audited, without the erased content (the patient only as a hash).
  await ctx.vigil.audit.flush();
  const audits = (await get('/fhir/AuditEvent?_count=1000')).body as Bundle;
  const erasure = audits.entry!.map((e) => e.resource as AuditEvent).filter((a) => a.subtype?.some((c) => c.code === 'purge'));
  expect(erasure).toHaveLength(1);
  // Audit records of accesses before the purge were in the patient's compartment: erased too.
  const earlier = audits.entry!.map((e) => e.resource as AuditEvent).filter((a) => new Date(a.recorded) < purgedAt);
  expect(earlier.length).toBeGreaterThan(0);
  expect(text(earlier).includes(P)).toBe(false);
  expect(text(erasure[0])).not.toContain(P);
  expect(erasure[0].entity![0].what!.identifier!.system).toBe('urn:vigil:erased-patient-sha256');
});

test('$expunge removes the history of one deleted resource, and refuses one that is not deleted', async () => {
  expect((await ctx.request.post(`/fhir/Observation/eq1-${tag}/$expunge`)).status).toBe(409);
  expect((await ctx.request.post(`/fhir/Observation/nope-${tag}/$expunge`)).status).toBe(404);
  expect((await ctx.request.delete(`/fhir/Observation/eq-del-${tag}`)).status).toBe(204);
  expect((await get(`/fhir/Observation/eq-del-${tag}/_history/1`)).status).toBe(200);
  const r = await ctx.request.post(`/fhir/Observation/eq-del-${tag}/$expunge`);
  expect(r.status).toBe(200);
  expect(param(r.body as Parameters, 'versions')?.valueInteger).toBe(2);
  expect((await get(`/fhir/Observation/eq-del-${tag}`)).status).toBe(404);
  expect((await get(`/fhir/Observation/eq-del-${tag}/_history/1`)).status).toBe(404);
  const hist = await get('/fhir/Observation/_history?_count=500');
  expect(text(hist.body)).not.toContain(`eq-del-${tag}`);
  expect((await get(`/fhir/Patient/${Q}`)).status).toBe(200);
});

test('the admin command purges too, with a dry run first', async () => {
  const R = `er-${tag}`;
  await put({ ...patient('Cli', ['Carl'], `MRN-${R}`), id: R });
  await put({ ...heartRate(R, 66), id: `er-o-${tag}` });
  await outboxIdle(ctx.vigil);
  const lines: string[] = [];
  await runAdmin(['erasure', 'purge', R, '--dry-run'], ctx.db, { out: (l) => lines.push(l), config: ctx.config });
  // (the Patient, its Observation and the audit records of the two writes, which name the patient)
  expect(lines[0]).toMatch(/^would erase \d+ resources \(\d+ versions\)/);
  expect(lines).toContain(`  Patient/${R}`);
  expect(lines).toContain(`  Observation/er-o-${tag}`);
  expect((await get(`/fhir/Patient/${R}`)).status).toBe(200);
  lines.length = 0;
  await runAdmin(['erasure', 'purge', R], ctx.db, { out: (l) => lines.push(l), config: ctx.config });
  // (plus the audit records of the read above, which name the patient)
  expect(lines[0]).toMatch(/^erased \d+ resources/);
  expect(lines).toContain(`  Patient/${R}`);
  expect((await get(`/fhir/Patient/${R}`)).status).toBe(404);
  expect((await get(`/fhir/Observation/er-o-${tag}`)).status).toBe(404);
  await expect(runAdmin(['erasure', 'expunge', `Patient/${Q}`], ctx.db, { out: () => undefined, config: ctx.config })).rejects.toThrow(/not deleted/);
});
