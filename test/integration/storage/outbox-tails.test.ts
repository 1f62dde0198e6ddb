import type { CommittedEvent } from '../../../src/storage';
import { createTestContext, FHIR_JSON, heartRate, type TestContext } from '../../support/context';

/**
 * A batch's finishers (storage's search entries run there) and its intent delete run behind the
 * next batches' consumers: a finisher still busy holds back no later batch, the intents of its
 * batch stay until it is done (so a crash offers them again), and a finisher that fails has its
 * batch offered again to every consumer.
 */
describe('outbox tails', () => {
  let ctx: TestContext;
  const seen: string[] = [];
  const finished: string[] = [];
  let hold: Promise<void> | undefined;
  let failNext = false;

  beforeAll(async () => {
    ctx = await createTestContext({ env: { NEWS2_ENABLED: 'false', ALERTING_ENABLED: 'false' } });
    ctx.vigil.outbox.addConsumer(async (events: CommittedEvent[]) => {
      for (const ev of events) if (ev.type === 'Observation') seen.push(ev.historyId);
    });
    ctx.vigil.outbox.addConsumer(async (events: CommittedEvent[]) => {
      const mine = events.filter((e) => e.type === 'Observation').map((e) => e.historyId);
      if (mine.length === 0) return;
      await hold;
      if (failNext) {
        failNext = false;
        throw new Error('finisher refused this batch (test)');
      }
      finished.push(...mine);
    }, 'last');
  });
  afterAll(async () => {
    await ctx.close();
  });

  async function post(): Promise<string> {
    const body = heartRate(`tails-${Math.random().toString(36).slice(2)}`, 70, new Date().toISOString());
    const res = await ctx.request.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(JSON.stringify(body));
    expect(res.status).toBe(201);
    return `Observation/${JSON.parse(res.text).id as string}/1`;
  }

  async function until(what: string, f: () => boolean | Promise<boolean>): Promise<void> {
    const end = Date.now() + 20_000;
    while (!(await f())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('a finisher still busy holds back no later batch, and its intents stay until it is done', async () => {
    let release!: () => void;
    hold = new Promise<void>((r) => (release = r));
    const a = await post();
    await until('A consumed', () => seen.includes(a));
    const b = await post();
    await until('B consumed while A is still being finished', () => seen.includes(b));
    expect(finished).not.toContain(a);
    expect([...(await ctx.vigil.outbox.openIntents([a, b]))].sort()).toEqual([a, b].sort());
    release();
    hold = undefined;
    await ctx.vigil.outbox.drainNow();
    expect(finished.indexOf(a)).toBeGreaterThanOrEqual(0);
    expect(finished.indexOf(b)).toBeGreaterThan(finished.indexOf(a));
    expect((await ctx.vigil.outbox.openIntents([a, b])).size).toBe(0);
  });

  it('a finisher that fails has its batch offered again, to every consumer', async () => {
    failNext = true;
    const c = await post();
    await until('C finished after the failure', () => finished.includes(c));
    expect(seen.filter((h) => h === c).length).toBeGreaterThanOrEqual(2);
    expect(finished.filter((h) => h === c).length).toBe(1);
    await until('C intent gone', async () => (await ctx.vigil.outbox.openIntents([c])).size === 0);
  });
});
