import type { AuditEvent, Bundle, Observation, Resource, Subscription } from 'fhir/r4';
import { createTestContext, FHIR_JSON, patient, type TestContext } from '../../support/context';
import { undeclaredCollections } from '../../support/declared-collections';
import { WebhookReceiver } from '../subscriptions/receiver';
import { downloadAll, kickoff, waitForManifest } from '../bulk/helpers';
import { getJson, post, settle, uid, until, vital } from '../../support/alerting';

/**
 * $purge with alerting and NEWS2 on, while a device keeps sending the patient's vitals: the
 * purge marks the compartment first, so neither the readings that race it nor what alerting
 * derives from them (NEWS2 Observations, Flag episodes) survive it or reappear afterwards.
 */
let ctx: TestContext;
let hook: WebhookReceiver;
let subId: string;
let pinnedId: string;
const P = uid('eap');
const K = uid('eak');
const SCT = 'http://snomed.info/sct';
const NEWS2 = '1104051000000101';

const get = (path: string) => ctx.request.get(path).set('Accept', FHIR_JSON);
const text = (v: unknown) => JSON.stringify(v);

/** A full NEWS2 parameter set (abnormal: a score and Flag episodes follow). */
function vitalsOf(p: string): Observation[] {
  return [
    vital(p, '9279-1', 26, '/min'),
    vital(p, '59408-5', 90, '%'),
    vital(p, '3151-8', 21, '%'),
    vital(p, '8480-6', 88, 'mm[Hg]'),
    vital(p, '8867-4', 135, '/min'),
    {
      ...vital(p, '67775-7', 0, '1'),
      valueQuantity: undefined,
      valueCodeableConcept: { coding: [{ system: SCT, code: '248234009', display: 'Alert' }] },
    },
    vital(p, '8310-5', 39.5, 'Cel'),
  ];
}

beforeAll(async () => {
  ctx = await createTestContext({
    listen: true,
    env: { SUBSCRIPTION_POLL_MS: '50', ALERTING_ENABLED: 'true', NEWS2_ENABLED: 'true', ALERT_QUIET_PERIOD_MIN: '0' },
  });
  hook = await new WebhookReceiver().start();
  for (const id of [P, K]) {
    const r = await ctx.request.put(`/fhir/Patient/${id}`).set('Content-Type', FHIR_JSON).send(JSON.stringify({ ...patient('Alerted', ['Ada'], `MRN-${id}`), id }));
    expect(r.status).toBe(201);
  }
  // One subscription on heart rates of anyone, one pinned to P (a subscription naming the patient
  // in its criteria is in the patient's compartment, and is erased with it).
  for (const [reason, criteria] of [['erasure with alerting', `Observation?code=http://loinc.org|8867-4`], ['pinned', `Observation?subject=Patient/${P}`]]) {
    const sub = await post<Subscription>(ctx, 'Subscription', { resourceType: 'Subscription', status: 'requested', reason, criteria, channel: { type: 'rest-hook', endpoint: hook.url, payload: 'application/fhir+json' } });
    await until('subscription active', async () => ((await getJson<Subscription>(ctx, `Subscription/${sub.id}`)).status === 'active' ? true : undefined));
    if (reason === 'pinned') pinnedId = sub.id!;
    else subId = sub.id!;
  }
  for (const p of [P, K]) for (const o of vitalsOf(p)) await post(ctx, 'Observation', o);
  // Alerting has derived a NEWS2 score and Flags for both patients.
  for (const p of [P, K]) {
    await until(`NEWS2 for ${p}`, async () => ((await getJson<Bundle>(ctx, `Observation?patient=${p}&code=${SCT}|${NEWS2}`)).entry?.length ? true : undefined), 30_000);
    await until(`Flags for ${p}`, async () => ((await getJson<Bundle>(ctx, `Flag?patient=${p}`)).entry?.length ? true : undefined), 30_000);
  }
}, 180_000);

afterAll(async () => {
  await hook.close();
  await ctx.close();
});

/** Entries of a Bundle, without the audit records of this test's own reads after the purge. */
function entriesOf(b: Bundle, since: Date): Resource[] {
  return (b.entry ?? []).map((e) => e.resource!).filter((r) => r && !(r.resourceType === 'AuditEvent' && new Date((r as AuditEvent).recorded) >= since));
}

