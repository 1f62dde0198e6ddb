import type { Observation, Subscription } from 'fhir/r4';
import WebSocket from 'ws';
import http from 'node:http';
import { verifySignature } from '../../../src/subscriptions';
import { Harness } from './harness';
import { ABNORMAL, BACKPORT, topicSubscription } from './fixtures';
import { eventNumbers, paramValue, typeOf, WebhookReceiver } from './receiver';

const CREATED = 'http://vigil-fhir.org/fhir/SubscriptionTopic/observation-created';
const SECRET_EXT = 'http://vigil-fhir.org/fhir/StructureDefinition/subscription-signing-secret';

function hr(patient: string, value: number, interp?: string): Observation {
  return {
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
    subject: { reference: `Patient/${patient}` },
    valueQuantity: { value, system: 'http://unitsofmeasure.org', code: '/min', unit: '/min' },
    ...(interp ? { interpretation: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: interp }] }] } : {}),
  };
}


const until = async (pred: () => boolean | Promise<boolean>, what: string) => {
  for (let i = 0; i < 600; i++) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
};

describe('SubscriptionService against a real database (events offered as the outbox does)', () => {
  const h = new Harness();
  let hook: WebhookReceiver;

  beforeAll(async () => {
    await h.open('subs_service');
    hook = await new WebhookReceiver().start();
  });
  afterAll(async () => {
    await h.close();
    await hook.close();
  });

  async function subscribe(svc: Awaited<ReturnType<Harness['instance']>>, sub: Subscription): Promise<string> {
    const ev = await h.write(svc, sub);
    await svc.onCommitted([ev]);
    return ev.id;
  }

  async function statusOf(id: string): Promise<string | undefined> {
    return ((await h.current('Subscription', id)) as Subscription | undefined)?.status;
  }

  it('re-offered events (at least once, after a crash) never duplicate or skip a number', async () => {
    const svc = await h.instance();
    const id = await subscribe(svc, topicSubscription(hook.url, CREATED, ['Observation?patient=Patient/re']));
    const evs = [];
    for (let i = 0; i < 5; i++) evs.push(await h.commit(hr('re', 60 + i)));
    await svc.onCommitted(evs.slice(0, 2));
    await svc.onCommitted(evs.slice(0, 2)); // the same batch again
    await svc.onCommitted(evs); // a longer batch that starts with what was done
    // A fresh instance (empty caches) offered everything again, as after a restart.
    const svc2 = await h.instance();
    await svc2.onCommitted(evs);
    const rows = await h.db.collection('sub_notifications').find({ sub: id }).sort({ num: 1 }).toArray();
    expect(rows.map((r) => r.num)).toEqual([1, 2, 3, 4, 5]);
    expect(rows.map((r) => r.historyId)).toEqual(evs.map((e) => e.historyId));
  });

  it('two instances numbering the same subscription at once stay gap-free and unique', async () => {
    // Different events for one subscription recorded concurrently by two processes, plus a
    // re-offer racing its original inside one process.
    const a = await h.instance();
    const b = await h.instance();
    const id = await subscribe(a, topicSubscription(hook.url, CREATED, ['Observation?patient=Patient/race']));
    await b.onCommitted([]); // b learns about the subscription through the shared generation
    const evs = [];
    for (let i = 0; i < 12; i++) evs.push(await h.commit(hr('race', 60 + i)));
    // Both get overlapping batches concurrently (a lease handover gone wrong would look like this).
    const odd = evs.filter((_, i) => i % 2 === 1);
    const even = evs.filter((_, i) => i % 2 === 0);
    await Promise.all([a.onCommitted(even), b.onCommitted(odd), a.onCommitted(even.slice(2))]);
    const rows = await h.db.collection('sub_notifications').find({ sub: id }).sort({ num: 1 }).toArray();
    expect(rows.map((r) => r.num)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(new Set(rows.map((r) => r.historyId)).size).toBe(12);
  });

  it('several instances share delivery through leases: every event arrives, in order', async () => {
    const recv = await new WebhookReceiver().start();
    try {
      const a = await h.instance();
      const b = await h.instance();
      const c = await h.instance();
      const id = await subscribe(a, topicSubscription(recv.url, ABNORMAL, ['Observation?patient=Patient/share']));
      for (const s of [a, b, c]) s.start();
      await until(async () => (await statusOf(id)) === 'active', 'activation');
      for (let i = 0; i < 15; i++) {
        const ev = await h.commit(hr('share', 150 + i, 'H'));
        await [a, b, c][i % 3].onCommitted([ev]);
      }
      await recv.waitFor(() => recv.events().flatMap(eventNumbers).length >= 15, 20_000).catch(async (e) => {
        console.log(JSON.stringify(await h.db.collection('sub_state').findOne({ _id: id as never })), JSON.stringify((await h.db.collection('sub_notifications').find({ sub: id }).toArray()).map((r) => [r.num, r.state])), new Date().toISOString());
        throw e;
      });
      const nums = recv.events().flatMap(eventNumbers);
      expect(nums).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
      for (const s of [a, b, c]) await s.stop();
    } finally {
      await recv.close();
    }
  });

  it('gives up pushing after the retry window, keeps the events for $events, and recovers', async () => {
    const recv = await new WebhookReceiver().start();
    try {
      const svc = await h.instance({ retryForMs: 150, errorAfterFailures: 2 });
      const id = await subscribe(svc, topicSubscription(recv.url, ABNORMAL, ['Observation?patient=Patient/gone']));
      svc.start();
      await until(async () => (await statusOf(id)) === 'active', 'activation');
      recv.answer = 500;
      for (let i = 0; i < 3; i++) await svc.onCommitted([await h.commit(hr('gone', 200 + i, 'HH'))]);
      await until(async () => (await statusOf(id)) === 'error', 'error status');
      await until(async () => (await h.db.collection('sub_runtime').findOne({ _id: id as never }))?.expired === 3, 'expiry');
      expect(await h.db.collection('sub_notifications').countDocuments({ sub: id })).toBe(3); // still there for $events
      expect(((await h.current('Subscription', id)) as Subscription).error).toContain('500');
      recv.answer = 200;
      await svc.onCommitted([await h.commit(hr('gone', 210, 'HH'))]);
      await recv.waitFor(() => recv.events().length >= 1);
      expect(recv.events().flatMap(eventNumbers)).toEqual([4]);
      await until(async () => (await statusOf(id)) === 'active', 'recovery');
      await svc.stop();
    } finally {
      await recv.close();
    }
  });

  it('sends heartbeats when nothing happens', async () => {
    const recv = await new WebhookReceiver().start();
    try {
      const svc = await h.instance();
      await subscribe(svc, topicSubscription(recv.url, ABNORMAL, ['Observation?patient=Patient/hb'], { extension: [{ url: `${BACKPORT}/backport-heartbeat-period`, valueUnsignedInt: 1 }] }));
      svc.start();
      await recv.waitFor((r) => r.some((x) => typeOf(x) === 'heartbeat'));
      const hb = recv.received.find((x) => typeOf(x) === 'heartbeat')!;
      expect(hb.bundle?.entry).toHaveLength(1);
      expect(paramValue(hb.status, 'events-since-subscription-start')).toBe('0');
      await svc.stop();
    } finally {
      await recv.close();
    }
  });

  it('rotates the signing secret: both secrets sign during the change', async () => {
    const recv = await new WebhookReceiver().start();
    try {
      const svc = await h.instance();
      const oldSecret = 'old-secret-for-rotation-0001';
      const newSecret = 'new-secret-for-rotation-0002';
      const sub = topicSubscription(recv.url, ABNORMAL, ['Observation?patient=Patient/rot'], { extension: [{ url: SECRET_EXT, valueString: oldSecret }] });
      const id = await subscribe(svc, sub);
      svc.start();
      await until(async () => (await statusOf(id)) === 'active', 'activation');
      const current = (await h.current('Subscription', id)) as Subscription;
      expect(JSON.stringify(current)).not.toContain(oldSecret);
      const rotated: Subscription = { ...current, channel: { ...current.channel, extension: [{ url: SECRET_EXT, valueString: newSecret }] } };
      const ev = await h.write(svc, rotated);
      await svc.onCommitted([ev]);
      expect(await statusOf(id)).toBe('active'); // same endpoint: no new handshake needed
      await svc.onCommitted([await h.commit(hr('rot', 190, 'HH'))]);
      await recv.waitFor(() => recv.events().length >= 1);
      const n = recv.events()[0];
      const sig = String(n.headers['x-vigil-signature']);
      expect(verifySignature(sig, n.body, [oldSecret])).toBe(true);
      expect(verifySignature(sig, n.body, [newSecret])).toBe(true);
      await svc.stop();
    } finally {
      await recv.close();
    }
  });

  it('honours Subscription.end and status off', async () => {
    const svc = await h.instance();
    const ended = await subscribe(svc, { ...topicSubscription(hook.url, CREATED, ['Observation?patient=Patient/end']), end: '2001-01-01T00:00:00Z' });
    const off = await subscribe(svc, { ...topicSubscription(hook.url, CREATED, ['Observation?patient=Patient/end']), status: 'off' });
    expect(await statusOf(off)).toBe('off');
    await svc.onCommitted([await h.commit(hr('end', 70))]);
    expect(await h.db.collection('sub_notifications').countDocuments({ sub: { $in: [ended, off] } })).toBe(0);
  });

  it('deleting a Subscription stops its notifications', async () => {
    const svc = await h.instance();
    const id = await subscribe(svc, topicSubscription(hook.url, CREATED, ['Observation?patient=Patient/del']));
    await svc.onCommitted([await h.commit(hr('del', 70))]);
    const del = await h.commit({ resourceType: 'Subscription', id } as Subscription, 'DELETE');
    await svc.onCommitted([del]);
    await svc.onCommitted([await h.commit(hr('del', 71))]);
    expect(await h.db.collection('sub_notifications').countDocuments({ sub: id })).toBe(1);
  });

  it('R4 websocket: bind <id> (auth off), bound, then ping per event', async () => {
    const svc = await h.instance();
    const server = http.createServer((_q, s) => s.end());
    svc.attach(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    try {
      const id = await subscribe(svc, { resourceType: 'Subscription', status: 'requested', reason: 'r4 ws', criteria: 'Observation?patient=Patient/wsr4', channel: { type: 'websocket' } } as Subscription);
      svc.start();
      await until(async () => (await statusOf(id)) === 'active', 'activation');
      const ws = new WebSocket(`ws://127.0.0.1:${port}/fhir/websocket`);
      const msgs: string[] = [];
      ws.on('message', (d) => msgs.push(d.toString()));
      await new Promise((r) => ws.once('open', r));
      ws.send(`bind ${id}`);
      await until(() => msgs.includes(`bound ${id}`), 'bound');
      await svc.onCommitted([await h.commit(hr('wsr4', 80))]);
      await until(() => msgs.includes(`ping ${id}`), 'ping');
      ws.send('bind unknown-sub');
      await until(() => msgs.some((m) => m.startsWith('error no websocket Subscription')), 'refusal');
      ws.send('gibberish');
      await until(() => msgs.some((m) => m.startsWith('error unknown command')), 'unknown command');
      ws.close();
      await svc.stop();
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('creates without an id reach their writer through the content fingerprint', async () => {
    const svc = await h.instance();
    const sub = topicSubscription(hook.url, CREATED, ['Observation?patient=Patient/fp']);
    const ev = await h.write(svc, sub); // beforeWrite saw no id
    await svc.onCommitted([ev]);
    const state = await h.db.collection('sub_state').findOne({ _id: ev.id as never });
    expect(state?.principal.clientId).toBe('anonymous (auth disabled)');
    expect(await h.db.collection('sub_owner_pending').countDocuments({})).toBe(0);
  });
});
