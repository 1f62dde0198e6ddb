import WebSocket from 'ws';
import { FHIR_JSON, heartRate } from '../../support/context';
import { ABNORMAL, topicSubscription } from '../subscriptions/fixtures';
import { authorizeUrl, codeToken, rand, signIn, smartWorld, type SmartWorld } from './smart-helpers';

/**
 * Item 7: an app with a patient-context token subscribes to its own patient's alerts, and to
 * nothing else, through every path (REST, search, operations, websocket binds).
 */
let w: SmartWorld;
let mine: string; // a patient token of w.patients.mine
let doctor: string; // a Practitioner token with user/ scopes
let sys: string;

async function userToken(username: string, scope: string): Promise<string> {
  const a = authorizeUrl(w, { scope });
  const f = await signIn(w, a.url, { username });
  const t = await codeToken(w, f.redirect.searchParams.get('code') as string, a.verifier);
  if (t.status !== 200) throw new Error(JSON.stringify(t.body));
  return t.body.access_token as string;
}

beforeAll(async () => {
  w = await smartWorld();
  mine = await userToken(w.users.patient, 'patient/Subscription.cruds patient/Observation.rs');
  doctor = await userToken(w.users.practitioner, 'user/*.cruds');
  sys = await w.systemToken();
});
afterAll(async () => {
  await w?.close();
});

const as = (t: string) => ({ Authorization: `Bearer ${t}`, Accept: FHIR_JSON });
const r4 = (criteria: string, channel: Record<string, unknown> = { type: 'websocket', endpoint: undefined }) => ({ resourceType: 'Subscription', status: 'requested', reason: 'alerts', criteria, channel });
const post = (t: string, body: unknown) => w.ctx.request.post('/fhir/Subscription').set(as(t)).type(FHIR_JSON).send(JSON.stringify(body));

