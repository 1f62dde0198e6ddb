import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createTestContext, type TestContext } from '../support/context';

/**
 * ig/CapabilityStatement-vigil.json is the published snapshot of what GET /metadata generates
 * (with auth on, as deployed). This test keeps the two equal: after a change that alters the
 * server's capabilities, regenerate it with `UPDATE_IG=1 npx jest test/integration/ig-capability`.
 */
const FILE = path.resolve(__dirname, '..', '..', 'ig', 'CapabilityStatement-vigil.json');
const BASE = 'http://localhost:8080/fhir';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext({ auth: true, env: { BASE_URL: BASE } });
});
afterAll(async () => {
  await ctx.close();
});

/** Fields that depend on the instance, not on what the software can do. */
function portable(cs: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...cs, id: 'vigil', date: '2026-01-01T00:00:00Z' };
  delete out.version;
  delete out.software;
  return out;
}

it('ig/CapabilityStatement-vigil.json matches what /metadata generates', async () => {
  const res = await ctx.request.get('/fhir/metadata');
  expect(res.status).toBe(200);
  const generated = portable(res.body as Record<string, unknown>);
  if (process.env.UPDATE_IG === '1' || !existsSync(FILE)) {
    writeFileSync(FILE, JSON.stringify(generated, null, 2) + '\n');
  }
  const shipped = JSON.parse(readFileSync(FILE, 'utf8')) as Record<string, unknown>;
  expect(generated).toEqual(shipped);
});
