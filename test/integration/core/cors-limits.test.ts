import { loadConfig } from '../../../src/config';
import { createTestContext, FHIR_JSON, patient, type TestContext } from '../../support/context';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext({ env: { CORS_ORIGINS: 'https://dashboard.example.org', BODY_LIMIT: '2kb', JSON_MAX_DEPTH: '8' } });
});
afterAll(async () => {
  await ctx.close();
});

describe('configurable CORS and limits', () => {
  it('answers preflights and exposes headers to allowed origins only', async () => {
    const pre = await ctx.request
      .options('/fhir/Patient')
      .set('Origin', 'https://dashboard.example.org')
      .set('Access-Control-Request-Method', 'POST');
    expect(pre.status).toBe(204);
    expect(pre.headers['access-control-allow-origin']).toBe('https://dashboard.example.org');
    expect(pre.headers['access-control-allow-headers']).toMatch(/Authorization/);
    const get = await ctx.request.get('/fhir/metadata').set('Origin', 'https://dashboard.example.org');
    expect(get.headers['access-control-expose-headers']).toMatch(/ETag/);
    const other = await ctx.request.get('/fhir/metadata').set('Origin', 'https://evil.example.com');
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('applies the configured body size and nesting limits', async () => {
    const big = await ctx.request
      .post('/fhir/Patient')
      .set('Content-Type', FHIR_JSON)
      .send(JSON.stringify({ ...patient(), name: [{ family: 'x'.repeat(4096) }] }));
    expect(big.status).toBe(413);
    expect(big.body.resourceType).toBe('OperationOutcome');
    const deep = await ctx.request
      .post('/fhir/Patient')
      .set('Content-Type', FHIR_JSON)
      .send(JSON.stringify({ ...patient(), extension: [{ url: 'http://x', extension: [{ url: 'http://y', extension: [{ url: 'http://z', valueCodeableConcept: { coding: [{ code: 'a' }] } }] }] }] }));
    expect(deep.status).toBe(400);
    expect(deep.body.issue[0].diagnostics).toMatch(/deeper than 8/);
    const ok = await ctx.request.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(JSON.stringify(patient()));
    expect(ok.status).toBe(201);
  });
});

describe('configuration errors', () => {
  it('refuses bad settings with a message naming them', () => {
    expect(() => loadConfig({ PORT: 'eighty' })).toThrow(/PORT/);
    expect(() => loadConfig({ BODY_LIMIT: 'huge' })).toThrow(/BODY_LIMIT/);
    expect(() => loadConfig({ AUTH_ENABLED: 'maybe' })).toThrow(/AUTH_ENABLED/);
    expect(() => loadConfig({ BASE_URL: 'ftp://x' })).toThrow(/BASE_URL/);
    expect(() => loadConfig({ TLS_CERT_FILE: '/x' })).toThrow(/TLS_KEY_FILE/);
    expect(loadConfig({}).authEnabled).toBe(true);
  });
});
