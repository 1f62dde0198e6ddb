import { randomBytes } from 'node:crypto';
import type { Bundle, Flag } from 'fhir/r4';
import { heartRate } from '../../support/context';
import { crashHarness, FAST_SUBSCRIPTIONS, fhirCall } from '../../support/crash-harness';
import type { ServerProcess } from '../../support/server-process';
import { topicSubscription } from '../subscriptions/fixtures';
import { eventNumbers, typeOf } from '../subscriptions/receiver';
import { ALERT_TOPIC, eventOf } from '../../support/alerting';

/**
 * The server process is SIGKILLed while an alert episode is open, in the middle of a stream of
 * high readings, and started again on the same database: the patient still has exactly one
 * episode, and after de-duplication by event number the subscriber was told "raised" once and,
 * when the readings return to normal, "resolved" once: nothing lost, nothing repeated.
 */
describe('SIGKILL during an open alert episode', () => {
  const h = crashHarness('alertcrash', { ...FAST_SUBSCRIPTIONS, ALERT_QUIET_PERIOD_MIN: '0' });
  const patient = `crash-${randomBytes(4).toString('hex')}`;
  let proc: ServerProcess | undefined;

  async function stream(base: string, n: number, value: number, killAfter?: number): Promise<void> {
    const inFlight: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) {
      if (killAfter !== undefined && i === killAfter) await proc!.stop('SIGKILL');
      inFlight.push(fhirCall(base, 'POST', 'Observation', heartRate(patient, value, new Date().toISOString())));
      if (inFlight.length >= 3) await inFlight.shift();
    }
    await Promise.all(inFlight);
  }

  /** Flags told about, de-duplicated by event number (delivery is at least once). */
  function toldEvents(): string[] {
    const byNumber = new Map<number, Flag>();
    for (const r of h.hook.events()) {
      const flags = (r.bundle?.entry ?? []).slice(1).map((e) => e.resource as Flag);
      eventNumbers(r).forEach((n, k) => byNumber.set(n, flags[k]));
    }
    return [...byNumber.entries()].sort(([a], [b]) => a - b).map(([, f]) => eventOf(f)!);
  }

  it('keeps exactly one episode and loses no event', async () => {
    proc = await h.start();
    const sub = topicSubscription(h.hook.url, ALERT_TOPIC, [`Flag?patient=Patient/${patient}`]);
    expect((await fhirCall(proc.baseUrl, 'POST', 'Subscription', sub)).status).toBe(201);
    await h.hook.waitFor((r) => r.some((x) => typeOf(x) === 'handshake'));

    await stream(proc.baseUrl, 4, 120);
    await h.hook.waitFor(() => toldEvents().includes('raised'), 30_000);
    // Killed mid-stream with requests in flight, the episode open.
    await stream(proc.baseUrl, 10, 120, 5);
    proc = await h.start();
    await stream(proc.baseUrl, 6, 120);
    for (let i = 0; i < 2; i++) {
      const r = await fhirCall(proc.baseUrl, 'POST', 'Observation', heartRate(patient, 70, new Date().toISOString()));
      expect(r.status).toBe(201);
    }
    await h.hook.waitFor(() => toldEvents().includes('resolved'), 60_000);
    expect(toldEvents()).toEqual(['raised', 'resolved']);
    const flags = (await fhirCall(proc.baseUrl, 'GET', `Flag?patient=Patient/${patient}`)).json as Bundle;
    expect(flags.entry).toHaveLength(1);
    expect((flags.entry![0].resource as Flag).status).toBe('inactive');
  }, 180_000);
});
