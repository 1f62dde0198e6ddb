import { randomBytes } from 'node:crypto';
import { MongoClient } from 'mongodb';
import type { Observation, Subscription } from 'fhir/r4';
import { startServerProcess, type ServerProcess } from '../../support/server-process';
import { heartRate } from '../../support/context';
import { eventNumbers, typeOf, WebhookReceiver } from '../subscriptions/receiver';

/**
 * Two server processes on ONE embedded database, writes spread over both: the outbox lease
 * (src/storage/lease-chain.ts) lets one process at a time hand committed versions to the
 * subscriptions. The process holding the outbox lease is SIGKILLed mid-stream; the other takes
 * over once the lease expires. Every acknowledged Observation is notified; event numbers are
 * gap-free, first delivered in order, and no Observation is numbered twice (a double hand-off
 * would number it twice).
 */
const ABNORMAL = 'http://vigil-fhir.org/fhir/SubscriptionTopic/abnormal-vital-sign';
const BACKPORT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition';
const ENV = { SUBSCRIPTION_LEASE_MS: '2000', SUBSCRIPTION_POLL_MS: '100', SUBSCRIPTION_BACKOFF_BASE_MS: '100', SUBSCRIPTION_BACKOFF_MAX_MS: '500' };

describe('two instances on one embedded database', () => {
  const dbName = `vigil_test_two_${randomBytes(4).toString('hex')}`;
  const patient = `two-${randomBytes(3).toString('hex')}`;
  let hook: WebhookReceiver;
  let client: MongoClient;
  const procs: ServerProcess[] = [];

  beforeAll(async () => {
    hook = await new WebhookReceiver().start();
    client = await MongoClient.connect(process.env.VIGIL_TEST_MONGODB_URI!);
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    await hook.close();
    await client.db(dbName).dropDatabase().catch(() => undefined);
    await client.close();
  });

  async function post(base: string, path: string, body: unknown): Promise<{ status: number; json?: unknown }> {
    try {
      const r = await fetch(`${base}/${path}`, { method: 'POST', headers: { 'Content-Type': 'application/fhir+json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(15_000) });
      return { status: r.status, json: await r.json().catch(() => undefined) };
    } catch {
      return { status: 0 }; // connection refused or reset: not acknowledged
    }
  }

  /** The pid in the owner of the newest outbox lease link (owners are "host:pid:uuid"). */
  async function outboxHolderPid(): Promise<number | undefined> {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const [top] = await client.db(dbName).collection<{ owner: string; n: number }>('leases').find({ name: 'outbox' }).sort({ n: -1 }).limit(1).toArray();
      if (top) return Number(top.owner.split(':')[1]);
      await new Promise((r) => setTimeout(r, 200));
    }
    return undefined;
  }

  it('hands every committed version on once per lease holder and loses none when the holder is killed', async () => {
    // One after the other: this test is about the outbox lease under load, not about two cold
    // starts racing on an empty database.
    procs.push(await startServerProcess({ MONGODB_DB: dbName, ...ENV }));
    procs.push(await startServerProcess({ MONGODB_DB: dbName, ...ENV }));
    const sub = {
      resourceType: 'Subscription',
      status: 'requested',
      reason: 'two instances',
      criteria: ABNORMAL,
      _criteria: { extension: [{ url: `${BACKPORT}/backport-filter-criteria`, valueString: `Observation?patient=Patient/${patient}` }] },
      channel: {
        type: 'rest-hook',
        endpoint: hook.url,
        payload: 'application/fhir+json',
        _payload: { extension: [{ url: `${BACKPORT}/backport-payload-content`, valueCode: 'id-only' }] },
      },
    } as Subscription;
    expect((await post(procs[0].baseUrl, 'Subscription', sub)).status).toBe(201);
    await hook.waitFor((r) => r.some((x) => typeOf(x) === 'handshake'), 60_000);

    const acknowledged: string[] = [];
    const stream = async (bases: () => string[], n: number, offset: number) => {
      const inFlight: Promise<void>[] = [];
      for (let i = 0; i < n; i++) {
        const b = bases();
        inFlight.push(
          post(b[(offset + i) % b.length], 'Observation', heartRate(patient, 150 + (i % 40))).then((r) => {
            if (r.status === 201) acknowledged.push((r.json as Observation).id!);
          }),
        );
        if (inFlight.length >= 6) await inFlight.shift();
      }
      await Promise.all(inFlight);
    };
    // Both take writes; the outbox lease holder is killed while the stream goes on.
    const holderPid = await outboxHolderPid();
    const holder = procs.find((p) => p.proc.pid === holderPid);
    expect(holder).toBeDefined();
    const survivor = procs.find((p) => p !== holder)!;
    let killed = false;
    const alive = () => (killed ? [survivor.baseUrl] : procs.map((p) => p.baseUrl));
    await Promise.all([
      stream(alive, 60, 0),
      (async () => {
        // Kill once some of the stream has been acknowledged (bounded wait on a condition).
        const deadline = Date.now() + 60_000;
        while (acknowledged.length < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        killed = true;
        await holder!.stop('SIGKILL');
      })(),
    ]);
    await stream(alive, 20, 1);

    const idsOf = (r: (typeof hook.received)[number]) => (r.bundle?.entry ?? []).slice(1).map((e) => e.fullUrl!.split('/').pop()!);
    const delivered = () => new Set(hook.events().flatMap(idsOf));
    await hook.waitFor(() => acknowledged.every((id) => delivered().has(id)), 90_000);

    // Deliveries may repeat (at least once); numbers are assigned once, at the hand-off.
    const byNumber = new Map<number, string>();
    const firstSeenOrder: number[] = [];
    for (const r of hook.events()) {
      const ids = idsOf(r);
      eventNumbers(r).forEach((n, k) => {
        if (byNumber.has(n)) expect(byNumber.get(n)).toBe(ids[k]);
        else {
          byNumber.set(n, ids[k]);
          firstSeenOrder.push(n);
        }
      });
    }
    const numbers = [...byNumber.keys()].sort((a, b) => a - b);
    expect(numbers).toEqual(Array.from({ length: numbers.length }, (_, i) => i + 1)); // gap-free
    expect(firstSeenOrder).toEqual(numbers); // delivered in order
    const ids = [...byNumber.values()];
    expect(new Set(ids).size).toBe(ids.length); // no version handed on twice
    for (const id of acknowledged) expect(ids).toContain(id);
    expect(acknowledged.length).toBeGreaterThanOrEqual(80 - 6); // only requests in flight at the kill may be lost
    // The survivor took the outbox lease over.
    expect(await outboxHolderPid()).toBe(survivor.proc.pid);
  }, 240_000);
});
