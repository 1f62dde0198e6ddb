import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JsonWebKey } from 'node:crypto';
import { RemoteJwks, assertFetchableUrl } from '../../../src/auth/jwks';
import { JwtError } from '../../../src/auth/jwt';
import { makeKey } from './helpers';

/** A key set server whose answer the test changes: keys, or an HTTP failure. */
async function mutableJwks() {
  const state: { keys: JsonWebKey[]; fail: boolean; hits: number } = { keys: [], fail: false, hits: 0 };
  const srv = http.createServer((_req, res) => {
    state.hits++;
    if (state.fail) {
      res.statusCode = 503;
      res.end();
      return;
    }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: state.keys }));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { state, url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/jwks`, close: () => new Promise<void>((r) => srv.close(() => r())) };
}

describe('RemoteJwks', () => {
  const k1 = makeKey('RS384', 'k1');
  const k2 = makeKey('ES384', 'k2');
  let server: Awaited<ReturnType<typeof mutableJwks>>;
  let t = 1_000_000;
  beforeEach(async () => {
    server = await mutableJwks();
    t = 1_000_000;
  });
  afterEach(() => server.close());

  it('caches the key set and refetches for an unknown kid at most every 10 s', async () => {
    server.state.keys = [k1.jwk];
    const jwks = new RemoteJwks(server.url, { now: () => t });
    expect(await jwks.key({ alg: 'RS384', kid: 'k1' }, false)).toBeDefined();
    expect(await jwks.key({ alg: 'RS384', kid: 'k1' }, false)).toBeDefined();
    expect(server.state.hits).toBe(1);
    // The issuer rotates: k2 appears. A request for it refetches once...
    t += 10_000;
    server.state.keys = [k1.jwk, k2.jwk];
    expect(await jwks.key({ alg: 'ES384', kid: 'k2' }, false)).toBeDefined();
    expect(server.state.hits).toBe(2);
    // ...and a stream of bogus kids does not hammer the issuer.
    for (let i = 0; i < 5; i++) expect(await jwks.key({ alg: 'RS384', kid: `bogus-${i}` }, false)).toBeUndefined();
    expect(server.state.hits).toBe(2);
    t += 10_000;
    expect(await jwks.key({ alg: 'RS384', kid: 'bogus' }, false)).toBeUndefined();
    expect(server.state.hits).toBe(3);
  });

  it('keeps the last good key set when the issuer fails, and says so when it never had one', async () => {
    server.state.keys = [k1.jwk];
    const jwks = new RemoteJwks(server.url, { now: () => t, maxAgeMs: 1000 });
    expect(await jwks.key({ alg: 'RS384', kid: 'k1' }, false)).toBeDefined();
    server.state.fail = true;
    t += 5000;
    expect(await jwks.key({ alg: 'RS384', kid: 'k1' }, false)).toBeDefined();

    const fresh = new RemoteJwks(server.url, { now: () => t });
    const hits = server.state.hits;
    await expect(fresh.key({ alg: 'RS384', kid: 'k1' }, false)).rejects.toThrow(JwtError);
    await expect(fresh.key({ alg: 'RS384', kid: 'k1' }, false)).rejects.toThrow(/could not fetch the key set: HTTP 503/);
    // A down issuer is asked again only after the refresh interval, not on every request.
    expect(server.state.hits).toBe(hits + 1);
    server.state.fail = false;
    t += 10_000;
    expect(await fresh.key({ alg: 'RS384', kid: 'k1' }, false)).toBeDefined();
  });

  it('refuses plain http except on loopback', () => {
    expect(() => assertFetchableUrl('http://idp.example.org/jwks')).toThrow(/must use https/);
    expect(() => assertFetchableUrl('not a url')).toThrow(/not an absolute URL/);
    expect(() => assertFetchableUrl('https://idp.example.org/jwks')).not.toThrow();
    expect(() => assertFetchableUrl('http://localhost:8080/jwks')).not.toThrow();
  });
});
