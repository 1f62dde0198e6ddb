import { randomBytes } from 'node:crypto';
import { MongoClient, type Db } from 'mongodb';
import { eventNumbers, WebhookReceiver, type Received } from '../integration/subscriptions/receiver';
import { startServerProcess, type ServerProcess } from './server-process';

/**
 * What the process-level crash tests share (SIGKILL mid-stream, restart or take-over on the same
 * database): a fresh database, a webhook receiver, the server processes started on that database
 * (all killed at the end, the database dropped), and requests that count a refused or reset
 * connection as "not acknowledged" rather than failing the test.
 */

/** Subscription timing that notices a dead lease holder within seconds. */
export const FAST_SUBSCRIPTIONS = {
  SUBSCRIPTION_LEASE_MS: '2000',
  SUBSCRIPTION_POLL_MS: '100',
  SUBSCRIPTION_BACKOFF_BASE_MS: '100',
  SUBSCRIPTION_BACKOFF_MAX_MS: '500',
};

export interface CrashHarness {
  readonly dbName: string;
  readonly hook: WebhookReceiver;
  /** The test run's database as the tests see it (for looking at leases and the like). */
  db(): Db;
  /** Starts a server process on the harness's database with `env` added to the harness's own. */
  start(env?: Record<string, string>): Promise<ServerProcess>;
}

/** Sets up a harness for the enclosing describe block (its beforeAll and afterAll). */
export function crashHarness(name: string, env: Record<string, string> = FAST_SUBSCRIPTIONS): CrashHarness {
  const dbName = `vigil_test_${name}_${randomBytes(4).toString('hex')}`;
  const procs: ServerProcess[] = [];
  let hook: WebhookReceiver | undefined;
  let client: MongoClient | undefined;
  beforeAll(async () => {
    hook = await new WebhookReceiver().start();
    client = await MongoClient.connect(process.env.VIGIL_TEST_MONGODB_URI!);
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    await hook?.close();
    await client?.db(dbName).dropDatabase().catch(() => undefined);
    await client?.close();
  });
  return {
    dbName,
    get hook() {
      return hook!;
    },
    db: () => client!.db(dbName),
    async start(extra = {}) {
      const p = await startServerProcess({ MONGODB_DB: dbName, ...env, ...extra });
      procs.push(p);
      return p;
    },
  };
}

/** A FHIR request; a refused or reset connection (the server was killed) is status 0: not acknowledged. */
export async function fhirCall(base: string, method: string, path: string, body?: unknown, timeoutMs = 10_000): Promise<{ status: number; json?: unknown }> {
  try {
    const r = await fetch(`${base}/${path}`, {
      method,
      headers: { 'Content-Type': 'application/fhir+json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    return { status: r.status, json: await r.json().catch(() => undefined) };
  } catch {
    return { status: 0 };
  }
}

/** The resource ids an id-only notification names (its entries after the status entry). */
export function notifiedIds(r: Received): string[] {
  return (r.bundle?.entry ?? []).slice(1).map((e) => e.fullUrl!.split('/').pop()!);
}

/**
 * Notifications de-duplicated by event number (delivery is at least once): a number must always
 * name the same resource. Returns the id per number and the numbers in the order first seen.
 */
export function byEventNumber(hook: WebhookReceiver): { byNumber: Map<number, string>; firstSeenOrder: number[] } {
  const byNumber = new Map<number, string>();
  const firstSeenOrder: number[] = [];
  for (const r of hook.events()) {
    const ids = notifiedIds(r);
    eventNumbers(r).forEach((n, k) => {
      if (byNumber.has(n)) expect(byNumber.get(n)).toBe(ids[k]);
      else {
        byNumber.set(n, ids[k]);
        firstSeenOrder.push(n);
      }
    });
  }
  return { byNumber, firstSeenOrder };
}

/** Numbers 1..n without gaps, first delivered in order, no resource under two numbers, every acknowledged one there. */
export function expectExactlyOnceInOrder(hook: WebhookReceiver, acknowledged: readonly string[]): void {
  const { byNumber, firstSeenOrder } = byEventNumber(hook);
  const numbers = [...byNumber.keys()].sort((a, b) => a - b);
  expect(numbers).toEqual(Array.from({ length: numbers.length }, (_, i) => i + 1)); // gap-free
  expect(firstSeenOrder).toEqual(numbers); // first deliveries in number order
  const ids = [...byNumber.values()];
  expect(new Set(ids).size).toBe(ids.length); // no resource handed on twice
  for (const id of acknowledged) expect(ids).toContain(id);
}
