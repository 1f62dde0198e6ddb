import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Bundle } from 'fhir/r4';
import { createTestContext, FHIR_JSON, heartRate, postBundle, type TestContext } from '../../support/context';
import { outboxIdle } from '../../support/outbox-idle';
import { basic } from '../auth/helpers';

/** The identifier system a device uses for its readings (one value per reading, kept across resends). */
const SYS = 'urn:example:device-readings';

function reading(patientId: string, value: number, id: string): Record<string, unknown> {
  return { ...heartRate(patientId, value), identifier: [{ system: SYS, value: id }] };
}

async function waitUntil(cond: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('server-wide back-pressure (outbox lag)', () => {
  let ctx: TestContext;
  const tag = randomBytes(4).toString('hex');
  beforeAll(async () => {
    ctx = await createTestContext({ env: { BACKPRESSURE_MAX_OUTBOX_LAG_MS: '1000', BACKPRESSURE_MAX_DB_LATENCY_MS: '0', BACKPRESSURE_RETRY_AFTER_SECONDS: '1' } });
  });
  afterAll(async () => {
    await ctx.close();
  });

  test('a fleet resending through 503s with If-None-Exist loses no acknowledged reading and duplicates none', async () => {
    // Start calm (the start-up work done, the lag sampled at zero), then stop the outbox: post-commit
    // work piles up, as when a server cannot keep up.
    await outboxIdle(ctx.vigil);
    await ctx.vigil.load.sample();
    expect(ctx.vigil.load.outboxLagMs).toBe(0);
    await ctx.vigil.outbox.stop();
    const first = await ctx.request.post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(JSON.stringify(reading(`bp-${tag}`, 70, `${tag}-first`)));
    expect(first.status).toBe(201);
    await waitUntil(() => ctx.vigil.load.pressureLagMs > 1000, 'the outbox lag to pass its limit');

    let refused = 0;
    let restarted = false;
    const acknowledged = new Map<string, string>();
    const giveUpAt = Date.now() + 120_000;
    const device = async (d: number) => {
      for (let i = 0; i < 8; i++) {
        const rid = `${tag}-d${d}-r${i}`;
        for (let attempt = 0; ; attempt++) {
          if (Date.now() > giveUpAt) throw new Error(`reading ${rid} was never accepted (${attempt} attempts)`);
          const r = await ctx.request
            .post('/fhir/Observation')
            .set({ 'Content-Type': FHIR_JSON, 'If-None-Exist': `identifier=${SYS}|${rid}` })
            .send(JSON.stringify(reading(`bp-${tag}`, 60 + i, rid)));
          if (r.status === 503) {
            refused++;
            expect(r.headers['retry-after']).toBe('1');
            expect(r.body.resourceType).toBe('OperationOutcome');
            expect(r.body.issue[0].code).toBe('transient');
            // Reads keep working while writes are held back.
            expect((await ctx.request.get(`/fhir/Observation/${first.body.id}`)).status).toBe(200);
            if (!restarted) {
              restarted = true;
              ctx.vigil.outbox.start();
            }
            await new Promise((res) => setTimeout(res, 20));
            continue;
          }
          expect([200, 201]).toContain(r.status);
          acknowledged.set(rid, r.body.id as string);
          break;
        }
      }
    };
    try {
      await Promise.all([0, 1, 2, 3].map(device));
    } finally {
      if (!restarted) ctx.vigil.outbox.start();
    }
    expect(refused).toBeGreaterThan(0);
    expect(acknowledged.size).toBe(32);
    await outboxIdle(ctx.vigil);
    for (const [rid, id] of acknowledged) {
      const b = (await ctx.request.get(`/fhir/Observation?identifier=${encodeURIComponent(`${SYS}|${rid}`)}`)).body as Bundle;
      expect(b.entry?.map((e) => e.resource?.id)).toEqual([id]);
    }
  }, 180_000);

});

describe('the resend recipe (back-pressure off)', () => {
  let ctx: TestContext;
  const tag = randomBytes(4).toString('hex');
  beforeAll(async () => {
    ctx = await createTestContext();
  });
  afterAll(async () => {
    await ctx.close();
  });

  test('the device resend recipe in a batch: the same readings twice make no duplicate', async () => {
    const entry = [0, 1, 2].map((i) => ({
      resource: reading(`bb-${tag}`, 80 + i, `${tag}-batch-${i}`),
      request: { method: 'POST', url: 'Observation', ifNoneExist: `identifier=${SYS}|${tag}-batch-${i}` },
    }));
    // A reading repeated inside one batch (a device that resent before the first answer) too.
    entry.push({ ...entry[0] });
    const once = await postBundle(ctx, entry, 'batch');
    expect(once.status).toBe(200);
    const statuses = (once.body as Bundle).entry!.map((e) => e.response!.status);
    expect(statuses.slice(0, 3).every((s) => s.startsWith('201'))).toBe(true);
    expect(statuses[3]).toMatch(/^200/);
    const twice = await postBundle(ctx, entry, 'batch');
    expect((twice.body as Bundle).entry!.map((e) => e.response!.status.slice(0, 3))).toEqual(['200', '200', '200', '200']);
    const ids = (b: Bundle) => b.entry!.map((e) => e.response!.location!.split('/_history')[0]);
    expect(ids(twice.body as Bundle)).toEqual(ids(once.body as Bundle));
    const all = (await ctx.request.get(`/fhir/Observation?patient=bb-${tag}&_count=50`)).body as Bundle;
    expect(all.entry).toHaveLength(3);
  });
});

describe('per-client write rate from the client registration', () => {
  let ctx: TestContext;
  const pass = `dev-${randomBytes(12).toString('hex')}`;
  const frozen = new Date();
  beforeAll(async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-rate-'));
    const file = path.join(dir, 'clients.json');
    writeFileSync(file, JSON.stringify([{ client_id: 'gw-rated', name: 'Gateway', scope: 'system/Observation.cruds', client_secret: pass, rate_limit: 2 }]));
    // A frozen clock: the client's bucket never refills during the test, whatever the machine's speed.
    ctx = await createTestContext({ auth: true, env: { SMART_CLIENTS_FILE: file }, clock: () => frozen });
  });
  afterAll(async () => {
    await ctx.close();
  });

  test('writes over the rate get 429 with Retry-After before any work; reads still pass', async () => {
    const t = await ctx.request.post('/auth/token').type('form').set('Authorization', basic('gw-rated', pass)).send({ grant_type: 'client_credentials', scope: 'system/Observation.cruds' });
    expect(t.status).toBe(200);
    const auth = { Authorization: `Bearer ${t.body.access_token as string}` };
    const send = () => ctx.request.post('/fhir/Observation').set(auth).set('Content-Type', FHIR_JSON).send(JSON.stringify(heartRate('rated', 72)));
    expect((await send()).status).toBe(201);
    expect((await send()).status).toBe(201);
    const r = await send();
    expect(r.status).toBe(429);
    expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(r.body.issue[0].code).toBe('throttled');
    const read = await ctx.request.get('/fhir/Observation?patient=rated').set(auth);
    expect(read.status).toBe(200);
    // The refused write did nothing.
    expect((read.body as Bundle).entry).toHaveLength(2);
  });
});
