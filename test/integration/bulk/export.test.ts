import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { CapabilityStatement, Resource } from 'fhir/r4';
import { createTestContext, FHIR_JSON, heartRate, patient, type TestContext } from '../../support/context';
import { basic } from '../auth/helpers';
import { byId, download, downloadAll, kickoff, pathOf, searchAll, waitForManifest } from './helpers';

/** Bulk Data export over HTTP, with auth on: round trips checked against search, line by line. */
const secret = (n: string) => `${n}-${randomBytes(12).toString('hex')}`;
const S = { admin: secret('admin'), reader: secret('reader'), p1: secret('p1'), obs: secret('obs') };
let ctx: TestContext;
const tokens: Record<string, string> = {};
const as = (who: string) => ({ Authorization: `Bearer ${tokens[who]}` });
const tag = randomBytes(4).toString('hex');
const P1 = `bp1-${tag}`;
const P2 = `bp2-${tag}`;
const P3 = `bp3-${tag}`;

async function token(id: string, pass: string, scope: string): Promise<string> {
  const r = await ctx.request.post('/auth/token').type('form').set('Authorization', basic(id, pass)).send({ grant_type: 'client_credentials', scope });
  if (r.status !== 200) throw new Error(`token for ${id}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.access_token as string;
}

async function put(res: Record<string, unknown>): Promise<void> {
  const r = await ctx.request.put(`/fhir/${res.resourceType}/${res.id}`).set(as('admin')).type(FHIR_JSON).send(res);
  if (r.status >= 300) throw new Error(`seed ${res.resourceType}/${res.id}: ${r.status} ${r.text}`);
}

const strip = (r: Resource) => JSON.stringify(r);

beforeAll(async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-bulk-'));
  const file = path.join(dir, 'clients.json');
  writeFileSync(
    file,
    JSON.stringify([
      { client_id: 'bulk-admin', name: 'Admin', scope: 'system/*.cruds', client_secret: S.admin },
      { client_id: 'bulk-reader', name: 'Analytics', scope: 'system/*.rs', client_secret: S.reader },
      { client_id: 'bulk-p1', name: 'Patient app', scope: 'patient/*.rs', client_secret: S.p1, patient: P1 },
      { client_id: 'bulk-obs', name: 'Observation reader', scope: 'system/Observation.rs', client_secret: S.obs },
    ]),
  );
  ctx = await createTestContext({ auth: true, env: { SMART_CLIENTS_FILE: file, BULK_CHUNK_RESOURCES: '7' } });
  tokens.admin = await token('bulk-admin', S.admin, 'system/*.cruds');
  tokens.reader = await token('bulk-reader', S.reader, 'system/*.rs');
  tokens.p1 = await token('bulk-p1', S.p1, 'patient/*.rs');
  tokens.obs = await token('bulk-obs', S.obs, 'system/Observation.rs');
  for (const [id, fam] of [[P1, 'One'], [P2, 'Two'], [P3, 'Three']]) await put({ ...patient(fam, ['Pat'], `MRN-${id}`), id });
  await put({ resourceType: 'Device', id: `bd1-${tag}`, status: 'active', patient: { reference: `Patient/${P1}` } });
  // Enough Observations that every file spans several chunks (7 resources each).
  for (let i = 0; i < 20; i++) await put({ ...heartRate(i % 2 ? P1 : P2, 60 + i, `2024-05-01T10:${String(i).padStart(2, '0')}:00Z`), id: `bo${i}-${tag}` });
  await put({ ...heartRate(P3, 99), id: `bo-p3-${tag}`, code: { coding: [{ system: 'http://loinc.org', code: '8310-5' }] } });
  await put({ resourceType: 'Group', id: `bg-${tag}`, type: 'person', actual: true, member: [{ entity: { reference: `Patient/${P2}` } }, { entity: { reference: `Patient/${P3}` } }] });
}, 120_000);

afterAll(async () => {
  await ctx?.close();
});

test('kick-off refuses a request without Prefer: respond-async, and unknown formats and parameters', async () => {
  let r = await ctx.request.get('/fhir/$export').set(as('reader')).set('Accept', FHIR_JSON);
  expect(r.status).toBe(400);
  expect(r.body.issue[0].details.coding[0].code).toBe('MSG_BULK_PREFER');
  r = await ctx.request.get('/fhir/$export?_outputFormat=text/csv').set(as('reader')).set({ Accept: FHIR_JSON, Prefer: 'respond-async' });
  expect(r.status).toBe(400);
  expect(r.body.issue[0].details.coding[0].code).toBe('MSG_BULK_FORMAT');
  r = await ctx.request.get('/fhir/Patient/$export?_type=SubscriptionTopic').set(as('reader')).set({ Accept: FHIR_JSON, Prefer: 'respond-async' });
  expect(r.status).toBe(400);
  r = await ctx.request.get('/fhir/$export?_typeFilter=Observation?bogus=1').set(as('reader')).set({ Accept: FHIR_JSON, Prefer: 'respond-async' });
  expect(r.status).toBe(400);
  r = await ctx.request.get('/fhir/$export').set({ Accept: FHIR_JSON, Prefer: 'respond-async' });
  expect(r.status).toBe(401);
});

test('a system export of Patient, Device and Observation holds exactly what search returns, line by line', async () => {
  const status = await kickoff(ctx.request, '/fhir/$export?_type=Patient,Device,Observation&_outputFormat=ndjson', as('reader'));
  expect(status).toMatch(/^http:\/\/localhost\/fhir\/\$export-status\//);
  const m = await waitForManifest(ctx.request, status, as('reader'));
  expect(m.requiresAccessToken).toBe(true);
  expect(m.request).toBe('http://localhost/fhir/$export?_type=Patient,Device,Observation&_outputFormat=ndjson');
  expect(new Date(m.transactionTime).toISOString()).toBe(m.transactionTime);
  expect(m.error).toEqual([]);
  const files = await downloadAll(ctx.request, m, as('reader'));
  for (const type of ['Patient', 'Device', 'Observation']) {
    const searched = (await searchAll(ctx.request, `/fhir/${type}?_count=50`, as('reader'))).sort(byId);
    const exported = (files.get(type) ?? []).sort(byId);
    expect(exported.length).toBe(searched.length);
    exported.forEach((r, i) => expect(strip(r)).toBe(strip(searched[i])));
  }
  expect(files.get('Observation')!.length).toBeGreaterThanOrEqual(21);
});

test('the files and the status are for the same client only', async () => {
  const status = await kickoff(ctx.request, '/fhir/$export?_type=Patient', as('reader'));
  const m = await waitForManifest(ctx.request, status, as('reader'));
  let r = await ctx.request.get(pathOf(m.output[0].url)).set(as('obs'));
  expect(r.status).toBe(404);
  r = await ctx.request.get(pathOf(m.output[0].url));
  expect(r.status).toBe(401);
  r = await ctx.request.get(pathOf(status)).set(as('obs'));
  expect(r.status).toBe(404);
});

test('types the client may not read go to the error file as OperationOutcomes', async () => {
  const status = await kickoff(ctx.request, '/fhir/$export?_type=Observation,Patient', as('obs'));
  const m = await waitForManifest(ctx.request, status, as('obs'));
  expect(m.output.map((o) => o.type)).toEqual(['Observation']);
  expect(m.error).toHaveLength(1);
  const errors = await download(ctx.request, m.error[0].url, as('obs'));
  expect(errors).toHaveLength(1);
  expect(errors[0].resourceType).toBe('OperationOutcome');
  expect(JSON.stringify(errors[0])).toContain('Patient');
});

test('a patient-scoped token exports only its own patient', async () => {
  const status = await kickoff(ctx.request, '/fhir/Patient/$export', as('p1'));
  const m = await waitForManifest(ctx.request, status, as('p1'));
  const files = await downloadAll(ctx.request, m, as('p1'));
  expect((files.get('Patient') ?? []).map((p) => p.id)).toEqual([P1]);
  const obs = files.get('Observation') ?? [];
  // Ten heart rates (alerting may add derived Observations, which search returns as well).
  expect(obs.filter((o) => String(o.id).startsWith('bo')).length).toBe(10);
  for (const o of obs) expect((o as { subject?: { reference?: string } }).subject?.reference).toBe(`Patient/${P1}`);
  expect((files.get('Device') ?? []).map((d) => d.id)).toEqual([`bd1-${tag}`]);
  const searched = (await searchAll(ctx.request, '/fhir/Observation?_count=50', as('p1'))).sort(byId);
  expect(obs.sort(byId).map(strip)).toEqual(searched.map(strip));
});

test('Group export, _typeFilter and _since narrow the export like the same search', async () => {
  const status = await kickoff(ctx.request, `/fhir/Group/bg-${tag}/$export?_type=Patient,Observation&_typeFilter=${encodeURIComponent('Observation?code=http://loinc.org|8867-4')}`, as('reader'));
  const m = await waitForManifest(ctx.request, status, as('reader'));
  const files = await downloadAll(ctx.request, m, as('reader'));
  expect((files.get('Patient') ?? []).map((p) => p.id).sort()).toEqual([P2, P3].sort());
  const searched = (await searchAll(ctx.request, `/fhir/Observation?subject=Patient/${P2},Patient/${P3}&code=http://loinc.org|8867-4&_count=50`, as('reader'))).sort(byId);
  expect((files.get('Observation') ?? []).sort(byId).map(strip)).toEqual(searched.map(strip));
  expect(searched.length).toBe(10);

  const later = new Date(Date.now() + 60_000).toISOString();
  const s2 = await kickoff(ctx.request, `/fhir/$export?_type=Observation&_since=${encodeURIComponent(later)}`, as('reader'));
  const m2 = await waitForManifest(ctx.request, s2, as('reader'));
  expect(m2.output).toEqual([]);

  const r = await ctx.request.get('/fhir/Group/nope/$export').set(as('reader')).set({ Accept: FHIR_JSON, Prefer: 'respond-async' });
  expect(r.status).toBe(404);
});

