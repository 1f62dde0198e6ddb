import type { AddressInfo } from 'node:net';
import { createTestContext, FHIR_JSON, patient, postBundle, type TestContext } from '../../support/context';
import { isOutcome, send, sendRaw } from './client';

/** The named behaviours of issue 12, one by one (the fuzz run covers them in bulk). */

let ctx: TestContext;
let port: number;

beforeAll(async () => {
  ctx = await createTestContext({ listen: true, env: { BUNDLE_MAX_ENTRIES: '5', SEARCH_MAX_PARAMS: '10' } });
  port = (ctx.server!.address() as AddressInfo).port;
});
afterAll(async () => ctx?.close());

function code(text: string): string | undefined {
  return (JSON.parse(text) as { issue: { details?: { coding?: { code: string }[] } }[] }).issue[0].details?.coding?.[0].code;
}

async function patientCount(marker: string): Promise<number> {
  return ctx.db.collection('Patient').countDocuments({ 'res.identifier.value': marker });
}

describe('before the FHIR edge: Node parser errors are OperationOutcomes', () => {
  it.each([
    ['an unknown method', 'FOO /fhir/Patient HTTP/1.1\r\nHost: x\r\n\r\n', 405],
    ['a bad HTTP version', 'GET /fhir/Patient HTTP/9.9\r\nHost: x\r\n\r\n', 400],
    ['oversized headers', `GET /fhir/Patient HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431],
    ['an Expect the server cannot meet', 'GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nExpect: garbage\r\nConnection: close\r\n\r\n', 417],
    ['CONNECT', 'CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: x\r\n\r\n', 405],
    ['TRACE', 'TRACE /fhir/Patient HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 405],
  ])('%s', async (_what, raw, status) => {
    const a = await sendRaw(port, raw);
    expect(a.status).toBe(status);
    expect(a.headers['content-type']).toMatch(/^application\/fhir\+json/);
    expect(isOutcome(a.text)).toBe(true);
    if (status === 405) expect(a.headers.allow).toBe('GET, HEAD, POST, PUT, PATCH, DELETE');
  });

  it('a method the path does not take is 405 with the methods it does', async () => {
    const a = await send(port, { method: 'PATCH', path: '/fhir/Patient' });
    expect(a.status).toBe(405);
    expect(a.headers.allow).toBe('GET, HEAD, POST, PUT, DELETE');
  });
});

describe('text is refused, never repaired', () => {
  it('invalid UTF-8 bytes in a body: 400 naming the byte, nothing created', async () => {
    const [head, tail] = JSON.stringify(patient('Bad@@Bytes', ['X'], 'utf8-bad')).split('@@');
    const body = Buffer.concat([Buffer.from(head), Buffer.from([0xc3, 0x28]), Buffer.from(tail)]);
    const a = await send(port, { method: 'POST', path: '/fhir/Patient', headers: { 'Content-Type': FHIR_JSON }, body });
    expect(a.status).toBe(400);
    expect(code(a.text)).toBe('MSG_UTF8_INVALID');
    expect(a.text).toContain(`at byte ${head.length}`);
    expect(await patientCount('utf8-bad')).toBe(0);
  });

  it('a lone surrogate is a 400 naming the element', async () => {
    const body = JSON.stringify(patient('Fuzz@@base', ['X'], 'surrogate')).replace('@@', '\\ud800');
    const a = await send(port, { method: 'POST', path: '/fhir/Patient', headers: { 'Content-Type': FHIR_JSON }, body });
    expect(a.status).toBe(400);
    expect(JSON.parse(a.text).issue[0].expression).toEqual(['Patient.name[0].family']);
    expect(await patientCount('surrogate')).toBe(0);
  });

  it.each(['/fhir/Patient/%', '/fhir/Patient/%E0%A4%A', '/fhir/Patient?name=%E0%A4%A', '/fhir/Patient/%00'])('%s is a 400', async (path) => {
    const a = await send(port, { method: 'GET', path });
    expect(a.status).toBe(400);
    expect(code(a.text)).toBe('MSG_PERCENT_ENCODING');
  });

  it.each(['1e999', '-1e999', '1e-999'])('value-quantity=%s is a 400', async (v) => {
    const a = await send(port, { method: 'GET', path: `/fhir/Observation?value-quantity=${v}` });
    expect(a.status).toBe(400);
    expect(a.text).toContain('out of range');
  });

  it('value-quantity=-0 searches for zero', async () => {
    expect((await send(port, { method: 'GET', path: '/fhir/Observation?value-quantity=-0' })).status).toBe(200);
  });
});

describe('a body must match its interaction', () => {
  it('a Patient sent as application/json-patch+json to create is a 415, nothing created', async () => {
    const a = await send(port, { method: 'POST', path: '/fhir/Patient', headers: { 'Content-Type': 'application/json-patch+json' }, body: JSON.stringify(patient('Wrong', ['Type'], 'ct-415')) });
    expect(a.status).toBe(415);
    expect(await patientCount('ct-415')).toBe(0);
  });

  it('a JSON Patch stepping through __proto__ is a 400 and touches nothing', async () => {
    const c = await ctx.request.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(JSON.stringify(patient('Proto', ['P'], 'proto-1')));
    const a = await send(port, { method: 'PATCH', path: `/fhir/Patient/${c.body.id}`, headers: { 'Content-Type': 'application/json-patch+json' }, body: '[{"op":"add","path":"/__proto__/polluted","value":1}]' });
    expect(a.status).toBe(400);
    expect(code(a.text)).toBe('MSG_JSON_FORBIDDEN_KEY');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((await ctx.request.get(`/fhir/Patient/${c.body.id}`)).headers.etag).toBe('W/"1"');
  });
});

describe('bundle entry rules, checked before anything is written', () => {
  const create = (m: string, over: Record<string, unknown> = {}) => ({ fullUrl: `urn:uuid:${m}`, resource: patient('Bundle', ['B'], m), request: { method: 'POST', url: 'Patient' }, ...over });
  it.each([
    ['fullUrl that is not a string', (m: string) => [create(m, { fullUrl: 123 })], 'MSG_BUNDLE_FULLURL'],
    ['the same fullUrl twice', (m: string) => [create(m), create(`${m}-2`, { fullUrl: `urn:uuid:${m}` })], 'MSG_BUNDLE_FULLURL'],
    ['a PUT to a _history URL', (m: string) => [create(m), create(`${m}-2`, { resource: { ...patient(), id: 'x' }, request: { method: 'PUT', url: 'Patient/x/_history/1' } })], 'MSG_BUNDLE_URL'],
    ['a PUT whose resource has no id', (m: string) => [create(m), create(`${m}-2`, { request: { method: 'PUT', url: 'Patient/y' } })], 'MSG_RESOURCE_ID_MISSING'],
    ['a PUT whose resource has another id', (m: string) => [create(m), create(`${m}-2`, { resource: { ...patient(), id: 'z' }, request: { method: 'PUT', url: 'Patient/y' } })], 'MSG_RESOURCE_ID_MISMATCH'],
    ['more entries than BUNDLE_MAX_ENTRIES', (m: string) => Array.from({ length: 6 }, (_, i) => create(`${m}-${i}`)), 'MSG_LIMIT'],
  ])('%s', async (_what, entries, expected) => {
    const m = `bundle-${expected}-${Math.random().toString(36).slice(2)}`;
    const r = await postBundle(ctx, entries(m));
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.status).toBeLessThan(500);
    expect(r.body.issue[0].details.coding[0].code).toBe(expected);
    expect(await ctx.db.collection('Patient').countDocuments({ 'res.identifier.value': { $regex: `^${m}` } })).toBe(0);
  });
});

describe('bounded work', () => {
  it('a search over SEARCH_MAX_PARAMS is refused naming the setting', async () => {
    const a = await send(port, { method: 'GET', path: `/fhir/Patient?family=${Array.from({ length: 11 }, (_, i) => `f${i}`).join(',')}` });
    expect(a.status).toBe(400);
    expect(a.text).toContain('SEARCH_MAX_PARAMS');
  });

  it('a transaction past its deadline answers 503 and writes nothing', async () => {
    // A clock that jumps a minute per reading: the deadline has passed at the first check.
    let t = Date.parse('2026-01-01T00:00:00Z');
    const late = await createTestContext({ clock: () => new Date((t += 60_000)), env: { REQUEST_DEADLINE_MS: '1000' } });
    try {
      const r = await postBundle(late, [{ resource: patient('Late', ['L'], 'late-1'), request: { method: 'POST', url: 'Patient' } }]);
      expect(r.status).toBe(503);
      expect(r.body.issue[0].code).toBe('timeout');
      expect(await late.db.collection('Patient').countDocuments({ 'res.identifier.value': 'late-1' })).toBe(0);
    } finally {
      await late.close();
    }
  });
});

describe('Subscription criteria with malformed percent-encoding', () => {
  it('is a 400 naming the problem, and no Subscription is created', async () => {
    const before = await ctx.db.collection('Subscription').countDocuments({});
    const r = await ctx.request
      .post('/fhir/Subscription')
      .set('Content-Type', FHIR_JSON)
      .send({
        resourceType: 'Subscription',
        status: 'requested',
        reason: 'hostile criteria',
        criteria: 'Observation?%E0=1',
        channel: { type: 'rest-hook', endpoint: 'http://127.0.0.1:9/hook', payload: 'application/fhir+json' },
      });
    expect(r.status).toBe(400);
    expect(r.body.resourceType).toBe('OperationOutcome');
    expect(code(JSON.stringify(r.body))).toBe('MSG_PERCENT_ENCODING');
    expect(r.body.issue[0].diagnostics).toMatch(/criteria parameter name/);
    expect(await ctx.db.collection('Subscription').countDocuments({})).toBe(before);
  });
});