/** The server activates a new Subscription with a write of its own; client writes wait for it (else 409). */
const waitActive = async (id: string) => {
  for (let i = 0; i < 400; i++) {
    const r = await w.ctx.request.get(`/fhir/Subscription/${id}`).set(as(sys));
    if (r.body.status === 'active') return;
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error(`Subscription ${id} never became active`);
};
describe('patient-context Subscriptions', () => {
  it('creates, reads, updates, searches and deletes a Subscription pinned to its own patient', async () => {
    const c = await post(mine, r4(`Observation?patient=Patient/${w.patients.mine}&code=http://loinc.org|8867-4`));
    expect(c.status).toBe(201);
    const id = c.body.id as string;
    expect((await w.ctx.request.get(`/fhir/Subscription/${id}`).set(as(mine))).status).toBe(200);
    await waitActive(id);
    const current = (await w.ctx.request.get(`/fhir/Subscription/${id}`).set(as(mine))).body;
    const u = await w.ctx.request.put(`/fhir/Subscription/${id}`).set(as(mine)).type(FHIR_JSON).send(JSON.stringify({ ...current, reason: 'changed' }));
    expect(u.status).toBe(200);
    await waitActive(id);
    const s = await w.ctx.request.get('/fhir/Subscription').set(as(mine));
    expect(s.body.entry.map((e: { resource: { id: string } }) => e.resource.id)).toEqual([id]);
    expect((await w.ctx.request.delete(`/fhir/Subscription/${id}`).set(as(mine))).status).toBe(204);
  });

  it('accepts a topic subscription whose filter pins its patient, and R4 criteria pinned by subject=', async () => {
    const c = await post(mine, topicSubscription('', ABNORMAL, [`Observation?patient=Patient/${w.patients.mine}`], { type: 'websocket', endpoint: undefined }));
    expect(c.status).toBe(201);
    expect((await post(mine, r4(`Observation?subject=Patient/${w.patients.mine}`))).status).toBe(201);
  });

  it.each([
    ['an unpinned R4 criteria', () => r4('Observation?code=http://loinc.org|8867-4')],
    ['criteria pinned to another patient', () => r4(`Observation?patient=Patient/${w.patients.other}`)],
    ['criteria naming two patients', () => r4(`Observation?patient=${w.patients.mine},${w.patients.other}`)],
    ['a topic without filters', () => topicSubscription('', ABNORMAL, [], { type: 'websocket', endpoint: undefined })],
    ['a topic filter on another patient', () => topicSubscription('', ABNORMAL, [`Observation?patient=Patient/${w.patients.other}`], { type: 'websocket', endpoint: undefined })],
  ])('refuses %s at create with a clear OperationOutcome', async (_n, body) => {
    const r = await post(mine, body());
    expect(r.status).toBe(403);
    expect(r.body.resourceType).toBe('OperationOutcome');
    expect(r.body.issue[0]).toMatchObject({ code: 'forbidden', diagnostics: expect.stringMatching(`must pin patient=Patient/${w.patients.mine}`) });
  });

  it("cannot reach another patient's Subscription through read, search, update, delete or operations", async () => {
    const theirs = await post(sys, r4(`Observation?patient=Patient/${w.patients.other}`));
    expect(theirs.status).toBe(201);
    const id = theirs.body.id as string;
    expect((await w.ctx.request.get(`/fhir/Subscription/${id}`).set(as(mine))).status).toBe(404);
    const s = await w.ctx.request.get(`/fhir/Subscription?_id=${id}`).set(as(mine));
    expect(s.body.entry ?? []).toEqual([]);
    const moved = { ...theirs.body, criteria: `Observation?patient=Patient/${w.patients.mine}` };
    const u = await w.ctx.request.put(`/fhir/Subscription/${id}`).set(as(mine)).type(FHIR_JSON).send(JSON.stringify(moved));
    expect([403, 404]).toContain(u.status);
    // DELETE of what the token cannot see answers like a delete of nothing (204), and deletes nothing.
    expect((await w.ctx.request.delete(`/fhir/Subscription/${id}`).set(as(mine))).status).toBe(204);
    expect((await w.ctx.request.get(`/fhir/Subscription/${id}/$status`).set(as(mine))).status).toBe(404);
    expect((await w.ctx.request.get(`/fhir/Subscription/${id}/$get-ws-binding-token`).set(as(mine))).status).toBe(404);
    // Still there, unchanged.
    const still = await w.ctx.request.get(`/fhir/Subscription/${id}`).set(as(sys));
    expect(still.body.criteria).toBe(`Observation?patient=Patient/${w.patients.other}`);
  });

  it('moving an own Subscription to another patient is refused', async () => {
    const c = await post(mine, r4(`Observation?patient=Patient/${w.patients.mine}`));
    const u = await w.ctx.request
      .put(`/fhir/Subscription/${c.body.id}`)
      .set(as(mine))
      .type(FHIR_JSON)
      .send(JSON.stringify({ ...c.body, criteria: `Observation?patient=Patient/${w.patients.other}` }));
    expect(u.status).toBe(403);
  });

  it('a Practitioner with user/ scopes may subscribe without a pin', async () => {
    expect((await post(doctor, r4('Observation?code=http://loinc.org|8867-4'))).status).toBe(201);
  });
});

describe('R4 websocket bind <id> with the bearer token on the upgrade request', () => {
  const open = async (token?: string) => {
    const ws = new WebSocket(`${w.fhirBase.replace(/^http/, 'ws')}/websocket`, token ? { headers: { Authorization: `Bearer ${token}` } } : {});
    const msgs: string[] = [];
    ws.on('message', (d) => msgs.push(d.toString()));
    await new Promise((r) => ws.once('open', r));
    const until = async (pred: () => boolean) => {
      for (let i = 0; i < 400 && !pred(); i++) await new Promise((r) => setTimeout(r, 25));
      expect(pred()).toBe(true);
    };
    return { ws, msgs, until };
  };


  it('binds its own Subscription and gets a ping per event; refuses others, no token and bad tokens', async () => {
    const own = await post(mine, r4(`Observation?patient=Patient/${w.patients.mine}`));
    const theirs = await post(sys, r4(`Observation?patient=Patient/${w.patients.other}`));
    await waitActive(own.body.id);
    const s = await open(mine);
    s.ws.send(`bind ${own.body.id}`);
    await s.until(() => s.msgs.includes(`bound ${own.body.id}`));
    s.ws.send(`bind ${theirs.body.id}`);
    await s.until(() => s.msgs.some((m) => m.startsWith(`error no websocket Subscription ${theirs.body.id}`)));
    const obs = await w.ctx.request.post('/fhir/Observation').set(as(sys)).type(FHIR_JSON).send(JSON.stringify({ ...heartRate(w.patients.mine, 90), id: rand('o') }));
    expect(obs.status).toBe(201);
    await s.until(() => s.msgs.includes(`ping ${own.body.id}`));
    s.ws.close();

    const anon = await open();
    anon.ws.send(`bind ${own.body.id}`);
    await anon.until(() => anon.msgs.some((m) => m.startsWith('error unauthorized')));
    anon.ws.close();

    const bad = await open('not-a-token');
    bad.ws.send(`bind ${own.body.id}`);
    await bad.until(() => bad.msgs.some((m) => m.startsWith('error unauthorized')));
    bad.ws.close();
  });
});
