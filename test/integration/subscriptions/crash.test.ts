import { randomBytes } from 'node:crypto';
import { MongoClient } from 'mongodb';
import type { Observation, Subscription } from 'fhir/r4';
import { startServerProcess, type ServerProcess } from '../../support/server-process';
import { heartRate } from '../../support/context';
import { eventNumbers, typeOf, WebhookReceiver } from './receiver';

/**
 * The server process is killed with SIGKILL in the middle of a stream of abnormal Observations and
 * started again on the same database: every acknowledged Observation is notified, and after
 * de-duplication by event number none is notified twice; numbers stay gap-free and in order.
 */
const ABNORMAL = 'http://vigil-fhir.org/fhir/SubscriptionTopic/abnormal-vital-sign';
const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition';
const ENV = { SUBSCRIPTION_LEASE_MS: '2000', SUBSCRIPTION_POLL_MS: '100', SUBSCRIPTION_BACKOFF_BASE_MS: '100', SUBSCRIPTION_BACKOFF_MAX_MS: '500' };

describe('SIGKILL during a stream of Observations', () => {
  const dbName = `vigil_test_subcrash_${randomBytes(4).toString('hex')}`;
  let hook: WebhookReceiver;
  let proc: ServerProcess | undefined;

  beforeAll(async () => {
    hook = await new WebhookReceiver().start();
  });
  afterAll(async () => {
    await proc?.stop('SIGKILL');
    await hook.close();
    const c = await MongoClient.connect(process.env.VIGIL_TEST_MONGODB_URI!);
    await c.db(dbName).dropDatabase().catch(() => undefined);
    await c.close();
  });

  async function post(base: string, path: string, body: unknown): Promise<{ status: number; json?: unknown }> {
    try {
      const r = await fetch(`${base}/${path}`, { method: 'POST', headers: { 'Content-Type': 'application/fhir+json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
      return { status: r.status, json: await r.json().catch(() => undefined) };
    } catch {
      return { status: 0 }; // connection refused or reset: not acknowledged
    }
  }

  it('notifies every acknowledged Observation exactly once after de-duplication, in order', async () => {
    proc = await startServerProcess({ MONGODB_DB: dbName, ...ENV });
    const sub: Subscription = {
      resourceType: 'Subscription',
      status: 'requested',
      reason: 'crash test',
      criteria: ABNORMAL,
      _criteria: { extension: [{ url: `${BACKPORT}/backport-filter-criteria`, valueString: 'Observation?patient=Patient/crash' }] },
      channel: {
        type: 'rest-hook',
        endpoint: hook.url,
        payload: 'application/fhir+json',
        _payload: { extension: [{ url: `${BACKPORT}/backport-payload-content`, valueCode: 'id-only' }] },
      },
    } as Subscription;
    const created = await post(proc.baseUrl, 'Subscription', sub);
    expect(created.status).toBe(201);
    await hook.waitFor((r) => r.some((x) => typeOf(x) === 'handshake'));

    const acknowledged: string[] = [];
    const stream = async (base: string, n: number, killAfter?: number) => {
      const inFlight: Promise<void>[] = [];
      for (let i = 0; i < n; i++) {
        if (killAfter !== undefined && i === killAfter) {
          await proc!.stop('SIGKILL');
        }
        // A few requests in flight at once, as several devices would send them.
        inFlight.push(
          post(base, 'Observation', heartRate('crash', 150 + (i % 40))).then((r) => {
            if (r.status === 201) acknowledged.push((r.json as Observation).id!);
          }),
        );
        if (inFlight.length >= 4) await inFlight.shift();
      }
      await Promise.all(inFlight);
    };
    await stream(proc.baseUrl, 40, 25);
    proc = await startServerProcess({ MONGODB_DB: dbName, ...ENV });
    await stream(proc.baseUrl, 15);

    const idsOf = (r: (typeof hook.received)[number]) => (r.bundle?.entry ?? []).slice(1).map((e) => e.fullUrl!.split('/').pop()!);
    const delivered = () => new Set(hook.events().flatMap(idsOf));
    await hook.waitFor(() => acknowledged.every((id) => delivered().has(id)), 60_000);

    // De-duplicate by event number: a number always means the same Observation.
    const byNumber = new Map<number, string>();
    const firstSeenOrder: number[] = [];
    for (const r of hook.events()) {
      const nums = eventNumbers(r);
      const ids = idsOf(r);
      nums.forEach((n, k) => {
        if (byNumber.has(n)) expect(byNumber.get(n)).toBe(ids[k]);
        else {
          byNumber.set(n, ids[k]);
          firstSeenOrder.push(n);
        }
      });
    }
    const numbers = [...byNumber.keys()].sort((a, b) => a - b);
    expect(numbers).toEqual(Array.from({ length: numbers.length }, (_, i) => i + 1)); // gap-free
    expect(firstSeenOrder).toEqual(numbers); // first deliveries in number order
    const ids = [...byNumber.values()];
    expect(new Set(ids).size).toBe(ids.length); // no Observation under two numbers
    for (const id of acknowledged) expect(ids).toContain(id);
    expect(acknowledged.length).toBeGreaterThanOrEqual(15 + 25 - 4); // requests in flight at the kill may be lost
  }, 180_000);
});
