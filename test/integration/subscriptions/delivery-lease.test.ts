import http from 'node:http';
import type { Observation, Subscription } from 'fhir/r4';
import { Harness } from './harness';
import { ABNORMAL, topicSubscription } from './fixtures';

/**
 * The delivery lease's fence (src/subscriptions/delivery.ts on src/storage/lease-chain.ts): a
 * holder stalled in a request past its lease loses the subscription to another instance, and
 * once it wakes up it writes no progress over its successor's.
 */
function hr(patient: string, value: number): Observation {
  return {
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
    subject: { reference: `Patient/${patient}` },
    valueQuantity: { value, system: 'http://unitsofmeasure.org', code: '/min', unit: '/min' },
    interpretation: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: 'H' }] }],
  };
}

async function until(pred: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Records event numbers per request; holds the first event request until released. */
class StallingReceiver {
  readonly numbers: number[] = [];
  held?: http.ServerResponse;
  private stalled = false;
  url = '';
  private server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const nums = String(req.headers['x-vigil-event-numbers'] ?? '').split(',').filter(Boolean).map(Number);
      if (nums.length && !this.stalled) {
        this.stalled = true;
        this.held = res; // answered only by release()
        return;
      }
      this.numbers.push(...nums);
      res.end();
    });
  });

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', () => resolve()));
    const a = this.server.address();
    this.url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}/hook`;
    return this;
  }

  release(): void {
    this.held?.end();
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

describe('delivery lease fence', () => {
  const h = new Harness();
  let recv: StallingReceiver;
  beforeAll(async () => {
    await h.open('subs_lease');
    recv = await new StallingReceiver().start();
  });
  afterAll(async () => {
    await h.close();
    await recv.close();
  });

  it('a holder stalled past its lease writes no progress over the instance that took over', async () => {
    const opts = { leaseMs: 300, maxEventsPerNotification: 1, deliveryTimeoutMs: 60_000 };
    const a = await h.instance(opts);
    const sub = await h.write(a, topicSubscription(recv.url, ABNORMAL, ['Observation?patient=Patient/stall']) as Subscription);
    await a.onCommitted([sub]);
    a.start();
    await until(async () => ((await h.current('Subscription', sub.id)) as Subscription | undefined)?.status === 'active', 'activation');

    await a.onCommitted([await h.commit(hr('stall', 150))]);
    await until(() => recv.held !== undefined, 'the first event request to stall');

    // Another instance takes over once A's lease has lapsed and delivers everything, #1 again included.
    const b = await h.instance(opts);
    b.start();
    await b.onCommitted([await h.commit(hr('stall', 151)), await h.commit(hr('stall', 152))]);
    await until(() => recv.numbers.length >= 3, 'delivery by the second instance');
    const runtime = h.db.collection<{ _id: string; delivered: number }>('sub_runtime');
    await until(async () => (await runtime.findOne({ _id: sub.id }))?.delivered === 3, 'progress 3');

    // A wakes up with #1 answered: its lease is gone, so it must not write delivered = 1.
    recv.release();
    await a.stop();
    expect((await runtime.findOne({ _id: sub.id }))?.delivered).toBe(3);
    await b.stop();
    expect(recv.numbers).toEqual([1, 2, 3]);
  });
});