test('DELETE on the status URL cancels: 202, then the status and the files are 404', async () => {
  const status = await kickoff(ctx.request, '/fhir/$export?_type=Observation', as('reader'));
  let r = await ctx.request.delete(pathOf(status)).set(as('reader'));
  expect(r.status).toBe(202);
  r = await ctx.request.get(pathOf(status)).set(as('reader'));
  expect(r.status).toBe(404);
  expect(r.body.resourceType).toBe('OperationOutcome');
  // A finished one too: its files go with it.
  const s2 = await kickoff(ctx.request, '/fhir/$export?_type=Patient', as('reader'));
  const m = await waitForManifest(ctx.request, s2, as('reader'));
  expect((await ctx.request.delete(pathOf(s2)).set(as('reader'))).status).toBe(202);
  expect((await ctx.request.get(pathOf(m.output[0].url)).set(as('reader'))).status).toBe(404);
  expect((await ctx.request.get(pathOf(s2)).set(as('reader'))).status).toBe(404);
  // The worker cleans up whatever the cancelled job had written (polled, bounded).
  const deadline = Date.now() + 20_000;
  while ((await ctx.db.collection('bulk_chunks').countDocuments({ job: pathOf(status).split('/').pop() })) > 0) {
    if (Date.now() > deadline) throw new Error('chunks of a cancelled job were left behind');
    await new Promise((res) => setTimeout(res, 100));
  }
});

test('the CapabilityStatement declares the export operations and instantiates the Bulk Data server statement', async () => {
  const r = await ctx.request.get('/fhir/metadata');
  const cs = r.body as CapabilityStatement;
  expect(cs.instantiates).toContain('http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data');
  expect(cs.rest![0].operation).toContainEqual({ name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export' });
  const res = (t: string) => cs.rest![0].resource!.find((x) => x.type === t)!;
  expect(res('Patient').operation).toContainEqual({ name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export' });
  expect(res('Group').operation).toContainEqual({ name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export' });
});

test('erasure needs a system-level token that may delete every type', async () => {
  for (const who of ['reader', 'p1', 'obs']) {
    const r = await ctx.request.post(`/fhir/Patient/${P3}/$purge?_dryRun=true`).set(as(who));
    expect(r.status).toBe(403);
    expect(r.body.issue[0].code).toBe('forbidden');
  }
  const ok = await ctx.request.post(`/fhir/Patient/${P3}/$purge?_dryRun=true`).set(as('admin'));
  expect(ok.status).toBe(200);
  expect(ok.body.resourceType).toBe('Parameters');
});
