import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Meta, Resource } from 'fhir/r4';
import { createTestContext, FHIR_JSON, heartRate, patient, type TestContext } from '../../support/context';
import { errorsOf, R4Judge } from '../../support/r4-judge';
import { basic } from '../auth/helpers';
import { byId, downloadAll, kickoff, kickoffPost, parameters, pathOf, searchAll, waitForManifest, type Manifest, type Param } from './helpers';

/**
 * The kick-off parameters beyond the GET basics: the POST form with a Parameters body, `_elements`
 * and `patient`, and the IG's refusals of what is not offered. Every export is checked line by
 * line against the same search.
 */
const secret = (n: string) => `${n}-${randomBytes(12).toString('hex')}`;
const S = { admin: secret('admin'), reader: secret('reader'), p1: secret('p1') };
let ctx: TestContext;
const tokens: Record<string, string> = {};
const as = (who: string) => ({ Authorization: `Bearer ${tokens[who]}` });
const tag = randomBytes(4).toString('hex');
const P1 = `kp1-${tag}`;
const P2 = `kp2-${tag}`;
const P3 = `kp3-${tag}`;
const GROUP = `kg-${tag}`;
const BASE = 'http://localhost/fhir';
const judge = new R4Judge();
let judged = 0;

async function token(id: string, pass: string, scope: string): Promise<string> {
  const r = await ctx.request.post('/auth/token').type('form').set('Authorization', basic(id, pass)).send({ grant_type: 'client_credentials', scope });
  if (r.status !== 200) throw new Error(`token for ${id}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.access_token as string;
}

async function put(res: Record<string, unknown>): Promise<void> {
  const r = await ctx.request.put(`/fhir/${res.resourceType}/${res.id}`).set(as('admin')).type(FHIR_JSON).send(res);
  if (r.status >= 300) throw new Error(`seed ${res.resourceType}/${res.id}: ${r.status} ${r.text}`);
}

const text = (r: Resource) => JSON.stringify(r);

/** Exported resources of one type, in id order, as text. */
async function exported(m: Manifest, who: string): Promise<Map<string, string[]>> {
  const files = await downloadAll(ctx.request, m, as(who));
  return new Map([...files].map(([type, rows]) => [type, rows.sort(byId).map(text)]));
}

async function searched(query: string, who: string): Promise<string[]> {
  return (await searchAll(ctx.request, query, as(who))).sort(byId).map(text);
}

/** A kick-off that must be refused: the status and the OperationOutcome's message code and issue code. */
async function refused(req: { method: 'get' | 'post'; path: string; body?: unknown; type?: string; who?: string }): Promise<{ status: number; code: string; issue: string; diagnostics: string }> {
  let call = ctx.request[req.method](req.path).set(as(req.who ?? 'reader')).set({ Accept: FHIR_JSON, Prefer: 'respond-async' });
  if (req.body !== undefined) call = call.set('Content-Type', req.type ?? FHIR_JSON).send(typeof req.body === 'string' ? req.body : JSON.stringify(req.body));
  const r = await call;
  expect(r.headers['content-type']).toMatch(/^application\/fhir\+json/);
  expect(r.body.resourceType).toBe('OperationOutcome');
  judge.add(`refusal:${++judged}:${req.method}:${req.path}`, r.text);
  return { status: r.status, code: r.body.issue[0].details?.coding?.[0]?.code, issue: r.body.issue[0].code, diagnostics: r.body.issue[0].diagnostics };
}

beforeAll(async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-bulk-params-'));
  const file = path.join(dir, 'clients.json');
  writeFileSync(
    file,
    JSON.stringify([
      { client_id: 'kp-admin', name: 'Admin', scope: 'system/*.cruds', client_secret: S.admin },
      { client_id: 'kp-reader', name: 'Analytics', scope: 'system/*.rs', client_secret: S.reader },
      { client_id: 'kp-p1', name: 'Patient app', scope: 'patient/*.rs', client_secret: S.p1, patient: P1 },
    ]),
  );
  ctx = await createTestContext({ auth: true, env: { SMART_CLIENTS_FILE: file, BULK_CHUNK_RESOURCES: '4', NEWS2_ENABLED: 'false', ALERTING_ENABLED: 'false' } });
  tokens.admin = await token('kp-admin', S.admin, 'system/*.cruds');
  tokens.reader = await token('kp-reader', S.reader, 'system/*.rs');
  tokens.p1 = await token('kp-p1', S.p1, 'patient/*.rs');
  for (const [id, fam] of [[P1, 'One'], [P2, 'Two'], [P3, 'Three']]) await put({ ...patient(fam, ['Kay'], `MRN-${id}`), id });
  await put({ resourceType: 'Device', id: `kd1-${tag}`, status: 'active', patient: { reference: `Patient/${P1}` } });
  const owners = [P1, P2, P3];
  for (let i = 0; i < 12; i++) await put({ ...heartRate(owners[i % 3], 60 + i, `2024-06-01T10:${String(i).padStart(2, '0')}:00Z`), id: `ko${i}-${tag}` });
  await put({ ...heartRate(P1, 97), id: `ko-bt-${tag}`, code: { coding: [{ system: 'http://loinc.org', code: '8310-5' }] } });
  // A decimal whose text JSON.stringify would change (37.50 -> 37.5): sent as raw text.
  const temp = JSON.stringify({ ...heartRate(P2, 1), id: `kdec-${tag}`, code: { coding: [{ system: 'http://loinc.org', code: '8310-5' }] } }).replace('"value":1,', '"value":37.50,');
  const w = await ctx.request.put(`/fhir/Observation/kdec-${tag}`).set(as('admin')).type(FHIR_JSON).send(temp);
  expect(w.status).toBe(201);
  await put({ resourceType: 'Group', id: GROUP, type: 'person', actual: true, member: [{ entity: { reference: `Patient/${P2}` } }, { entity: { reference: `Patient/${P3}` } }] });
}, 120_000);

afterAll(async () => {
  judge.close();
  await ctx?.close();
});

const HR = encodeURIComponent('Observation?code=http://loinc.org|8867-4');

test('POST kick-off with a Parameters body exports what the same GET does, line by line against search', async () => {
  const params: Param[] = [
    ['_type', 'valueString', 'Patient,Observation'],
    ['_outputFormat', 'valueString', 'application/fhir+ndjson'],
    ['_typeFilter', 'valueString', 'Observation?code=http://loinc.org|8867-4'],
  ];
  const status = await kickoffPost(ctx.request, '/fhir/$export', params, as('reader'));
  const m = await waitForManifest(ctx.request, status, as('reader'));
  // IG: for a POST, the manifest's request is the kick-off URL without the parameters.
  expect(m.request).toBe(`${BASE}/$export`);
  expect(m.error).toEqual([]);
  const posted = await exported(m, 'reader');
  expect(posted.get('Patient')).toEqual(await searched('/fhir/Patient?_count=50', 'reader'));
  expect(posted.get('Observation')).toEqual(await searched(`/fhir/Observation?code=${encodeURIComponent('http://loinc.org|8867-4')}&_count=50`, 'reader'));
  expect(posted.get('Observation')!.length).toBeGreaterThanOrEqual(12);

  const viaGet = await waitForManifest(ctx.request, await kickoff(ctx.request, `/fhir/$export?_type=Patient,Observation&_outputFormat=application/fhir%2Bndjson&_typeFilter=${HR}`, as('reader')), as('reader'));
  expect(await exported(viaGet, 'reader')).toEqual(posted);
});

test('exported lines keep the sender\'s decimal texts, as search does', async () => {
  const status = await kickoffPost(ctx.request, '/fhir/Patient/$export', [['patient', 'valueReference', { reference: `Patient/${P2}` }], ['_type', 'valueString', 'Observation'], ['_typeFilter', 'valueString', 'Observation?code=http://loinc.org|8310-5']], as('reader'));
  const m = await waitForManifest(ctx.request, status, as('reader'));
  expect(m.output.map((o) => o.count)).toEqual([1]);
  const file = await ctx.request.get(pathOf(m.output[0].url)).set(as('reader')).buffer(true).parse((res, cb) => {
    let body = '';
    res.on('data', (c: Buffer) => (body += c.toString('utf8')));
    res.on('end', () => cb(null, body));
  });
  expect(file.body as string).toContain('"value":37.50,');
  const read = await ctx.request.get(`/fhir/Observation/kdec-${tag}`).set(as('reader'));
  expect(read.text).toContain('"value":37.50,');
});

test('patient= restricts a Patient-level export to those patients\' compartments', async () => {
  const status = await kickoffPost(
    ctx.request,
    '/fhir/Patient/$export',
    [
      ['_type', 'valueString', 'Patient,Device'],
      ['_type', 'valueString', 'Observation'],
      ['patient', 'valueReference', { reference: `Patient/${P1}` }],
      ['patient', 'valueReference', { reference: `${BASE}/Patient/${P3}` }],
    ],
    as('reader'),
  );
  const m = await waitForManifest(ctx.request, status, as('reader'));
  expect(m.request).toBe(`${BASE}/Patient/$export`);
  const files = await exported(m, 'reader');
  expect(files.get('Patient')).toEqual(await searched(`/fhir/Patient?_id=${P1},${P3}`, 'reader'));
  expect(files.get('Device')).toEqual(await searched(`/fhir/Device?patient=Patient/${P1}`, 'reader'));
  const obs = await searched(`/fhir/Observation?subject=Patient/${P1},Patient/${P3}&_count=50`, 'reader');
  expect(files.get('Observation')).toEqual(obs);
  expect(obs.length).toBe(9); // 4 + 4 heart rates and P1's temperature
});

test('patient= in a Group export takes members only; others are refused with an OperationOutcome', async () => {
  const status = await kickoffPost(ctx.request, `/fhir/Group/${GROUP}/$export`, [['patient', 'valueReference', { reference: `Patient/${P3}` }], ['_type', 'valueString', 'Patient,Observation']], as('reader'));
  const files = await exported(await waitForManifest(ctx.request, status, as('reader')), 'reader');
  expect(files.get('Patient')).toEqual(await searched(`/fhir/Patient?_id=${P3}`, 'reader'));
  expect(files.get('Observation')).toEqual(await searched(`/fhir/Observation?subject=Patient/${P3}&_count=50`, 'reader'));

  const r = await refused({ method: 'post', path: `/fhir/Group/${GROUP}/$export`, body: parameters([['patient', 'valueReference', { reference: `Patient/${P1}` }]]) });
  expect(r).toMatchObject({ status: 400, code: 'MSG_BULK_PATIENT' });
  expect(r.diagnostics).toContain(`Patient/${P1}`);
});

test('patient= cannot reach past the token: unknown and unreadable patients get the same refusal', async () => {
  const other = await refused({ method: 'post', path: '/fhir/Patient/$export', who: 'p1', body: parameters([['patient', 'valueReference', { reference: `Patient/${P2}` }]]) });
  const unknown = await refused({ method: 'post', path: '/fhir/Patient/$export', who: 'p1', body: parameters([['patient', 'valueReference', { reference: `Patient/none-${tag}` }]]) });
  expect(other).toMatchObject({ status: 400, code: 'MSG_BULK_PATIENT' });
  expect(unknown).toMatchObject({ status: 400, code: 'MSG_BULK_PATIENT' });
  expect(other.diagnostics.replace(P2, 'X')).toBe(unknown.diagnostics.replace(`none-${tag}`, 'X'));

  const own = await kickoffPost(ctx.request, '/fhir/Patient/$export', [['patient', 'valueReference', { reference: `Patient/${P1}` }], ['_type', 'valueString', 'Observation']], as('p1'));
  const files = await exported(await waitForManifest(ctx.request, own, as('p1')), 'p1');
  expect(files.get('Observation')).toEqual(await searched('/fhir/Observation?_count=50', 'p1'));
});

test('_elements keeps the named and the mandatory elements, tagged SUBSETTED, exactly as search shapes them', async () => {
  const status = await kickoff(ctx.request, `/fhir/Patient/$export?_type=Patient,Observation&_elements=Observation.subject,effective&_elements=Patient.birthDate`, as('reader'));
  const m = await waitForManifest(ctx.request, status, as('reader'));
  const files = await exported(m, 'reader');
  expect(files.get('Observation')).toEqual(await searched('/fhir/Observation?_elements=subject,effective&_count=50', 'reader'));
  expect(files.get('Patient')).toEqual(await searched('/fhir/Patient?_elements=birthDate,effective&_count=50', 'reader'));
  for (const line of [...files.get('Observation')!, ...files.get('Patient')!]) {
    const r = JSON.parse(line) as Resource & { meta: Meta };
    expect(r.meta.tag).toContainEqual({ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED' });
    expect(Object.keys(r).filter((k) => !['resourceType', 'id', 'meta'].includes(k)).sort()).toEqual(
      r.resourceType === 'Observation' ? ['code', 'effectiveDateTime', 'status', 'subject'] : ['birthDate'],
    );
    judge.add(`elements:${++judged}:${r.resourceType}/${r.id}`, line);
  }
  // Via POST too, with the same result.
  const posted = await kickoffPost(ctx.request, '/fhir/Patient/$export', [['_type', 'valueString', 'Patient,Observation'], ['_elements', 'valueString', 'Observation.subject,effective,Patient.birthDate']], as('reader'));
  expect(await exported(await waitForManifest(ctx.request, posted, as('reader')), 'reader')).toEqual(files);
});

test('what the IG lets a server refuse is refused with an OperationOutcome naming it', async () => {
  const get = (q: string, p = '/fhir/Patient/$export') => refused({ method: 'get', path: `${p}?${q}` });
  const post = (body: unknown, p = '/fhir/Patient/$export', type?: string) => refused({ method: 'post', path: p, body, type });
  // `patient` is for POST only, and not for a system-level export.
  expect(await get(`patient=Patient/${P1}`)).toMatchObject({ status: 400, issue: 'not-supported', code: 'MSG_PARAM_UNKNOWN' });
  expect(await post(parameters([['patient', 'valueReference', { reference: `Patient/${P1}` }]]), '/fhir/$export')).toMatchObject({ status: 400, code: 'MSG_BULK_PATIENT' });
  expect(await post(parameters([['patient', 'valueReference', { reference: `Device/kd1-${tag}` }]]))).toMatchObject({ status: 400, code: 'MSG_BULK_PATIENT' });
  // `_until` is not in STU 2; this server keeps no Provenance for includeAssociatedData.
  const until = await get('_until=2030-01-01T00:00:00Z');
  expect(until).toMatchObject({ status: 400, issue: 'not-supported', code: 'MSG_PARAM_UNKNOWN' });
  expect(until.diagnostics).toContain('STU 2');
  expect(await post(parameters([['_until', 'valueInstant', '2030-01-01T00:00:00Z']]))).toMatchObject({ status: 400, issue: 'not-supported' });
  const assoc = await get('includeAssociatedData=LatestProvenanceResources');
  expect(assoc).toMatchObject({ status: 400, issue: 'not-supported' });
  expect(assoc.diagnostics).toContain('Provenance');
  // _elements: root elements only, of types in the export.
  expect(await get('_elements=Observation.value.unit')).toMatchObject({ status: 400, code: 'MSG_PARAM_INVALID' });
  expect(await get('_type=Patient&_elements=Observation.status')).toMatchObject({ status: 400, code: 'MSG_PARAM_INVALID' });
  // _typeFilter: result parameters are not search criteria.
  expect((await get(`_typeFilter=${encodeURIComponent('Observation?_sort=date')}`)).status).toBe(400);
  // The POST body: a Parameters resource with the IG's value types, parameters in the body only.
  expect(await post({ resourceType: 'Patient' })).toMatchObject({ status: 400, code: 'MSG_BULK_PARAMETERS' });
  expect(await post(parameters([['_since', 'valueString', '2024-01-01T00:00:00Z']]))).toMatchObject({ status: 400, code: 'MSG_BULK_PARAMETERS' });
  expect(await post(parameters([['_since', 'valueInstant', '2024-01-01']]))).toMatchObject({ status: 400, code: 'MSG_BULK_SINCE' });
  expect(await post(parameters([['_type', 'valueString', 'Observation']]), '/fhir/Patient/$export?_type=Patient')).toMatchObject({ status: 400, code: 'MSG_BULK_PARAMETERS' });
  expect(await post(parameters([['bogus', 'valueString', 'x']]))).toMatchObject({ status: 400, code: 'MSG_PARAM_UNKNOWN' });
  expect(await post('_type=Observation', '/fhir/Patient/$export', 'application/x-www-form-urlencoded')).toMatchObject({ status: 415 });
  expect(await post('{"resourceType":"Parameters",', '/fhir/Patient/$export')).toMatchObject({ status: 400 });
});

test('every exported subset and every refusal is valid R4 to a strict parser and validator', async () => {
  const verdict = await judge.judge();
  expect([...verdict.keys()].filter((l) => l.startsWith('elements:')).length).toBeGreaterThan(10);
  expect([...verdict.keys()].filter((l) => l.startsWith('refusal:')).length).toBeGreaterThan(10);
  const errors = Object.fromEntries([...verdict].map(([l, issues]) => [l, errorsOf(issues)]).filter(([, e]) => e.length > 0));
  expect(errors).toEqual({});
}, 600_000);
