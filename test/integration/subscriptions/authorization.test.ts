import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Bundle, Observation, OperationOutcome, Subscription } from 'fhir/r4';
import { createTestContext, FHIR_JSON, heartRate, patient, type TestContext } from '../../support/context';
import { WebhookReceiver, typeOf } from './receiver';

/** A subscriber whose token allows one patient receives nothing about another. */
const ABNORMAL = 'http://vigil-fhir.org/fhir/SubscriptionTopic/abnormal-vital-sign';
const S = { admin: `admin-${randomBytes(12).toString('hex')}`, p1: `p1-${randomBytes(12).toString('hex')}`, reader: `reader-${randomBytes(12).toString('hex')}` };
const basic = (id: string, pass: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(pass)}`).toString('base64')}`;

describe('notifications respect the subscriber’s access policy', () => {
  let ctx: TestContext;
  let hook: WebhookReceiver;
  const tokens: Record<string, string> = {};
  const as = (who: string) => ({ Authorization: `Bearer ${tokens[who]}`, Accept: FHIR_JSON, 'Content-Type': FHIR_JSON });

  async function token(id: string, pass: string, scope: string): Promise<string> {
    const r = await ctx.request.post('/auth/token').type('form').set('Authorization', basic(id, pass)).send({ grant_type: 'client_credentials', scope });
    if (r.status !== 200) throw new Error(`token for ${id}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.access_token as string;
  }

  beforeAll(async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-sub-auth-'));
    const file = path.join(dir, 'clients.json');
    // Subscription is outside the Patient compartment, so a patient-scoped app needs a Subscription scope of its own.
    const p1Scope = 'patient/Observation.rs system/Subscription.cruds';
    writeFileSync(
      file,
      JSON.stringify([
        { client_id: 'admin', name: 'Seeder', scope: 'system/*.cruds', client_secret: S.admin },
        { client_id: 'app-p1', name: 'Monitoring app of p1', scope: p1Scope, client_secret: S.p1, patient: 'p1' },
        { client_id: 'reader', name: 'Observation reader', scope: 'system/Observation.rs', client_secret: S.reader },
      ]),
    );
    ctx = await createTestContext({ auth: true, listen: true, env: { SMART_CLIENTS_FILE: file, SUBSCRIPTION_POLL_MS: '50' } });
    hook = await new WebhookReceiver().start();
    tokens.admin = await token('admin', S.admin, 'system/*.cruds');
    tokens.p1 = await token('app-p1', S.p1, p1Scope);
    tokens.reader = await token('reader', S.reader, 'system/Observation.rs');
    for (const id of ['p1', 'p2']) {
      const r = await ctx.request.put(`/fhir/Patient/${id}`).set(as('admin')).send(JSON.stringify({ ...patient(id, ['X'], `MRN-${id}`), id }));
      expect(r.status).toBeLessThan(300);
    }
  });
  afterAll(async () => {
    await hook?.close();
    await ctx?.close();
  });

  it('delivers p1’s abnormal vitals and never p2’s, although the topic has no patient filter', async () => {
    const sub: Subscription = {
      resourceType: 'Subscription',
      status: 'requested',
      reason: 'all abnormal vitals I may see',
      criteria: ABNORMAL,
      channel: {
        type: 'rest-hook',
        endpoint: hook.url,
        payload: 'application/fhir+json',
        _payload: { extension: [{ url: 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content', valueCode: 'full-resource' }] },
      } as Subscription['channel'],
    };
    const created = await ctx.request.post('/fhir/Subscription').set(as('p1')).send(JSON.stringify(sub));
    expect(created.status).toBe(201);
    const id = (JSON.parse(created.text) as Subscription).id!;
    await hook.waitFor((r) => r.some((x) => typeOf(x) === 'handshake'));

    const post = async (o: Record<string, unknown>) => {
      const r = await ctx.request.post('/fhir/Observation').set(as('admin')).send(JSON.stringify(o));
      expect(r.status).toBe(201);
      return JSON.parse(r.text) as Observation;
    };
    const secret = await post(heartRate('p2', 170));
    const mine = await post(heartRate('p1', 171));
    await hook.waitFor(() => hook.events().length >= 1);
    // Give p2's event every chance to (wrongly) arrive after p1's: it was committed first.
    const all = hook.events();
    const ids = all.flatMap((r) => (r.bundle?.entry ?? []).slice(1).map((e) => e.resource?.id));
    expect(ids).toEqual([mine.id]);
    expect(JSON.stringify(all)).not.toContain(secret.id);

    // $events shows the same: one event, numbered 1.
    const ev = await ctx.request.get(`/fhir/Subscription/${id}/$events`).set(as('p1'));
    expect(ev.status).toBe(200);
    const b = JSON.parse(ev.text) as Bundle;
    expect(b.entry?.slice(1).map((e) => e.fullUrl)).toEqual([expect.stringContaining(`/Observation/${mine.id}`)]);
  });

  it('refuses criteria outside the subscriber’s scopes', async () => {
    const sub = { resourceType: 'Subscription', status: 'requested', reason: 'x', criteria: 'Patient?name=Two', channel: { type: 'rest-hook', endpoint: hook.url } };
    const r = await ctx.request.post('/fhir/Subscription').set(as('p1')).send(JSON.stringify(sub));
    expect(r.status).toBe(403);
    const oo = JSON.parse(r.text) as OperationOutcome;
    expect(oo.issue[0].code).toBe('forbidden');
  });

  it('operations on a Subscription need a token and a Subscription scope', async () => {
    const r = await ctx.request.get('/fhir/Subscription/nope/$status');
    expect(r.status).toBe(401);
    const adminSub = await ctx.request
      .post('/fhir/Subscription')
      .set(as('admin'))
      .send(JSON.stringify({ resourceType: 'Subscription', status: 'requested', reason: 'x', criteria: 'Observation?code=http://loinc.org|8867-4', channel: { type: 'websocket' } }));
    expect(adminSub.status).toBe(201);
    const id = (JSON.parse(adminSub.text) as Subscription).id!;
    for (const op of ['$events', '$status', '$get-ws-binding-token']) {
      const r2 = await ctx.request.get(`/fhir/Subscription/${id}/${op}`).set(as('reader'));
      expect(r2.status).toBe(403);
      expect((JSON.parse(r2.text) as OperationOutcome).issue[0].code).toBe('forbidden');
    }
    const missing = await ctx.request.get('/fhir/Subscription/does-not-exist/$events').set(as('admin'));
    expect(missing.status).toBe(404);
    expect((JSON.parse(missing.text) as OperationOutcome).issue[0].code).toBe('not-found');
    const badNumber = await ctx.request.get(`/fhir/Subscription/${id}/$events?eventsSinceNumber=abc`).set(as('admin'));
    expect(badNumber.status).toBe(400);
    expect((JSON.parse(badNumber.text) as OperationOutcome).issue[0].diagnostics).toContain('eventsSinceNumber');
  });
});