/** Reads that must show nothing of P. */
async function assertGone(since: Date): Promise<void> {
  expect((await get(`/fhir/Patient/${P}`)).status).toBe(404);
  const everything = await get(`/fhir/Patient/${P}/$everything`);
  expect(everything.status === 404 || entriesOf(everything.body as Bundle, since).length === 0).toBe(true);
  for (const path of [
    `/fhir/Observation?patient=${P}&_count=500`,
    `/fhir/Observation?subject=Patient/${P}&_count=500`,
    `/fhir/Flag?patient=${P}&_count=500`,
    `/fhir/Observation/$lastn?patient=${P}`,
    `/fhir/Observation/_history?_count=500`,
    `/fhir/Flag/_history?_count=500`,
    `/fhir/_history?_count=500`,
  ]) {
    const res = await get(path);
    expect(res.status).toBe(200);
    const left = entriesOf(res.body as Bundle, since).filter((r) => text(r).includes(P));
    if (left.length > 0) throw new Error(`${path} still shows ${text(left).slice(0, 800)}`);
  }
}

test('a purge while vitals stream in leaves nothing of the patient, derived resources included', async () => {
  // A device keeps sending P's readings (and K's) until the purge has returned.
  let streaming = true;
  let accepted = 0;
  const refused: number[] = [];
  const device = (async () => {
    for (let i = 0; streaming; i++) {
      const o = vitalsOf(i % 3 === 0 ? K : P)[i % 7];
      const r = await ctx.request.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(JSON.stringify(o));
      if (r.status === 201) accepted++;
      else refused.push(r.status);
    }
  })();
  await until('readings streaming', () => (accepted >= 5 ? true : undefined));
  const purgedAt = new Date();
  const r = await ctx.request.post(`/fhir/Patient/${P}/$purge`);
  streaming = false;
  await device;
  expect(r.status).toBe(200);
  // Writes into the erased compartment are refused (422 naming the erasure), nothing else is.
  expect(refused.every((s) => s === 422)).toBe(true);
  const late = await ctx.request.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(JSON.stringify(vitalsOf(P)[0]));
  expect(late.status).toBe(422);
  expect(text(late.body)).toContain('MSG_PATIENT_ERASED');

  await assertGone(purgedAt);
  // Nothing reappears: once the outbox has handed on everything, and again a little later.
  await settle(ctx);
  await assertGone(purgedAt);
  const watchUntil = Date.now() + 3000;
  while (Date.now() < watchUntil) {
    const flags = await getJson<Bundle>(ctx, `Flag?patient=${P}`);
    const scores = await getJson<Bundle>(ctx, `Observation?patient=${P}&_count=500`);
    expect((flags.entry ?? []).length + (scores.entry ?? []).length).toBe(0);
  }
  await settle(ctx);
  await assertGone(purgedAt);

  // Exports and notifications neither; K keeps everything.
  const manifest = await waitForManifest(ctx.request, await kickoff(ctx.request, '/fhir/$export?_type=Patient,Observation,Flag'));
  const files = await downloadAll(ctx.request, manifest);
  expect(text([...files.values()])).not.toContain(P);
  expect(files.get('Patient')!.map((x) => x.id)).toContain(K);
  expect((await get(`/fhir/Subscription/${pinnedId}`)).status).toBe(404);
  const events = await ctx.request.post(`/fhir/Subscription/${subId}/$events`).set('Accept', FHIR_JSON);
  expect(events.status).toBe(200);
  expect(text(events.body)).not.toContain(P);
  expect((await getJson<Bundle>(ctx, `Flag?patient=${K}`)).entry?.length).toBeGreaterThan(0);
  expect((await getJson<Bundle>(ctx, `Observation?patient=${K}&code=${SCT}|${NEWS2}`)).entry?.length).toBeGreaterThan(0);
  // Stored: no version, current document or body of P written before the purge.
  // Alerting's own state (its erasure participant) names P no more.
  for (const name of ['alert_keys', 'alert_state', 'alert_heads', 'alert_flags', 'alert_latest', 'alert_deadlines']) {
    expect(text(await ctx.db.collection(name).find({}).toArray())).not.toContain(P);
  }
  // (The audit trail records this test's reads of P since the purge: those are left out.)
  for (const name of ['history', 'Observation', 'Flag', 'bodies']) {
    expect(await ctx.db.collection(name).countDocuments({ comp: `Patient/${P}`, type: { $ne: 'AuditEvent' } })).toBe(0);
  }
}, 180_000);

test('every collection the server made (alerting, subscriptions, bulk, erasure, auth) is declared behind the storage wall', async () => {
  expect(await undeclaredCollections(ctx.db)).toEqual([]);
});
