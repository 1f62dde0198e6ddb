import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Bundle, OperationOutcome } from 'fhir/r4';
import { createTestContext, FHIR_JSON, heartRate, patient, type TestContext } from '../../support/context';
import { basic, VITALS } from './helpers';

/**
 * Auth through the real FHIR API: every path must apply the token's policy, and data of another
 * patient must look exactly like data that does not exist.
 */
const secret = (name: string) => `${name}-${randomBytes(12).toString('hex')}`;
const S = { admin: secret('admin'), gw: secret('gw'), vitals: secret('vitals'), obs: secret('obs'), auditor: secret('auditor'), dev: secret('dev'), subSys: secret('subsys'), subP1: secret('subp1') };

let ctx: TestContext;
const tokens: Record<string, string> = {};

async function token(id: string, pass: string, scope: string): Promise<string> {
  const r = await ctx.request.post('/auth/token').type('form').set('Authorization', basic(id, pass)).send({ grant_type: 'client_credentials', scope });
  if (r.status !== 200) throw new Error(`token for ${id}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.access_token as string;
}

const as = (who: string) => ({ Authorization: `Bearer ${tokens[who]}`, Accept: FHIR_JSON });

function ids(b: Bundle, mode = 'match'): string[] {
  return (b.entry ?? [])
    .filter((e) => (e.search?.mode ?? 'match') === mode)
    .map((e) => `${e.resource?.resourceType}/${e.resource?.id}`)
    .sort();
}

function issue(body: OperationOutcome) {
  return body.issue[0];
}

beforeAll(async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-e2e-auth-'));
  const file = path.join(dir, 'clients.json');
  writeFileSync(
    file,
    JSON.stringify([
      { client_id: 'admin', name: 'Seeder', scope: 'system/*.cruds', client_secret: S.admin },
      { client_id: 'gw-p1', name: 'Gateway of p1', scope: 'patient/Observation.cruds patient/Patient.rs patient/Device.rs', client_secret: S.gw, patient: 'p1' },
      { client_id: 'vitals-p1', name: 'Vitals viewer of p1', scope: `patient/Observation.rs?${VITALS}`, client_secret: S.vitals, patient: 'p1' },
      { client_id: 'obs-only', name: 'Observation reader', scope: 'system/Observation.rs', client_secret: S.obs },
      { client_id: 'auditor', name: 'Auditor', scope: 'system/AuditEvent.rs', client_secret: S.auditor },
      { client_id: 'dev-writer', name: 'Device registrar', scope: 'system/Device.c', client_secret: S.dev },
      { client_id: 'sub-sys', name: 'Alerting without Observation access', scope: 'system/Subscription.cruds system/Device.rs', client_secret: S.subSys },
      { client_id: 'sub-p1', name: 'Patient app', scope: 'patient/Subscription.cruds patient/Observation.rs', client_secret: S.subP1, patient: 'p1' },
    ]),
  );
  // The compartment checks below list the fixtures only: no derived NEWS2 Observations.
  ctx = await createTestContext({ auth: true, env: { SMART_CLIENTS_FILE: file, NEWS2_ENABLED: 'false' } });
  tokens.admin = await token('admin', S.admin, 'system/*.cruds');
  tokens.gw = await token('gw-p1', S.gw, 'patient/Observation.cruds patient/Patient.rs patient/Device.rs');
  tokens.vitals = await token('vitals-p1', S.vitals, 'patient/Observation.rs');
  tokens.obs = await token('obs-only', S.obs, 'system/Observation.rs');
  tokens.auditor = await token('auditor', S.auditor, 'system/AuditEvent.rs');
  tokens.dev = await token('dev-writer', S.dev, 'system/Device.c');
  tokens.subSys = await token('sub-sys', S.subSys, 'system/Subscription.cruds system/Device.rs');
  tokens.subP1 = await token('sub-p1', S.subP1, 'patient/Subscription.cruds patient/Observation.rs');

  const put = async (res: Record<string, unknown>) => {
    const r = await ctx.request.put(`/fhir/${res.resourceType}/${res.id}`).set(as('admin')).type(FHIR_JSON).send(res);
    if (r.status >= 300) throw new Error(`seed ${res.resourceType}/${res.id}: ${r.status} ${JSON.stringify(r.body)}`);
  };
  await put({ ...patient('One', ['Pat'], 'MRN-1'), id: 'p1' });
  await put({ ...patient('Two', ['Pat'], 'MRN-2'), id: 'p2' });
  await put({ resourceType: 'Device', id: 'd1', status: 'active', patient: { reference: 'Patient/p1' } });
  await put({ resourceType: 'Device', id: 'd2', status: 'active', patient: { reference: 'Patient/p2' } });
  await put({ ...heartRate('p1', 70), id: 'o1' });
  await put({
    ...heartRate('p1', 5.4),
    id: 'o2',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }],
  });
  await put({ ...heartRate('p2', 90), id: 'o3', device: { reference: 'Device/d2' } });
  // Subject p2, but performed by p1 (self-reported by p1 about p2): in p1's compartment too.
  await put({ ...heartRate('p2', 91), id: 'o4', performer: [{ reference: 'Patient/p1' }] });
});

afterAll(async () => {
  await ctx?.close();
});

describe('401 without a valid token', () => {
  it.each([
    ['GET', '/fhir/Patient/p1'],
    ['GET', '/fhir/Observation'],
    ['GET', '/fhir/Observation/_history'],
    ['POST', '/fhir/Observation'],
    ['POST', '/fhir'],
  ])('%s %s', async (method, url) => {
    const r = await ctx.request[method === 'GET' ? 'get' : 'post'](url).set('Accept', FHIR_JSON).type(FHIR_JSON).send(method === 'POST' ? heartRate('p1', 1) : undefined);
    expect(r.status).toBe(401);
    // No credentials: a bare challenge (RFC 6750 section 3.1), no error code.
    expect(r.headers['www-authenticate']).toBe('Bearer');
    expect(issue(r.body).code).toBe('login');
  });

  it('refuses a token signed by someone else', async () => {
    const [h, p] = tokens.gw.split('.');
    const r = await ctx.request.get('/fhir/Patient/p1').set('Authorization', `Bearer ${h}.${p}.${'A'.repeat(342)}`);
    expect(r.status).toBe(401);
    expect(issue(r.body).diagnostics).toMatch(/invalid signature/);
  });

  it('keeps discovery public', async () => {
    const r = await ctx.request.get('/fhir/.well-known/smart-configuration');
    expect(r.status).toBe(200);
    expect(r.body.token_endpoint).toBe(`${new URL(ctx.baseUrl).origin}/auth/token`);
  });
});

describe('403 for a valid token without the needed scope', () => {
  it.each([
    ['obs', 'get', '/fhir/Patient', /does not permit search on Patient/],
    ['obs', 'get', '/fhir/Patient/p1', /does not permit read on Patient/],
    ['obs', 'delete', '/fhir/Observation/o1', /does not permit delete on Observation/],
    ['gw', 'get', '/fhir/AuditEvent', /does not permit search on AuditEvent/],
    ['dev', 'get', '/fhir/Device/d1', /does not permit read on Device/],
  ] as const)('%s %s %s', async (who, method, url, reason) => {
    const r = await ctx.request[method](url).set(as(who));
    expect(r.status).toBe(403);
    expect(issue(r.body).code).toBe('forbidden');
    expect(issue(r.body).diagnostics).toMatch(reason);
  });

  it('refuses writes to a type granted only for reading', async () => {
    const r = await ctx.request.post('/fhir/Observation').set(as('obs')).type(FHIR_JSON).send(heartRate('p1', 60));
    expect(r.status).toBe(403);
    expect(issue(r.body).diagnostics).toMatch(/does not permit create on Observation/);
  });
});

describe('patient/ scopes never reach another patient', () => {
  it('reads own resources, and another patient’s look like missing ones', async () => {
    for (const url of ['/fhir/Patient/p1', '/fhir/Observation/o1', '/fhir/Observation/o4', '/fhir/Device/d1']) {
      expect([url, (await ctx.request.get(url).set(as('gw'))).status]).toEqual([url, 200]);
    }
    const missing = await ctx.request.get('/fhir/Observation/none').set(as('gw'));
    for (const url of ['/fhir/Patient/p2', '/fhir/Observation/o3', '/fhir/Device/d2']) {
      const r = await ctx.request.get(url).set(as('gw'));
      expect([url, r.status]).toEqual([url, 404]);
      expect(issue(r.body).code).toBe(issue(missing.body).code);
    }
  });

  it('vread of another patient’s resource is 404', async () => {
    expect((await ctx.request.get('/fhir/Observation/o3/_history/1').set(as('gw'))).status).toBe(404);
    expect((await ctx.request.get('/fhir/Observation/o1/_history/1').set(as('gw'))).status).toBe(200);
  });

  it('instance history of another patient’s resource shows no version', async () => {
    const h = await ctx.request.get('/fhir/Observation/o3/_history').set(as('gw'));
    expect(h.body.entry ?? []).toEqual([]);
  });

  it('instance history of another patient’s resource is 404, like a missing one', async () => {
    const h = await ctx.request.get('/fhir/Observation/o3/_history').set(as('gw'));
    const missing = await ctx.request.get('/fhir/Observation/none/_history').set(as('gw'));
    expect(missing.status).toBe(404);
    expect(h.status).toBe(404);
  });

  it('search returns only the compartment, whatever the parameters', async () => {
    const all = await ctx.request.get('/fhir/Observation').set(as('gw'));
    expect(ids(all.body)).toEqual(['Observation/o1', 'Observation/o2', 'Observation/o4']);
    const other = await ctx.request.get('/fhir/Observation?subject=Patient/p2').set(as('gw'));
    expect(ids(other.body)).toEqual(['Observation/o4']);
    const byId = await ctx.request.get('/fhir/Observation?_id=o3').set(as('gw'));
    expect(ids(byId.body)).toEqual([]);
    const patients = await ctx.request.get('/fhir/Patient').set(as('gw'));
    expect(ids(patients.body)).toEqual(['Patient/p1']);
    const viaPost = await ctx.request.post('/fhir/Observation/_search').set(as('gw')).type('form').send('_id=o3');
    expect(ids(viaPost.body)).toEqual([]);
  });

  it('_include and _revinclude never add another patient’s resources', async () => {
    const inc = await ctx.request.get('/fhir/Observation?_include=Observation:subject').set(as('gw'));
    expect(ids(inc.body, 'include')).toEqual(['Patient/p1']);
    const rev = await ctx.request.get('/fhir/Patient?_revinclude=Observation:subject&_revinclude=Device:patient').set(as('gw'));
    expect(ids(rev.body)).toEqual(['Patient/p1']);
    expect(ids(rev.body, 'include')).toEqual(['Device/d1', 'Observation/o1', 'Observation/o2']);
  });

  it('chained parameters do not probe another patient', async () => {
    const r = await ctx.request.get('/fhir/Observation?subject:Patient.family=Two').set(as('gw'));
    expect(r.status).toBe(200);
    // o4 is p1's (performer) and its subject p2 matches the chain, but p2 itself is out of reach.
    expect(ids(r.body)).toEqual([]);
  });

  it('type and system history show only the compartment', async () => {
    const r = await ctx.request.get('/fhir/Observation/_history').set(as('gw'));
    expect(r.status).toBe(200);
    const seen = new Set((r.body.entry ?? []).map((e: { fullUrl?: string; resource?: { id?: string } }) => e.resource?.id));
    expect(seen.has('o3')).toBe(false);
    expect(seen.has('o1')).toBe(true);
  });

  it('cannot write into another patient’s compartment', async () => {
    const create = await ctx.request.post('/fhir/Observation').set(as('gw')).type(FHIR_JSON).send(heartRate('p2', 88));
    expect(create.status).toBe(403);
    expect(issue(create.body).code).toBe('forbidden');
    const own = await ctx.request.post('/fhir/Observation').set(as('gw')).type(FHIR_JSON).send(heartRate('p1', 66));
    expect(own.status).toBe(201);
    const update = await ctx.request.put('/fhir/Observation/o3').set(as('gw')).type(FHIR_JSON).send({ ...heartRate('p2', 1), id: 'o3' });
    expect([403, 404]).toContain(update.status);
    // Deleting what is out of reach answers like deleting what does not exist, and deletes nothing.
    const del = await ctx.request.delete('/fhir/Observation/o3').set(as('gw'));
    const delMissing = await ctx.request.delete('/fhir/Observation/none').set(as('gw'));
    expect(del.status).toBe(delMissing.status);
    const takeOver = await ctx.request.put('/fhir/Observation/o3').set(as('gw')).type(FHIR_JSON).send({ ...heartRate('p1', 1), id: 'o3' });
    // Taking over an id used by another patient's resource is refused (the id's existence shows; its content does not).
    expect(takeOver.status).toBe(403);
    expect(JSON.stringify(takeOver.body)).not.toContain('p2');
    const moveOut = await ctx.request.put('/fhir/Observation/o1').set(as('gw')).type(FHIR_JSON).send({ ...heartRate('p2', 70), id: 'o1' });
    expect(moveOut.status).toBe(403);
    // o3 is untouched.
    const o3 = await ctx.request.get('/fhir/Observation/o3').set(as('admin'));
    expect(o3.body.valueQuantity.value).toBe(90);
  });

  it('applies the policy to every Bundle entry', async () => {
    const batch = await ctx.request
      .post('/fhir')
      .set(as('gw'))
      .type(FHIR_JSON)
      .send({
        resourceType: 'Bundle',
        type: 'batch',
        entry: [
          { request: { method: 'GET', url: 'Observation/o1' } },
          { request: { method: 'GET', url: 'Observation/o3' } },
          { request: { method: 'GET', url: 'Observation?_id=o3' } },
          { request: { method: 'GET', url: 'Patient/p2' } },
          { request: { method: 'POST', url: 'Observation' }, resource: heartRate('p2', 77) },
        ],
      });
    expect(batch.status).toBe(200);
    const statuses = batch.body.entry.map((e: { response: { status: string } }) => e.response.status.slice(0, 3));
    expect(statuses).toEqual(['200', '404', '200', '404', '403']);
    expect(batch.body.entry[2].resource.total ?? batch.body.entry[2].resource.entry?.length ?? 0).toBe(0);

    const tx = await ctx.request
      .post('/fhir')
      .set(as('gw'))
      .type(FHIR_JSON)
      .send({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { fullUrl: 'urn:uuid:1b1f2a0e-0000-4000-8000-000000000001', request: { method: 'POST', url: 'Observation' }, resource: heartRate('p1', 60) },
          { fullUrl: 'urn:uuid:1b1f2a0e-0000-4000-8000-000000000002', request: { method: 'POST', url: 'Observation' }, resource: heartRate('p2', 61) },
        ],
      });
    expect(tx.status).toBe(403);
    const after = await ctx.request.get('/fhir/Observation?value-quantity=60').set(as('admin'));
    expect(ids(after.body)).toEqual([]);
  });
});

describe('other paths', () => {
  it('system history and $lastn stay inside the compartment', async () => {
    const h = await ctx.request.get('/fhir/_history').set(as('gw'));
    expect(h.status).toBe(200);
    const refs = (h.body.entry ?? []).map((e: { resource?: { resourceType: string; id: string } }) => e.resource && `${e.resource.resourceType}/${e.resource.id}`);
    expect(refs).not.toContain('Observation/o3');
    expect(refs).not.toContain('Patient/p2');
    expect(refs).not.toContain('Device/d2');
    const last = await ctx.request.get('/fhir/Observation/$lastn?code=http://loinc.org|8867-4').set(as('gw'));
    expect(last.status).toBe(200);
    expect(ids(last.body)).not.toContain('Observation/o3');
  });

  it('conditional create does not reveal another patient’s resource', async () => {
    const r = await ctx.request.post('/fhir/Observation').set(as('gw')).set('If-None-Exist', '_id=o3').type(FHIR_JSON).send(heartRate('p1', 67));
    expect(r.status).toBe(201);
  });

  const subscription = (criteria: string) => ({
    resourceType: 'Subscription',
    status: 'requested',
    reason: 'alerts',
    criteria,
    channel: { type: 'rest-hook', endpoint: 'https://example.org/hook', payload: 'application/fhir+json' },
  });

  it('subscription creation needs Subscription scope', async () => {
    const r = await ctx.request.post('/fhir/Subscription').set(as('gw')).type(FHIR_JSON).send(subscription('Observation?subject=Patient/p2'));
    expect(r.status).toBe(403);
    expect(issue(r.body).code).toBe('forbidden');
  });

  it('subscription creation needs search access to what the criteria watch', async () => {
    const r = await ctx.request.post('/fhir/Subscription').set(as('subSys')).type(FHIR_JSON).send(subscription('Observation?code=http://loinc.org|8867-4'));
    expect(r.status).toBe(403);
    expect(issue(r.body).diagnostics).toMatch(/search on Observation/);
  });

  it('patient/ tokens cannot create Subscriptions (outside the patient compartment)', async () => {
    const r = await ctx.request.post('/fhir/Subscription').set(as('subP1')).type(FHIR_JSON).send(subscription('Observation?code=http://loinc.org|8867-4'));
    expect(r.status).toBe(403);
    expect(issue(r.body).code).toBe('forbidden');
  });

  it('the CapabilityStatement carries the SMART security service (endpoints are at .well-known/smart-configuration)', async () => {
    const r = await ctx.request.get('/fhir/metadata').set(as('obs'));
    expect(r.status).toBe(200);
    const sec = r.body.rest[0].security;
    expect(sec.service[0].coding[0].code).toBe('SMART-on-FHIR');
    // oauth-uris (R4 requires its authorize URL, which App Launch provides).
    const uris = sec.extension.find((e: { url: string }) => e.url.endsWith('/oauth-uris'));
    expect(uris.extension.map((e: { url: string }) => e.url)).toEqual(['token', 'authorize']);
  });

  // Clients discover the server (and how to authenticate) from /metadata before they hold a token.
  it('metadata answers without a token', async () => {
    const r = await ctx.request.get('/fhir/metadata').set('Accept', FHIR_JSON);
    expect(r.status).toBe(200);
  });
});

describe('v2 restrictions', () => {
  it('limit search and read to the restricted category', async () => {
    const r = await ctx.request.get('/fhir/Observation').set(as('vitals'));
    expect(ids(r.body)).toEqual(expect.arrayContaining(['Observation/o1', 'Observation/o4']));
    expect(ids(r.body)).not.toContain('Observation/o2');
    expect((await ctx.request.get('/fhir/Observation/o2').set(as('vitals'))).status).toBe(404);
    expect((await ctx.request.get('/fhir/Observation/o1').set(as('vitals'))).status).toBe(200);
  });
});

describe('audit trail', () => {
  it('records accesses as AuditEvents readable only with AuditEvent scope, without resource bodies', async () => {
    await ctx.request.get('/fhir/Observation/o1').set(as('gw'));
    await ctx.vigil.audit.flush();
    const r = await ctx.request.get('/fhir/AuditEvent?_count=1000').set(as('auditor'));
    expect(r.status).toBe(200);
    const events = (r.body.entry ?? []).map((e: { resource: Record<string, unknown> }) => e.resource);
    type Ev = { action: string; subtype?: { code: string }[]; agent: { who: { identifier: { value: string } } }[]; entity?: { what?: { reference?: string } }[] };
    const byGw = (e: Ev) => e.agent[0].who.identifier.value === 'gw-p1' && e.entity?.some((x) => x.what?.reference === 'Observation/o1');
    const read = events.find((e: Ev) => byGw(e) && e.subtype?.[0].code === 'read');
    expect(read).toMatchObject({ action: 'R', outcome: '0' });
    // The refused attempt to move o1 to another patient is on record as a failure.
    expect(events.find((e: Ev) => byGw(e) && e.action === 'U')).toMatchObject({ outcome: '4', outcomeDesc: 'HTTP 403' });
    expect(read.entity.some((x: { what?: { reference?: string } }) => x.what?.reference === 'Patient/p1')).toBe(true);
    const text = JSON.stringify(events);
    expect(text).not.toContain('valueQuantity');
    expect(text).not.toContain('beats/minute');
    expect(text).not.toContain(tokens.gw.slice(-20));
  });

  it('names the patients a transaction touched on its AuditEvent', async () => {
    const tx = await ctx.request
      .post('/fhir')
      .set(as('gw'))
      .set('Content-Type', FHIR_JSON)
      .send(JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'GET', url: 'Observation/o1' } }] }));
    expect(tx.status).toBe(200);
    await ctx.vigil.audit.flush();
    const r = await ctx.request.get('/fhir/AuditEvent?_count=1000').set(as('auditor'));
    type Ev = { outcome: string; subtype?: { code: string }[]; entity?: { what?: { reference?: string } }[] };
    const events = (r.body.entry ?? []).map((e: { resource: Ev }) => e.resource) as Ev[];
    // The refused transaction of an earlier test is on record too (outcome 4); this one succeeded.
    const txEvent = events.find((e) => e.subtype?.[0].code === 'transaction' && e.outcome === '0');
    expect(txEvent?.entity?.some((x) => x.what?.reference === 'Patient/p1')).toBe(true);
  });
});
