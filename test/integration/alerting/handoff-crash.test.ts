import http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { Bundle, Flag } from 'fhir/r4';
import { heartRate } from '../../support/context';
import { crashHarness, FAST_SUBSCRIPTIONS, fhirCall } from '../../support/crash-harness';
import type { ServerProcess } from '../../support/server-process';
import { topicSubscription } from '../subscriptions/fixtures';
import { ALERT_TOPIC, eventOf } from '../../support/alerting';

interface Got {
  type?: string;
  numbers: number[];
  flags: Flag[];
}

/**
 * The raised episode's Flag is matched in the outbox batch that wrote it and its notification row
 * is handed to the delivery worker in memory. The server is SIGKILLed while that notification is
 * at the endpoint (not yet answered, so no progress was written): the restarted server delivers
 * it again under the same event number, and after de-duplication the subscriber heard "raised"
 * and later "resolved" exactly once each.
 */
class KillingReceiver {
  readonly got: Got[] = [];
  url = '';
  /** Called (once) on the first event notification, which is then never answered. */
  onFirstEvent?: () => void;
  private server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const b = body ? (JSON.parse(body) as Bundle) : undefined;
      const type = (b?.entry?.[0]?.resource as { parameter?: Array<{ name: string; valueCode?: string }> } | undefined)?.parameter?.find((p) => p.name === 'type')?.valueCode;
      const numbers = String(req.headers['x-vigil-event-numbers'] ?? '').split(',').filter(Boolean).map(Number);
      this.got.push({ type, numbers, flags: (b?.entry ?? []).slice(1).map((e) => e.resource as Flag) });
      const kill = this.onFirstEvent;
      if (numbers.length && kill) {
        this.onFirstEvent = undefined;
        kill();
        return; // never answered: the server dies with the request in flight
      }
      res.end();
    });
  });

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', () => resolve()));
    const a = this.server.address();
    this.url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}/hook`;
    return this;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

async function until(pred: () => boolean, what: string, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('SIGKILL while an in-memory handed notification is at the endpoint', () => {
  const h = crashHarness('handoffcrash', { ...FAST_SUBSCRIPTIONS, ALERT_QUIET_PERIOD_MIN: '0' });
  const patient = `handoff-${randomBytes(4).toString('hex')}`;
  let recv: KillingReceiver;
  let proc: ServerProcess | undefined;
  beforeAll(async () => {
    recv = await new KillingReceiver().start();
  });
  afterAll(async () => {
    await recv.close();
  });

  /** Events by number (delivery is at least once: a number always names the same Flag version). */
  function told(): Map<number, string> {
    const out = new Map<number, string>();
    for (const g of recv.got) {
      g.numbers.forEach((n, k) => {
        const e = `${g.flags[k]?.id}|${eventOf(g.flags[k])}`;
        if (out.has(n)) expect(out.get(n)).toBe(e);
        out.set(n, e);
      });
    }
    return out;
  }

  it('delivers the raised notification again after the restart, under the same number', async () => {
    proc = await h.start();
    const sub = topicSubscription(recv.url, ALERT_TOPIC, [`Flag?patient=Patient/${patient}`]);
    expect((await fhirCall(proc.baseUrl, 'POST', 'Subscription', sub)).status).toBe(201);
    await until(() => recv.got.some((g) => g.type === 'handshake'), 'the handshake');

    let killed: Promise<void> | undefined;
    recv.onFirstEvent = () => {
      killed = proc!.stop('SIGKILL').then(() => undefined);
    };
    expect((await fhirCall(proc.baseUrl, 'POST', 'Observation', heartRate(patient, 130, new Date().toISOString()))).status).toBe(201);
    await until(() => killed !== undefined, 'the raised notification to reach the endpoint');
    await killed;

    proc = await h.start();
    await until(() => recv.got.filter((g) => g.numbers.includes(1)).length >= 2, 'the raised notification delivered again');
    for (let i = 0; i < 2; i++) {
      expect((await fhirCall(proc.baseUrl, 'POST', 'Observation', heartRate(patient, 70, new Date().toISOString()))).status).toBe(201);
    }
    await until(() => [...told().values()].some((e) => e.endsWith('|resolved')), 'the resolved notification');

    const events = told();
    expect([...events.keys()].sort((a, b) => a - b)).toEqual([1, 2]);
    expect([events.get(1)!.split('|')[1], events.get(2)!.split('|')[1]]).toEqual(['raised', 'resolved']);
    const flags = (await fhirCall(proc.baseUrl, 'GET', `Flag?patient=Patient/${patient}`)).json as Bundle;
    expect(flags.entry).toHaveLength(1);
  }, 180_000);
});
