import type { Subscription } from 'fhir/r4';
import { createTestContext, FHIR_JSON, type TestContext } from '../../support/context';
import { outboxIdle } from '../../support/outbox-idle';
import { ABNORMAL, topicSubscription } from './fixtures';
import { typeOf, WebhookReceiver } from './receiver';

/**
 * The server's own status write (requested -> active after the handshake) races a client's PUT or
 * DELETE of the same Subscription sent right after the create, or right as the handshake arrives
 * (when the server is about to write). The client's write always wins: never a 409, never a change
 * undone, never a deleted Subscription brought back.
 */
const ROUNDS = Number(process.env.RACE_ROUNDS ?? 12);

describe('Subscription activation racing client writes', () => {
  let ctx: TestContext;
  let hook: WebhookReceiver;

  beforeAll(async () => {
    ctx = await createTestContext({ listen: true, env: { SUBSCRIPTION_POLL_MS: '50', NEWS2_ENABLED: 'false', ALERTING_ENABLED: 'false' } });
    hook = await new WebhookReceiver().start();
  });
  afterAll(async () => {
    await hook.close();
    await ctx.close();
  });

  async function create(round: number): Promise<Subscription> {
    const sub = topicSubscription(hook.url, ABNORMAL, [`Observation?patient=Patient/race-${round}-${Date.now()}`]);
    const res = await ctx.request.post('/fhir/Subscription').set('Content-Type', FHIR_JSON).send(JSON.stringify(sub));
    expect(res.status).toBe(201);
    return JSON.parse(res.text) as Subscription;
  }

  /** Odd rounds: wait until the handshake reaches the endpoint, the moment the server goes on to write `active`. */
  async function atHandshake(round: number, id: string): Promise<void> {
    if (round % 2 === 1) await hook.waitFor((rs) => rs.some((r) => typeOf(r) === 'handshake' && r.headers['x-vigil-subscription'] === id));
  }

  async function read(id: string): Promise<{ status: number; sub?: Subscription }> {
    const res = await ctx.request.get(`/fhir/Subscription/${id}`);
    return { status: res.status, sub: res.status === 200 ? (JSON.parse(res.text) as Subscription) : undefined };
  }

  /** Until the newest delivery lease link of `id` is released: no delivery run (nor its status write) is in flight. */
  async function deliveryIdle(id: string): Promise<void> {
    const leases = ctx.db.collection<{ name: string; n: number; released?: boolean }>('sub_leases');
    const deadline = Date.now() + 20_000;
    for (;;) {
      const [top] = await leases.find({ name: id }).sort({ n: -1 }).limit(1).toArray();
      if (!top || top.released) return;
      if (Date.now() > deadline) throw new Error(`delivery of Subscription/${id} never went idle`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  it('a PUT right after create answers 200 and its change survives the activation', async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const created = await create(round);
      await atHandshake(round, created.id!);
      const reason = `changed in round ${round}`;
      const put = await ctx.request.put(`/fhir/Subscription/${created.id}`).set('Content-Type', FHIR_JSON).send(JSON.stringify({ ...created, reason }));
      expect({ round, status: put.status, body: put.status === 200 ? '' : put.text }).toEqual({ round, status: 200, body: '' });
      // Same channel: the handshake (of the created or the updated version) activates it, keeping the client's reason.
      const deadline = Date.now() + 20_000;
      let now = await read(created.id!);
      while (now.sub?.status !== 'active' && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 25));
        now = await read(created.id!);
      }
      expect({ status: now.sub?.status, reason: now.sub?.reason }).toEqual({ status: 'active', reason });
    }
  });

  it('a DELETE right after create answers 204 and the Subscription stays deleted', async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const created = await create(round);
      await atHandshake(round, created.id!);
      const del = await ctx.request.delete(`/fhir/Subscription/${created.id}`);
      expect({ round, status: del.status, body: del.status === 204 ? '' : del.text }).toEqual({ round, status: 204, body: '' });
      await outboxIdle(ctx.vigil);
      await deliveryIdle(created.id!);
      await outboxIdle(ctx.vigil);
      expect((await read(created.id!)).status).toBe(410);
    }
  });
});
