import type { AuditEvent } from 'fhir/r4';
import pino from 'pino';
import { AuditTrail, toAuditEvent } from '../../../src/auth/audit';
import { parseBasic } from '../../../src/auth/client-auth';
import { RateLimiter } from '../../../src/auth/rate-limit';
import { hashSecret, isSecretHash, verifySecret } from '../../../src/auth/secrets';
import { allowAllPolicy } from '../../../src/auth/types';

describe('client secrets', () => {
  it('are stored as scrypt hashes and verified', async () => {
    const h = await hashSecret('correct horse battery staple');
    expect(isSecretHash(h)).toBe(true);
    expect(h).not.toContain('horse');
    expect(await verifySecret('correct horse battery staple', h)).toBe(true);
    expect(await verifySecret('correct horse battery stapl', h)).toBe(false);
    expect(await verifySecret('', h)).toBe(false);
  });
  it('never verify against a missing or foreign hash', async () => {
    expect(await verifySecret('x', undefined)).toBe(false);
    expect(await verifySecret('x', 'x')).toBe(false);
  });
});

describe('parseBasic', () => {
  const basic = (s: string) => `Basic ${Buffer.from(s).toString('base64')}`;
  it('decodes form-encoded id and secret', () => {
    expect(parseBasic(basic('gw%3A1:s%2Bcret'))).toEqual({ id: 'gw:1', secret: 's+cret' });
    expect(parseBasic(basic('a:b:c'))).toEqual({ id: 'a', secret: 'b:c' });
  });
  it('refuses what is not Basic credentials', () => {
    expect(parseBasic(undefined)).toBeUndefined();
    expect(parseBasic('Bearer abc')).toBeUndefined();
    expect(parseBasic(basic('nocolon'))).toBeUndefined();
    expect(parseBasic(basic('%zz:x'))).toBeUndefined();
  });
});

describe('RateLimiter', () => {
  it('allows a burst, then one request per refill interval, per key', () => {
    let t = 0;
    const rl = new RateLimiter(3, 0.5, () => t);
    expect([rl.take('a'), rl.take('a'), rl.take('a')]).toEqual([0, 0, 0]);
    expect(rl.take('a')).toBe(2);
    expect(rl.take('b')).toBe(0);
    t = 2000;
    expect(rl.take('a')).toBe(0);
    expect(rl.take('a')).toBeGreaterThan(0);
  });
});

describe('toAuditEvent', () => {
  const base = {
    principal: { clientId: 'gw-1', scopes: ['system/*.*'], policy: allowAllPolicy, issuer: 'https://h/auth' },
    action: 'R' as const,
    interaction: 'read',
    type: 'Observation',
    id: 'o1',
    patients: ['p1', 'p1', 'p2'],
    outcome: 200,
    ip: '10.0.0.7',
    requestId: 'req-1',
    at: new Date('2026-03-01T12:00:00Z'),
  };

  it('says who, what, which patients, outcome, when and from where', () => {
    const e = toAuditEvent(base);
    expect(e.action).toBe('R');
    expect(e.recorded).toBe('2026-03-01T12:00:00.000Z');
    expect(e.outcome).toBe('0');
    expect(e.subtype).toEqual([{ system: 'http://hl7.org/fhir/restful-interaction', code: 'read' }]);
    expect(e.agent[0].who).toEqual({ identifier: { system: 'https://h/auth', value: 'gw-1' }, display: 'gw-1' });
    expect(e.agent[0].network).toEqual({ address: '10.0.0.7', type: '2' });
    expect(e.entity?.[0].what).toEqual({ reference: 'Observation/o1' });
    expect(e.entity?.[0].detail).toEqual([{ type: 'requestId', valueString: 'req-1' }]);
    expect(e.entity?.filter((x) => x.role?.code === '1').map((x) => x.what?.reference)).toEqual(['Patient/p1', 'Patient/p2']);
  });

  it('maps failures and unauthenticated callers', () => {
    expect(toAuditEvent({ ...base, outcome: 403 }).outcome).toBe('4');
    expect(toAuditEvent({ ...base, outcome: 503 }).outcome).toBe('8');
    expect(toAuditEvent({ ...base, principal: undefined }).agent[0].who?.identifier?.value).toBe('unauthenticated');
  });
});

describe('AuditTrail', () => {
  const logger = pino({ level: 'silent' });
  const rec = (i: number) => ({
    principal: undefined,
    action: 'R' as const,
    interaction: 'search-type',
    type: 'Observation',
    patients: [`p${i}`],
    outcome: 200,
    requestId: `r${i}`,
    at: new Date(),
  });

  it('queues without blocking and writes in batches', async () => {
    const batches: AuditEvent[][] = [];
    const trail = new AuditTrail({ persist: async (b) => void batches.push(b), logger, batchSize: 2, intervalMs: 60_000 });
    for (let i = 0; i < 5; i++) trail.record(rec(i));
    await trail.close();
    expect(batches.flat()).toHaveLength(5);
    expect(batches.every((b) => b.length <= 2)).toBe(true);
  });

  it('keeps events when persisting fails, and writes them later', async () => {
    let fail = true;
    const written: AuditEvent[] = [];
    const trail = new AuditTrail({
      persist: async (b) => {
        if (fail) throw new Error('db down');
        written.push(...b);
      },
      logger,
      intervalMs: 60_000,
    });
    trail.record(rec(1));
    await trail.flush();
    expect(written).toHaveLength(0);
    fail = false;
    await trail.close();
    expect(written).toHaveLength(1);
  });

  it('a flush writes what was queued before it and returns while events keep coming faster than a batch is written', async () => {
    const written: string[] = [];
    const trail = new AuditTrail({
      persist: async (b) => {
        await new Promise((r) => setTimeout(r, 20));
        written.push(...b.map((e) => e.entity?.[0]?.detail?.[0]?.valueString ?? ''));
      },
      logger,
      batchSize: 2,
      intervalMs: 60_000,
    });
    let streaming = true;
    let n = 0;
    const stream = (async () => {
      while (streaming) {
        trail.record(rec(n++));
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    await new Promise((r) => setTimeout(r, 30));
    const before = n;
    try {
      await trail.flush();
    } finally {
      streaming = false;
      await stream;
    }
    // Everything recorded before the flush is written, in order.
    expect(written.slice(0, before)).toEqual(Array.from({ length: before }, (_, i) => `r${i}`));
    await trail.close();
    expect(written).toHaveLength(n);
  });
});
