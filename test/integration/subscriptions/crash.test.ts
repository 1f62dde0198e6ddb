import type { Observation } from 'fhir/r4';
import { heartRate } from '../../support/context';
import { crashHarness, expectExactlyOnceInOrder, fhirCall, notifiedIds } from '../../support/crash-harness';
import { ABNORMAL, topicSubscription } from './fixtures';
import { typeOf } from './receiver';

/**
 * The server process is killed with SIGKILL in the middle of a stream of abnormal Observations and
 * started again on the same database: every acknowledged Observation is notified, and after
 * de-duplication by event number none is notified twice; numbers stay gap-free and in order.
 */
describe('SIGKILL during a stream of Observations', () => {
  const h = crashHarness('subcrash');

  it('notifies every acknowledged Observation exactly once after de-duplication, in order', async () => {
    let proc = await h.start();
    const sub = topicSubscription(h.hook.url, ABNORMAL, ['Observation?patient=Patient/crash'], {}, 'id-only');
    expect((await fhirCall(proc.baseUrl, 'POST', 'Subscription', sub)).status).toBe(201);
    await h.hook.waitFor((r) => r.some((x) => typeOf(x) === 'handshake'));

    const acknowledged: string[] = [];
    const stream = async (base: string, n: number, killAfter?: number) => {
      const inFlight: Promise<void>[] = [];
      for (let i = 0; i < n; i++) {
        if (killAfter !== undefined && i === killAfter) {
          await proc.stop('SIGKILL');
        }
        // A few requests in flight at once, as several devices would send them.
        inFlight.push(
          fhirCall(base, 'POST', 'Observation', heartRate('crash', 150 + (i % 40))).then((r) => {
            if (r.status === 201) acknowledged.push((r.json as Observation).id!);
          }),
        );
        if (inFlight.length >= 4) await inFlight.shift();
      }
      await Promise.all(inFlight);
    };
    await stream(proc.baseUrl, 40, 25);
    proc = await h.start();
    await stream(proc.baseUrl, 15);

    const delivered = () => new Set(h.hook.events().flatMap(notifiedIds));
    await h.hook.waitFor(() => acknowledged.every((id) => delivered().has(id)), 60_000);
    // De-duplicated by event number: a number always means the same Observation.
    expectExactlyOnceInOrder(h.hook, acknowledged);
    expect(acknowledged.length).toBeGreaterThanOrEqual(15 + 25 - 4); // requests in flight at the kill may be lost
  }, 180_000);
});
