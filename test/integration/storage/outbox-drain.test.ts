import { anonymousPrincipal } from '../../../src/auth/types';
import type { CommittedEvent } from '../../../src/storage';
import { createTestContext, FHIR_JSON, heartRate, type TestContext } from '../../support/context';

/**
 * One drain at a time per process: drainNow beside the running outbox worker never runs a batch
 * twice or two consumers' calls at once; a drain requested during one is served by exactly one
 * more pass; and what a consumer commits while handling a batch is handed on in the same drain.
 */
describe('outbox drains', () => {
  let ctx: TestContext;
  let inFlight = 0;
  let maxInFlight = 0;
  const seen: string[] = [];
  const derivedFor = new Map<string, string>();

  beforeAll(async () => {
    ctx = await createTestContext({ env: { NEWS2_ENABLED: 'false', ALERTING_ENABLED: 'false' } });
    ctx.vigil.outbox.addConsumer(async (events: CommittedEvent[]) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        for (const ev of events) {
          seen.push(ev.historyId);
          // A derived write made while handling the batch (as alerting writes its Flags).
          if (ev.type === 'Observation' && ev.resource?.meta?.tag?.some((t) => t.code === 'derive')) {
            const r = await ctx.vigil.store.create('Basic', { resourceType: 'Basic', code: { text: `derived from ${ev.id}` } }, { principal: anonymousPrincipal, internal: true });
            derivedFor.set(ev.id, `Basic/${r.resource!.id}/1`);
          }
        }
        await new Promise((r) => setImmediate(r));
      } finally {
        inFlight--;
      }
    });
  });
  afterAll(async () => {
    await ctx.close();
  });

  async function postObservation(tag?: string): Promise<string> {
    const body = { ...heartRate(`drain-${Math.random().toString(36).slice(2)}`, 70, new Date().toISOString()), ...(tag ? { meta: { tag: [{ system: 'urn:test', code: tag }] } } : {}) };
    const res = await ctx.request.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(JSON.stringify(body));
    expect(res.status).toBe(201);
    return JSON.parse(res.text).id as string;
  }

  it('drainNow beside the running worker: each version handed on once, one consumer call at a time, and what was committed before the call is done when it returns', async () => {
    for (let round = 0; round < 5; round++) {
      const ids = await Promise.all([0, 1, 2, 3].map(() => postObservation()));
      await Promise.all([ctx.vigil.outbox.drainNow(), ctx.vigil.outbox.drainNow(), ctx.vigil.outbox.drainNow()]);
      for (const id of ids) expect(seen).toContain(`Observation/${id}/1`);
    }
    expect(maxInFlight).toBe(1);
    expect(seen.length).toBe(new Set(seen).size);
  });

  it('a version a consumer commits while handling a batch is handed on in the same drain', async () => {
    const id = await postObservation('derive');
    await ctx.vigil.outbox.drainNow();
    const derived = derivedFor.get(id);
    expect(derived).toBeDefined();
    expect(seen).toContain(derived);
  });
});
