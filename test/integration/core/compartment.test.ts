import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Bundle, CapabilityStatement } from 'fhir/r4';
import Client from 'fhir-kit-client';
import { createTestContext, FHIR_JSON, heartRate, patient, type TestContext } from '../../support/context';
import { basic, VITALS } from '../auth/helpers';

/**
 * Compartment search (GET [base]/Patient/[id]/[type]) and Patient/$everything, through the real
 * app with auth on: both are search under one more restriction, so each caller sees exactly what
 * the same search shows them, inside the compartment. A real client library (fhir-kit-client,
 * unmodified) drives the compartment search.
 */
const secret = (name: string) => `${name}-${randomBytes(12).toString('hex')}`;
const S = { admin: secret('admin'), gw: secret('gw'), vitals: secret('vitals'), obs: secret('obs') };
const DAY = 24 * 3600_000;

let ctx: TestContext;
const tokens: Record<string, string> = {};
/** The store's clock: moved forward a day before the `_since` update, so "since" never ties. */
let shift = 0;
let seededUntil = '';

async function token(id: string, pass: string, scope: string): Promise<string> {
  const r = await ctx.request.post('/auth/token').type('form').set('Authorization', basic(id, pass)).send({ grant_type: 'client_credentials', scope });
  if (r.status !== 200) throw new Error(`token for ${id}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.access_token as string;
}

const as = (who: string) => ({ Authorization: `Bearer ${tokens[who]}`, Accept: FHIR_JSON });
const client = (who: string) => new Client({ baseUrl: ctx.baseUrl, bearerToken: tokens[who] });
const ids = (b: Bundle) => (b.entry ?? []).filter((e) => e.search?.mode !== 'outcome').map((e) => `${e.resource?.resourceType}/${e.resource?.id}`).sort();
const rel = (url: string) => url.slice(url.indexOf('/fhir/'));

async function getAll(who: string, url: string): Promise<{ ids: string[]; pages: number }> {
  const seen: string[] = [];
  let next: string | undefined = url;
  let pages = 0;
  while (next && pages < 50) {
    const r = await ctx.request.get(next).set(as(who));
    expect([next, r.status]).toEqual([next, 200]);
    const b = r.body as Bundle;
    seen.push(...ids(b));
    pages++;
    next = b.link?.find((l) => l.relation === 'next')?.url;
    if (next) next = rel(next);
  }
  return { ids: seen, pages };
}

beforeAll(async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-compartment-'));
  const file = path.join(dir, 'clients.json');
  writeFileSync(
    file,
    JSON.stringify([
      { client_id: 'admin', name: 'Seeder', scope: 'system/*.cruds', client_secret: S.admin },
      { client_id: 'gw-p1', name: 'Gateway of p1', scope: 'patient/Observation.rs patient/Patient.rs patient/Device.rs', client_secret: S.gw, patient: 'cp1' },
      { client_id: 'vitals-p1', name: 'Vitals viewer of p1', scope: `patient/Observation.rs?${VITALS} patient/Patient.rs`, client_secret: S.vitals, patient: 'cp1' },
      { client_id: 'obs-only', name: 'Observation reader', scope: 'system/Observation.rs', client_secret: S.obs },
    ]),
  );
  ctx = await createTestContext({ auth: true, listen: true, env: { SMART_CLIENTS_FILE: file, ALERTING_ENABLED: 'false', NEWS2_ENABLED: 'false' }, clock: () => new Date(Date.now() + shift) });
  tokens.admin = await token('admin', S.admin, 'system/*.cruds');
  tokens.gw = await token('gw-p1', S.gw, 'patient/Observation.rs patient/Patient.rs patient/Device.rs');
  tokens.vitals = await token('vitals-p1', S.vitals, 'patient/Observation.rs patient/Patient.rs');
  tokens.obs = await token('obs-only', S.obs, 'system/Observation.rs');
  const put = async (res: Record<string, unknown>) => {
    const r = await ctx.request.put(`/fhir/${res.resourceType}/${res.id}`).set(as('admin')).type(FHIR_JSON).send(res);
    if (r.status >= 300) throw new Error(`seed ${res.resourceType}/${res.id}: ${r.status} ${JSON.stringify(r.body)}`);
  };
  await put({ ...patient('One', ['Pat'], 'MRN-C1'), id: 'cp1' });
  await put({ ...patient('Two', ['Pat'], 'MRN-C2'), id: 'cp2' });
  await put({ resourceType: 'Device', id: 'cd1', status: 'active', patient: { reference: 'Patient/cp1' } });
  await put({ resourceType: 'Device', id: 'cd2', status: 'active', patient: { reference: 'Patient/cp2' } });
  await put({ ...heartRate('cp1', 70), id: 'co1' });
  await put({ ...heartRate('cp1', 5.4), id: 'co2', category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }] });
  await put({ ...heartRate('cp2', 90), id: 'co3', device: { reference: 'Device/cd2' } });
  // Subject cp2, performed by cp1: in both compartments.
  await put({ ...heartRate('cp2', 91), id: 'co4', performer: [{ reference: 'Patient/cp1' }] });
  seededUntil = new Date(Date.now() + shift + 1000).toISOString();
});

afterAll(async () => {
  await ctx?.close();
});

describe('compartment search: GET [base]/Patient/[id]/[type]', () => {
  it('works with fhir-kit-client compartmentSearch, unmodified, with search parameters and paging', async () => {
    const c = client('admin');
    const all = (await c.compartmentSearch({ resourceType: 'Observation', compartment: { resourceType: 'Patient', id: 'cp1' } })) as Bundle;
    expect(ids(all)).toEqual(['Observation/co1', 'Observation/co2', 'Observation/co4']);
    const vitals = (await c.compartmentSearch({
      resourceType: 'Observation',
      compartment: { resourceType: 'Patient', id: 'cp1' },
      searchParams: { category: 'vital-signs', _count: 1, _sort: '_id' },
    })) as Bundle;
    expect(ids(vitals)).toEqual(['Observation/co1']);
    // The next link stays inside the compartment, and the client follows it as it is.
    expect(vitals.link?.find((l) => l.relation === 'next')?.url).toMatch(/\/fhir\/Patient\/cp1\/Observation\?/);
    const page2 = (await c.nextPage({ bundle: vitals })) as Bundle;
    expect(ids(page2)).toEqual(['Observation/co4']);
    const devices = (await c.compartmentSearch({ resourceType: 'Device', compartment: { resourceType: 'Patient', id: 'cp2' } })) as Bundle;
    expect(ids(devices)).toEqual(['Device/cd2']);
  });

  it('obeys the caller exactly like search: the same search, restricted to the compartment', async () => {
    for (const [who, pid] of [['gw', 'cp1'], ['gw', 'cp2'], ['vitals', 'cp1'], ['vitals', 'cp2'], ['admin', 'cp2']] as const) {
      const inCompartment = ids((await ctx.request.get(`/fhir/Patient/${pid}/Observation`).set(as(who))).body as Bundle);
      const searched = new Set(ids((await ctx.request.get('/fhir/Observation').set(as(who))).body as Bundle));
      const compartmentAll = ids((await ctx.request.get(`/fhir/Patient/${pid}/Observation`).set(as('admin'))).body as Bundle);
      expect([who, pid, inCompartment]).toEqual([who, pid, compartmentAll.filter((id) => searched.has(id))]);
    }
    // Spot checks: the gateway of cp1 sees of cp2 only what is also in cp1's compartment.
    expect(ids((await ctx.request.get('/fhir/Patient/cp2/Observation').set(as('gw'))).body as Bundle)).toEqual(['Observation/co4']);
    expect(ids((await ctx.request.get('/fhir/Patient/cp1/Observation').set(as('vitals'))).body as Bundle)).toEqual(['Observation/co1', 'Observation/co4']);
    const denied = await ctx.request.get('/fhir/Patient/cp1/Device').set(as('vitals'));
    expect(denied.status).toBe(403);
  });

  it('refuses types outside the compartment and unknown types', async () => {
    const sub = await ctx.request.get('/fhir/Patient/cp1/Subscription').set(as('admin'));
    expect(sub.status).toBe(400);
    expect(sub.body.issue[0].diagnostics).toMatch(/not in the Patient compartment/);
    expect((await ctx.request.get('/fhir/Patient/cp1/Medication').set(as('admin'))).status).toBe(404);
  });
});

describe('Patient/$everything', () => {
  const CP1 = ['Device/cd1', 'Observation/co1', 'Observation/co2', 'Observation/co4', 'Patient/cp1'];

  it('returns the patient, its devices and observations; _type narrows; pages with _count without gaps or repeats', async () => {
    const one = await ctx.request.get('/fhir/Patient/cp1/$everything?_type=Patient,Device,Observation').set(as('admin'));
    expect(one.status).toBe(200);
    expect(one.body.type).toBe('searchset');
    expect(ids(one.body as Bundle)).toEqual(CP1);
    expect((one.body as Bundle).entry?.every((e) => e.fullUrl && e.search?.mode === 'match')).toBe(true);
    const paged = await getAll('admin', '/fhir/Patient/cp1/$everything?_type=Patient,Device,Observation&_count=2');
    expect(paged.pages).toBe(3);
    expect(paged.ids.sort()).toEqual(CP1);
    const obsOnly = await ctx.request.get('/fhir/Patient/cp1/$everything?_type=Observation').set(as('admin'));
    expect(ids(obsOnly.body as Bundle)).toEqual(['Observation/co1', 'Observation/co2', 'Observation/co4']);
    const everythingAtAll = await getAll('admin', '/fhir/Patient/cp1/$everything?_count=3');
    expect(everythingAtAll.ids.filter((i) => !i.startsWith('AuditEvent/')).sort()).toEqual(CP1);
  });

  it('obeys the caller: patient scopes see their compartment, v2 restrictions hold, others get 403/404', async () => {
    expect(ids((await ctx.request.get('/fhir/Patient/cp1/$everything').set(as('gw'))).body as Bundle)).toEqual(CP1);
    // The vitals viewer may not read Devices or laboratory results: left out, as search leaves them out.
    expect(ids((await ctx.request.get('/fhir/Patient/cp1/$everything').set(as('vitals'))).body as Bundle)).toEqual(['Observation/co1', 'Observation/co4', 'Patient/cp1']);
    expect((await ctx.request.get('/fhir/Patient/cp2/$everything').set(as('gw'))).status).toBe(404);
    expect((await ctx.request.get('/fhir/Patient/cp1/$everything').set(as('obs'))).status).toBe(403);
    expect((await ctx.request.get('/fhir/Patient/nobody/$everything').set(as('admin'))).status).toBe(404);
  });

  it('type level: every patient the caller may read, with what is in their compartments', async () => {
    expect(ids((await ctx.request.get('/fhir/Patient/$everything').set(as('gw'))).body as Bundle)).toEqual(CP1);
    const all = await getAll('admin', '/fhir/Patient/$everything?_type=Patient,Device,Observation&_count=3');
    expect(all.ids.sort()).toEqual(['Device/cd1', 'Device/cd2', 'Observation/co1', 'Observation/co2', 'Observation/co3', 'Observation/co4', 'Patient/cp1', 'Patient/cp2']);
  });

  it('_since keeps only what changed since then; bad parameters are a 400 naming them', async () => {
    shift = DAY;
    // Tokens expire on the server's (shifted) clock: a fresh one for the day after.
    tokens.admin = await token('admin', S.admin, 'system/*.cruds');
    const r = await ctx.request.put('/fhir/Observation/co2').set(as('admin')).type(FHIR_JSON).send({ ...heartRate('cp1', 5.6), id: 'co2' });
    expect(r.status).toBe(200);
    const since = await ctx.request.get(`/fhir/Patient/cp1/$everything?_since=${encodeURIComponent(seededUntil)}&_type=Patient,Device,Observation`).set(as('admin'));
    expect(ids(since.body as Bundle)).toEqual(['Observation/co2']);
    for (const q of ['_since=yesterday', '_type=Subscription', '_count=0', 'start=2024-01-01', '_page=garbage']) {
      const bad = await ctx.request.get(`/fhir/Patient/cp1/$everything?${q}`).set(as('admin'));
      expect([q, bad.status, bad.body.resourceType]).toEqual([q, 400, 'OperationOutcome']);
      expect(bad.body.issue[0].diagnostics).toContain(q.split('=')[0]);
    }
  });

  it('is declared in the CapabilityStatement, with the patient compartment', async () => {
    const cs = (await ctx.request.get('/fhir/metadata')).body as CapabilityStatement;
    expect(cs.rest?.[0].compartment).toEqual(['http://hl7.org/fhir/CompartmentDefinition/patient']);
    const pat = cs.rest?.[0].resource?.find((r) => r.type === 'Patient');
    expect(pat?.operation?.find((o) => o.name === 'everything')?.definition).toBe('http://hl7.org/fhir/OperationDefinition/Patient-everything');
  });
});
