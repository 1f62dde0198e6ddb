import { createHmac, createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import express from 'express';
import type { Observation } from 'fhir/r4';
import jwt from 'jsonwebtoken';
import { MongoClient, type Db } from 'mongodb';
import pino from 'pino';
import request from 'supertest';
import { AuthService } from '../../../src/auth';
import { ClientStore } from '../../../src/auth/clients';
import { KEYS_COLLECTION, removeKey, rotateKey, type SigningKeyDoc } from '../../../src/auth/keys';
import { hashSecret } from '../../../src/auth/secrets';
import { loadConfig, type Config } from '../../../src/config';
import { isFhirError } from '../../../src/errors';
import { TRUE, toMongo } from '../../../src/search/cond';
import { SearchService } from '../../../src/search/service';
import { ASSERTION_TYPE, assertion, b64url, basic, makeKey, serveJwks, VITALS, type TestKey } from './helpers';

const BASE = 'http://localhost:9999/fhir';
const TOKEN_URL = 'http://localhost:9999/auth/token';
const ISSUER = 'http://localhost:9999/auth';
const EXT_ISSUER = 'https://idp.hospital.example';

const rsKey = makeKey('RS384', 'rs-1');
const esKey = makeKey('ES384', 'es-1');
const strangerKey = makeKey('RS384', 'rs-1'); // same kid, different key
const extKey = makeKey('RS256', 'ext-1');
const GW_SECRET = 'gw-secret-' + randomBytes(12).toString('hex');

let client: MongoClient;
let db: Db;
let svc: AuthService;
let app: express.Express;
let jwksServer: Awaited<ReturnType<typeof serveJwks>>;
let extJwks: Awaited<ReturnType<typeof serveJwks>>;
let config: Config;
/** The real search engine: scope restrictions mean exactly what search means. */
let search: SearchService;
/** Shifts the service clock (cache expiry, key reloads) without touching token times. */
let skewMs = 0;

function tinyApp(service: AuthService): express.Express {
  const a = express();
  a.use(service.router());
  // A stand-in for the FHIR routes: authenticate, authorize, then query through the policy's filter.
  const guard =
    (fn: (req: express.Request, res: express.Response) => Promise<void>) => (req: express.Request, res: express.Response) =>
      fn(req, res).catch((e: unknown) => {
        if (!isFhirError(e)) throw e;
        res
          .status(e.status)
          .set(e.headers ?? {})
          .json({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: e.code, diagnostics: e.message, details: { coding: [{ code: e.messageCode }] } }] });
      });
  a.get(
    '/fhir/whoami',
    guard(async (req, res) => {
      const p = await service.authenticate(req.headers.authorization);
      res.json({ clientId: p.clientId, scopes: p.scopes, patient: p.patient, issuer: p.issuer });
    }),
  );
  a.get(
    '/fhir/Observation',
    guard(async (req, res) => {
      const p = await service.authenticate(req.headers.authorization);
      p.policy.assertAllowed('search', 'Observation');
      const docs = await db
        .collection('Observation')
        .find({ $and: [{ deleted: false }, toMongo(p.policy.readCond('Observation', 'search') ?? TRUE)] })
        .sort({ _id: 1 })
        .toArray();
      res.json(docs.map((d) => d._id));
    }),
  );
  a.get(
    '/fhir/Observation/:id',
    guard(async (req, res) => {
      const p = await service.authenticate(req.headers.authorization);
      p.policy.assertAllowed('read', 'Observation');
      const cond = p.policy.readCond('Observation', 'read') ?? TRUE;
      const doc = await db.collection('Observation').findOne({ $and: [{ _id: req.params.id as never, deleted: false }, toMongo(cond)] });
      if (!doc) {
        res.status(404).json({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] });
        return;
      }
      res.json(doc.res);
    }),
  );
  return a;
}

async function tokenFor(body: Record<string, string>, auth?: string): Promise<request.Response> {
  const r = request(app).post('/auth/token').type('form');
  if (auth) r.set('Authorization', auth);
  return r.send(body);
}

function assertionBody(key: TestKey, clientId: string, scope: string, over: Record<string, unknown> = {}, header = {}) {
  return {
    grant_type: 'client_credentials',
    scope,
    client_assertion_type: ASSERTION_TYPE,
    client_assertion: assertion(key, clientId, TOKEN_URL, over, header),
  };
}

async function serverKey(): Promise<{ kid: string; key: ReturnType<typeof createPrivateKey>; pem: string; publicPem: string }> {
  const doc = (await db.collection<SigningKeyDoc>(KEYS_COLLECTION).find().sort({ createdAt: -1 }).limit(1).toArray())[0];
  const key = createPrivateKey(doc.privatePem);
  return { kid: doc._id, key, pem: doc.privatePem, publicPem: createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString() };
}

/** An access token signed with the server's real key, with chosen claims. */
async function forgedByServer(over: Record<string, unknown>, alg: 'RS384' | 'RS256' = 'RS384'): Promise<string> {
  const k = await serverKey();
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = { iss: ISSUER, aud: BASE, sub: 'rs-client', client_id: 'rs-client', scope: 'system/*.read', iat: now, exp: now + 300, ...over };
  for (const key of Object.keys(claims)) if (claims[key] === undefined) delete claims[key];
  return jwt.sign(claims, k.key, { algorithm: alg, keyid: k.kid });
}

beforeAll(async () => {
  client = await MongoClient.connect(process.env.VIGIL_TEST_MONGODB_URI as string);
  db = client.db(`vigil_test_auth_token_${randomBytes(4).toString('hex')}`);
  jwksServer = await serveJwks([esKey.jwk]);
  extJwks = await serveJwks([extKey.jwk]);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-auth-'));
  const clientsFile = path.join(dir, 'clients.json');
  writeFileSync(
    clientsFile,
    JSON.stringify([
      { client_id: 'rs-client', name: 'RS384 backend', scope: 'system/Observation.rs system/Patient.rs system/Device.read', jwks: { keys: [rsKey.jwk] } },
      { client_id: 'es-client', name: 'ES384 backend via jwks_uri', scope: 'system/*.cruds', jwks_uri: jwksServer.url },
      { client_id: 'gw-1', name: 'Gateway of patient p1', scope: 'patient/Observation.cruds patient/Device.rs patient/Patient.r', client_secret: GW_SECRET, patient: 'p1' },
      { client_id: 'vitals-app', name: 'Vitals viewer', scope: `patient/Observation.rs?${VITALS}`, jwks: { keys: [rsKey.jwk] }, patient: 'p1' },
      { client_id: 'hashed', name: 'Hashed secret', scope: 'system/Device.rs', client_secret_hash: await hashSecret('hashed-secret-12345') },
      { client_id: 'off', name: 'Disabled', scope: 'system/*.rs', client_secret: 'off-secret-123456789', disabled: true },
    ]),
  );
  config = {
    ...loadConfig({ BASE_URL: BASE, SMART_CLIENTS_FILE: clientsFile }),
    externalIssuers: [{ issuer: EXT_ISSUER, audience: 'vigil-api', jwksUri: extJwks.url }],
  };
  search = await SearchService.create({ db, config, types: ['Patient', 'Device', 'Observation'] });
  svc = await AuthService.create({
    db,
    config,
    logger: pino({ level: 'silent' }),
    criteria: search,
    now: () => new Date(Date.now() + skewMs),
    tokenRate: { capacity: 1000, perSec: 100 },
  });
  app = tinyApp(svc);

  const obs = (id: string, subject: string, category: string): Observation => ({
    resourceType: 'Observation',
    id,
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: category }] }],
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
    subject: { reference: subject },
  });
  const docs = [obs('o1', 'Patient/p1', 'vital-signs'), obs('o2', 'Patient/p1', 'laboratory'), obs('o3', 'Patient/p2', 'vital-signs')];
  await db.collection('Observation').insertMany(
    docs.map((r) => ({ _id: r.id as never, res: r, vid: 1, ts: new Date(), deleted: false, ...search.index(r) })),
  );
});

afterAll(async () => {
  await svc?.close();
  await jwksServer?.close();
  await extJwks?.close();
  await db?.dropDatabase();
  await client?.close();
});

describe('discovery and JWKS', () => {
  it('serves the SMART configuration as JSON whatever the Accept header, with absolute URLs', async () => {
    const r = await request(app).get('/fhir/.well-known/smart-configuration').set('Accept', 'application/fhir+xml');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    // sso-openid-connect is offered (id_tokens), so the issuer is listed (SMART App Launch 2.x).
    expect(r.body.capabilities).toContain('sso-openid-connect');
    expect(r.body.issuer).toBe('http://localhost:9999/auth');
    expect(r.body).toMatchObject({
      token_endpoint: TOKEN_URL,
      jwks_uri: 'http://localhost:9999/auth/jwks',
      introspection_endpoint: 'http://localhost:9999/auth/introspect',
      grant_types_supported: ['authorization_code', 'client_credentials', 'refresh_token'],
      token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic', 'none'],
      token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
    });
    expect(r.body.capabilities).toEqual(expect.arrayContaining(['client-confidential-asymmetric', 'permission-v2']));
    expect(r.body.scopes_supported).toContain('system/*.rs');
  });

  it('publishes public signing keys only', async () => {
    const r = await request(app).get('/auth/jwks');
    expect(r.status).toBe(200);
    expect(r.body.keys.length).toBeGreaterThanOrEqual(1);
    for (const k of r.body.keys) {
      expect(k).toMatchObject({ kty: 'RSA', use: 'sig' });
      expect(k.alg).toBeUndefined();
      expect(typeof k.kid).toBe('string');
      expect(k.d).toBeUndefined();
      expect(k.p).toBeUndefined();
    }
  });

  it('describes itself for the CapabilityStatement', () => {
    const sec = svc.capabilitySecurity();
    expect(sec.service?.[0].coding?.[0]).toEqual({ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' });
    expect(sec.extension?.[0].extension).toEqual([
      { url: 'token', valueUri: TOKEN_URL },
      { url: 'authorize', valueUri: 'http://localhost:9999/auth/authorize' },
    ]);
  });
});

describe('backend services flow (private_key_jwt)', () => {
  it('issues an RS384 client a token that the API accepts and that verifies with the published JWKS', async () => {
    const r = await tokenFor(assertionBody(rsKey, 'rs-client', 'system/Observation.rs'));
    expect(r.status).toBe(200);
    expect(r.headers['cache-control']).toBe('no-store');
    expect(r.body).toEqual({ access_token: expect.any(String), token_type: 'bearer', expires_in: 300, scope: 'system/Observation.rs' });

    const jwks = (await request(app).get('/auth/jwks')).body;
    const header = JSON.parse(Buffer.from(r.body.access_token.split('.')[0], 'base64url').toString());
    const jwk = jwks.keys.find((k: { kid: string }) => k.kid === header.kid);
    const claims = jwt.verify(r.body.access_token, createPublicKey({ key: jwk, format: 'jwk' }), { algorithms: ['RS384'], audience: BASE, issuer: ISSUER }) as jwt.JwtPayload;
    expect(claims).toMatchObject({ sub: 'rs-client', client_id: 'rs-client', scope: 'system/Observation.rs' });

    const me = await request(app).get('/fhir/whoami').set('Authorization', `Bearer ${r.body.access_token}`);
    expect(me.status).toBe(200);
    expect(me.body).toEqual({ clientId: 'rs-client', scopes: ['system/Observation.rs'], issuer: ISSUER });
    const all = await request(app).get('/fhir/Observation').set('Authorization', `Bearer ${r.body.access_token}`);
    expect(all.body).toEqual(['o1', 'o2', 'o3']);
  });

  it('issues an ES384 client with a jwks_uri a token', async () => {
    const r = await tokenFor(assertionBody(esKey, 'es-client', 'system/Observation.cruds system/Patient.rs'));
    expect(r.status).toBe(200);
    expect(r.body.scope).toBe('system/Observation.cruds system/Patient.rs');
  });

  it('grants requested ∩ allowed, in the requested dialect', async () => {
    const r = await tokenFor(assertionBody(rsKey, 'rs-client', 'system/*.cruds launch/patient openid'));
    expect(r.status).toBe(200);
    expect(r.body.scope).toBe('system/Observation.rs system/Patient.rs system/Device.rs');
    const v1 = await tokenFor(assertionBody(rsKey, 'rs-client', 'system/*.*'));
    expect(v1.body.scope).toBe('system/Observation.read system/Patient.read system/Device.read');
  });

  const refusals: [string, () => Record<string, string>, RegExp][] = [
    ['a replayed jti', () => assertionBody(rsKey, 'rs-client', 'system/Observation.rs', { jti: 'fixed-jti-1' }), /replayed/],
    ['an unknown kid', () => assertionBody(rsKey, 'rs-client', 'system/Observation.rs', {}, { kid: 'nope' }), /no registered key with kid "nope"/],
    ['no kid', () => assertionBody(rsKey, 'rs-client', 'system/Observation.rs', {}, { kid: '' }), /must name the signing key/],
    ['a key that is not the registered one', () => assertionBody(strangerKey, 'rs-client', 'system/Observation.rs'), /invalid signature/],
    ['the wrong audience', () => ({ ...assertionBody(rsKey, 'rs-client', 'system/Observation.rs', { aud: 'http://localhost:9999/fhir' }) }), /wrong audience/],
    ['an expired assertion', () => assertionBody(rsKey, 'rs-client', 'system/Observation.rs', { exp: Math.floor(Date.now() / 1000) - 120 }), /expired/],
    ['an assertion valid for too long', () => assertionBody(rsKey, 'rs-client', 'system/Observation.rs', { exp: Math.floor(Date.now() / 1000) + 900 }), /at most five minutes/],
    ['a not-yet-valid assertion', () => assertionBody(rsKey, 'rs-client', 'system/Observation.rs', { nbf: Math.floor(Date.now() / 1000) + 120 }), /not yet valid/],
    ['an iat in the future', () => assertionBody(rsKey, 'rs-client', 'system/Observation.rs', { iat: Math.floor(Date.now() / 1000) + 600 }), /iat is in the future/],
    ['no exp', () => assertionBody(rsKey, 'rs-client', 'system/Observation.rs', { exp: undefined }), /no exp/],
    ['no jti', () => assertionBody(rsKey, 'rs-client', 'system/Observation.rs', { jti: undefined }), /jti is missing/],
    ['iss different from sub', () => assertionBody(rsKey, 'rs-client', 'system/Observation.rs', { sub: 'es-client' }), /iss and sub/],
    ['an unknown client', () => assertionBody(rsKey, 'nobody', 'system/Observation.rs'), /unknown client/],
    ['a secret client using an assertion', () => assertionBody(rsKey, 'gw-1', 'patient/Observation.rs'), /unknown client or client without registered keys/],
    ['RS256 instead of RS384/ES384', () => assertionBody(makeKey('RS256', 'rs-1'), 'rs-client', 'system/Observation.rs'), /RS256 is not accepted/],
    [
      'alg none',
      () => ({
        grant_type: 'client_credentials',
        scope: 'system/Observation.rs',
        client_assertion_type: ASSERTION_TYPE,
        client_assertion: `${b64url({ alg: 'none', kid: 'rs-1' })}.${b64url({ iss: 'rs-client', sub: 'rs-client', aud: TOKEN_URL, exp: Math.floor(Date.now() / 1000) + 60, jti: 'n1' })}.`,
      }),
      /alg none/,
    ],
    [
      'HS256 signed with the client public key',
      () => {
        const pem = rsKey.publicKey.export({ type: 'spki', format: 'pem' }).toString();
        const head = b64url({ alg: 'HS256', kid: 'rs-1' });
        const body = b64url({ iss: 'rs-client', sub: 'rs-client', aud: TOKEN_URL, exp: Math.floor(Date.now() / 1000) + 60, jti: 'h1' });
        return {
          grant_type: 'client_credentials',
          scope: 'system/Observation.rs',
          client_assertion_type: ASSERTION_TYPE,
          client_assertion: `${head}.${body}.${createHmac('sha256', pem).update(`${head}.${body}`).digest('base64url')}`,
        };
      },
      /HS256 is not accepted/,
    ],
    ['a malformed assertion', () => ({ grant_type: 'client_credentials', scope: 'system/Observation.rs', client_assertion_type: ASSERTION_TYPE, client_assertion: 'abc.def' }), /malformed token/],
    ['a wrong assertion type', () => ({ ...assertionBody(rsKey, 'rs-client', 'system/Observation.rs'), client_assertion_type: 'urn:x' }), /client_assertion_type must be/],
    ['no client authentication', () => ({ grant_type: 'client_credentials', scope: 'system/Observation.rs' }), /client authentication required/],
    ['client_secret_post', () => ({ grant_type: 'client_credentials', scope: 'system/Observation.rs', client_id: 'gw-1', client_secret: GW_SECRET }), /client_secret_post is not supported/],
  ];

  it.each(refusals)('refuses %s with 401 invalid_client', async (_name, body, reason) => {
    const b = body();
    if (_name === 'a replayed jti') expect((await tokenFor(b)).status).toBe(200);
    const again = _name === 'a replayed jti' ? { ...b } : b;
    const r = await tokenFor(again);
    expect(r.status).toBe(401);
    expect(r.headers['cache-control']).toBe('no-store');
    expect(r.body.error).toBe('invalid_client');
    expect(r.body.error_description).toMatch(reason);
  });

  it('does not let a refused assertion burn its jti', async () => {
    const jti = 'burn-' + randomBytes(4).toString('hex');
    const bad = await tokenFor(assertionBody(strangerKey, 'rs-client', 'system/Observation.rs', { jti }));
    expect(bad.status).toBe(401);
    const good = await tokenFor(assertionBody(rsKey, 'rs-client', 'system/Observation.rs', { jti }));
    expect(good.status).toBe(200);
  });

  it.each([
    ['write when only read is allowed', 'system/Observation.cud', /none of the requested scopes is allowed/],
    ['a type that is not allowed', 'system/Practitioner.read', /none of the requested/],
    ['patient/ scopes without a fixed patient', 'patient/Observation.rs', /none of the requested/],
    ['a malformed scope', 'system/Observation.xyz', /Malformed scope/],
    ['a restriction the search engine refuses', 'system/Observation.rs?bogus=1', /scope restriction refused: .*bogus/],
    ['no scope at all', '', /scope is required/],
  ])('refuses %s with 400 invalid_scope', async (_name, scope, reason) => {
    const r = await tokenFor(assertionBody(rsKey, 'rs-client', scope));
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_scope');
    expect(r.body.error_description).toMatch(reason);
  });

  it('never grants more than allowed: escalation mixed with allowed scopes is narrowed', async () => {
    const r = await tokenFor(assertionBody(rsKey, 'rs-client', 'system/Observation.cruds system/Patient.*'));
    expect(r.status).toBe(200);
    expect(r.body.scope).toBe('system/Observation.rs system/Patient.read');
  });

  it.each([
    [{ scope: 'system/Observation.rs' }, 400, 'invalid_request', /grant_type is required/],
    [{ grant_type: 'password', scope: 'system/Observation.rs' }, 400, 'unsupported_grant_type', /password is not supported/],
    [{ grant_type: 'implicit' }, 400, 'unsupported_grant_type', /not supported/],
    [{ grant_type: 'authorization_code' }, 401, 'invalid_client', /client_id is required/],
  ])('answers OAuth errors for bad grant types %#', async (body, status, error, reason) => {
    const r = await tokenFor(body as Record<string, string>);
    expect(r.status).toBe(status);
    expect(r.body.error).toBe(error);
    expect(r.body.error_description).toMatch(reason);
  });

  it('refuses non-form bodies and repeated parameters', async () => {
    const json = await request(app).post('/auth/token').send({ grant_type: 'client_credentials' });
    expect(json.status).toBe(400);
    expect(json.body).toEqual({ error: 'invalid_request', error_description: 'the request body must be application/x-www-form-urlencoded' });
    const dup = await request(app).post('/auth/token').type('form').send('grant_type=client_credentials&grant_type=client_credentials');
    expect(dup.status).toBe(400);
    expect(dup.body.error_description).toBe('parameter grant_type given more than once');
    const many = await request(app)
      .post('/auth/token')
      .type('form')
      .send(Array.from({ length: 60 }, (_, i) => `p${i}=x`).join('&'));
    expect(many.status).toBe(400);
    expect(many.body.error).toBe('invalid_request');
    const huge = await request(app).post('/auth/token').type('form').send(`grant_type=client_credentials&scope=${'x'.repeat(70_000)}`);
    expect(huge.status).toBe(400);
    expect(huge.body).toEqual({ error: 'invalid_request', error_description: 'request body too large' });
  });
});

describe('client_secret_basic', () => {
  it('issues a gateway token with its fixed patient', async () => {
    const r = await tokenFor({ grant_type: 'client_credentials', scope: 'patient/Observation.c patient/Device.rs system/*.*' }, basic('gw-1', GW_SECRET));
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ access_token: expect.any(String), token_type: 'bearer', expires_in: 300, scope: 'patient/Observation.c patient/Device.rs', patient: 'p1' });
  });

  it('accepts a secret registered only as a hash', async () => {
    const r = await tokenFor({ grant_type: 'client_credentials', scope: 'system/Device.rs' }, basic('hashed', 'hashed-secret-12345'));
    expect(r.status).toBe(200);
  });

  it.each([
    ['a wrong secret', basic('gw-1', GW_SECRET + 'x'), /unknown client or wrong secret/],
    ['an unknown client', basic('ghost', GW_SECRET), /unknown client or wrong secret/],
    ['a key-based client', basic('rs-client', GW_SECRET), /unknown client or wrong secret/],
    ['a disabled client', basic('off', 'off-secret-123456789'), /client is disabled/],
    ['malformed credentials', 'Basic !!!', /malformed HTTP Basic credentials/],
  ])('refuses %s with 401 and a Basic challenge', async (_n, auth, reason) => {
    const r = await tokenFor({ grant_type: 'client_credentials', scope: 'patient/Observation.rs' }, auth);
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toBe('Basic realm="vigil"');
    expect(r.body.error).toBe('invalid_client');
    expect(r.body.error_description).toMatch(reason);
  });

  it('refuses a client_id that contradicts the Basic credentials', async () => {
    const r = await tokenFor({ grant_type: 'client_credentials', scope: 'patient/Observation.rs', client_id: 'hashed' }, basic('gw-1', GW_SECRET));
    expect(r.status).toBe(400);
    expect(r.body).toEqual({ error: 'invalid_request', error_description: 'client_id does not match the HTTP Basic credentials' });
    const same = await tokenFor({ grant_type: 'client_credentials', scope: 'patient/Observation.rs', client_id: 'gw-1' }, basic('gw-1', GW_SECRET));
    expect(same.status).toBe(200);
  });

  it('refuses two authentication methods at once', async () => {
    const r = await tokenFor(assertionBody(rsKey, 'rs-client', 'system/Observation.rs'), basic('gw-1', GW_SECRET));
    expect(r.status).toBe(400);
    expect(r.body).toEqual({ error: 'invalid_request', error_description: 'use exactly one client authentication method' });
  });
});

describe('bearer token verification', () => {
  let good: string;
  beforeAll(async () => {
    good = (await tokenFor(assertionBody(rsKey, 'rs-client', 'system/Observation.rs'))).body.access_token;
  });

  async function expect401(auth: string | undefined, reason: RegExp): Promise<void> {
    const r = request(app).get('/fhir/whoami');
    if (auth !== undefined) r.set('Authorization', auth);
    const res = await r;
    expect(res.status).toBe(401);
    // RFC 6750 section 3.1: no credentials, no error code; refused credentials, invalid_token.
    if (auth === undefined) expect(res.headers['www-authenticate']).toBe('Bearer');
    else expect(res.headers['www-authenticate']).toMatch(/^Bearer error="invalid_token", error_description="/);
    expect(res.body.issue[0].code).toBe('login');
    expect(res.body.issue[0].diagnostics).toMatch(reason);
    expect(res.body.issue[0].diagnostics).not.toContain(good.slice(0, 20));
  }

  it('401s a missing or non-Bearer Authorization header', async () => {
    await expect401(undefined, /Authentication required/);
    await expect401(basic('gw-1', GW_SECRET), /must be "Bearer <access token>"/);
    await expect401('Bearer', /must be "Bearer <access token>"/);
  });

  it('401s malformed tokens', async () => {
    await expect401('Bearer abc', /malformed token/);
    await expect401('Bearer a.b.c', /malformed token/);
  });

  it('401s expired, not-yet-valid, wrong-audience and wrong-issuer tokens signed by our own key', async () => {
    const now = Math.floor(Date.now() / 1000);
    await expect401(`Bearer ${await forgedByServer({ exp: now - 120, iat: now - 420 })}`, /token expired/);
    await expect401(`Bearer ${await forgedByServer({ nbf: now + 300 })}`, /not yet valid/);
    await expect401(`Bearer ${await forgedByServer({ aud: 'http://other/fhir' })}`, /wrong audience/);
    await expect401(`Bearer ${await forgedByServer({ iss: 'http://evil/auth' })}`, /issuer is not trusted/);
    await expect401(`Bearer ${await forgedByServer({ exp: undefined })}`, /no exp/);
    await expect401(`Bearer ${await forgedByServer({}, 'RS256')}`, /RS256 is not accepted/);
  });

  it('401s unsigned tokens and HS256 tokens signed with our public key', async () => {
    const k = await serverKey();
    const now = Math.floor(Date.now() / 1000);
    const body = b64url({ iss: ISSUER, aud: BASE, sub: 'rs-client', scope: 'system/*.*', exp: now + 60 });
    await expect401(`Bearer ${b64url({ alg: 'none', kid: k.kid })}.${body}.`, /alg none/);
    const head = b64url({ alg: 'HS256', kid: k.kid, typ: 'JWT' });
    const sig = createHmac('sha256', k.publicPem).update(`${head}.${body}`).digest('base64url');
    await expect401(`Bearer ${head}.${body}.${sig}`, /HS256 is not accepted/);
  });

  it('401s a tampered token, a foreign signature and an unknown kid', async () => {
    const [h, , s] = good.split('.');
    const now = Math.floor(Date.now() / 1000);
    const escalated = b64url({ iss: ISSUER, aud: BASE, sub: 'rs-client', client_id: 'rs-client', scope: 'system/*.*', exp: now + 60 });
    await expect401(`Bearer ${h}.${escalated}.${s}`, /invalid signature/);
    const k = await serverKey();
    const foreign = jwt.sign({ iss: ISSUER, aud: BASE, sub: 'x', exp: now + 60 }, rsKey.privateKey, { algorithm: 'RS384', keyid: k.kid });
    await expect401(`Bearer ${foreign}`, /invalid signature/);
    const unknownKid = jwt.sign({ iss: ISSUER, aud: BASE, sub: 'x', exp: now + 60 }, rsKey.privateKey, { algorithm: 'RS384', keyid: 'rs-1' });
    await expect401(`Bearer ${unknownKid}`, /unknown signing key/);
  });

  it('ends the tokens of a disabled client', async () => {
    const t = (await tokenFor({ grant_type: 'client_credentials', scope: 'system/Device.rs' }, basic('hashed', 'hashed-secret-12345'))).body.access_token;
    expect((await request(app).get('/fhir/whoami').set('Authorization', `Bearer ${t}`)).status).toBe(200);
    await new ClientStore(db).setDisabled('hashed', true, new Date());
    skewMs += 31_000; // past the disabled-client cache
    await expect401(`Bearer ${t}`, /client has been disabled/);
    await new ClientStore(db).setDisabled('hashed', false, new Date());
    skewMs += 31_000;
    expect((await request(app).get('/fhir/whoami').set('Authorization', `Bearer ${t}`)).status).toBe(200);
  });
});

describe('external issuers', () => {
  const now = () => Math.floor(Date.now() / 1000);
  const ext = (over: Record<string, unknown>, key = extKey, alg: jwt.Algorithm = 'RS256') =>
    jwt.sign({ iss: EXT_ISSUER, aud: 'vigil-api', sub: 'nurse-7', azp: 'ward-app', exp: now() + 300, scp: ['user/Observation.rs'], ...over }, key.privateKey, { algorithm: alg, keyid: key.kid });

  it('accepts tokens of a configured issuer with the same scope semantics', async () => {
    const r = await request(app).get('/fhir/whoami').set('Authorization', `Bearer ${ext({})}`);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ clientId: 'ward-app', scopes: ['user/Observation.rs'], issuer: EXT_ISSUER });
    const patientToken = ext({ scp: undefined, scope: `patient/Observation.rs?${VITALS}`, patient: 'p1' });
    const list = await request(app).get('/fhir/Observation').set('Authorization', `Bearer ${patientToken}`);
    expect(list.body).toEqual(['o1']);
  });

  it('refuses them with the wrong audience, key or issuer', async () => {
    for (const [token, reason] of [
      [ext({ aud: BASE }), /wrong audience/],
      [ext({}, makeKey('RS256', 'ext-1')), /invalid signature/],
      [ext({}, makeKey('RS256', 'ext-2')), /no key of issuer/],
      [ext({ iss: 'https://idp.other.example' }), /issuer is not trusted/],
      [ext({ exp: now() - 100 }), /expired/],
    ] as const) {
      const r = await request(app).get('/fhir/whoami').set('Authorization', `Bearer ${token}`);
      expect(r.status).toBe(401);
      expect(r.body.issue[0].diagnostics).toMatch(reason);
    }
  });
});

describe('scopes become filters on the real database', () => {
  it('limits a patient/ v2 restricted token to its patient and category', async () => {
    const r = await tokenFor(assertionBody(rsKey, 'vitals-app', 'patient/Observation.rs'));
    expect(r.body).toMatchObject({ scope: `patient/Observation.rs?${VITALS}`, patient: 'p1' });
    const auth = `Bearer ${r.body.access_token}`;
    expect((await request(app).get('/fhir/Observation').set('Authorization', auth)).body).toEqual(['o1']);
    expect((await request(app).get('/fhir/Observation/o1').set('Authorization', auth)).status).toBe(200);
    // Other patient's data and other categories look exactly like missing resources.
    for (const id of ['o2', 'o3', 'nope']) {
      const x = await request(app).get(`/fhir/Observation/${id}`).set('Authorization', auth);
      expect(x.status).toBe(404);
    }
  });

  it('answers 403 with an OperationOutcome when the scope is missing', async () => {
    const r = await tokenFor({ grant_type: 'client_credentials', scope: 'patient/Device.rs' }, basic('gw-1', GW_SECRET));
    const x = await request(app).get('/fhir/Observation').set('Authorization', `Bearer ${r.body.access_token}`);
    expect(x.status).toBe(403);
    expect(x.body.issue[0]).toMatchObject({ code: 'forbidden', details: { coding: [{ code: 'MSG_AUTH_SCOPE' }] } });
    expect(x.body.issue[0].diagnostics).toMatch(/does not permit search on Observation/);
  });
});

describe('introspection (RFC 7662)', () => {
  it('describes an active token to an authenticated client', async () => {
    const t = (await tokenFor({ grant_type: 'client_credentials', scope: 'patient/Observation.rs' }, basic('gw-1', GW_SECRET))).body.access_token;
    const r = await request(app).post('/auth/introspect').type('form').set('Authorization', basic('gw-1', GW_SECRET)).send({ token: t });
    expect(r.status).toBe(200);
    expect(r.headers['cache-control']).toBe('no-store');
    expect(r.body).toMatchObject({ active: true, scope: 'patient/Observation.rs', client_id: 'gw-1', patient: 'p1', iss: ISSUER, aud: BASE, token_type: 'Bearer' });
    expect(r.body.exp).toEqual(expect.any(Number));
  });

  it('says active:false for tokens it would not accept', async () => {
    for (const token of ['garbage', await forgedByServer({ exp: Math.floor(Date.now() / 1000) - 100 })]) {
      const r = await request(app).post('/auth/introspect').type('form').set('Authorization', basic('gw-1', GW_SECRET)).send({ token });
      expect(r.body).toEqual({ active: false });
    }
  });

  it('accepts a bearer token or a client assertion as the caller credential, and refuses anonymous callers', async () => {
    const t = (await tokenFor(assertionBody(rsKey, 'rs-client', 'system/Observation.rs'))).body.access_token;
    const viaBearer = await request(app).post('/auth/introspect').type('form').set('Authorization', `Bearer ${t}`).send({ token: t });
    expect(viaBearer.body.active).toBe(true);
    const viaAssertion = await request(app)
      .post('/auth/introspect')
      .type('form')
      .send({ token: t, client_assertion_type: ASSERTION_TYPE, client_assertion: assertion(rsKey, 'rs-client', TOKEN_URL) });
    expect(viaAssertion.body.active).toBe(true);
    const anon = await request(app).post('/auth/introspect').type('form').send({ token: t });
    expect(anon.status).toBe(401);
    expect(anon.body.error).toBe('invalid_client');
    const noToken = await request(app).post('/auth/introspect').type('form').set('Authorization', basic('gw-1', GW_SECRET)).send({});
    expect(noToken.status).toBe(400);
    expect(noToken.body).toEqual({ error: 'invalid_request', error_description: 'token is required' });
  });
});

describe('key rotation', () => {
  it('signs with the new key while old tokens keep verifying until their key is removed', async () => {
    const before = (await tokenFor(assertionBody(rsKey, 'rs-client', 'system/Observation.rs'))).body.access_token;
    const oldKid = JSON.parse(Buffer.from(before.split('.')[0], 'base64url').toString()).kid;
    const newKid = await rotateKey(db, new Date(Date.now() + skewMs + 1000));
    skewMs += 61_000; // instances reload the key ring every minute
    const after = (await tokenFor(assertionBody(rsKey, 'rs-client', 'system/Observation.rs'))).body.access_token;
    expect(JSON.parse(Buffer.from(after.split('.')[0], 'base64url').toString()).kid).toBe(newKid);
    const kids = (await request(app).get('/auth/jwks')).body.keys.map((k: { kid: string }) => k.kid);
    expect(kids).toEqual(expect.arrayContaining([oldKid, newKid]));
    expect((await request(app).get('/fhir/whoami').set('Authorization', `Bearer ${before}`)).status).toBe(200);
    expect((await request(app).get('/fhir/whoami').set('Authorization', `Bearer ${after}`)).status).toBe(200);

    expect(await removeKey(db, oldKid)).toBe(true);
    skewMs += 61_000;
    const gone = await request(app).get('/fhir/whoami').set('Authorization', `Bearer ${before}`);
    expect(gone.status).toBe(401);
    expect(gone.body.issue[0].diagnostics).toMatch(/unknown signing key/);
    expect((await request(app).get('/fhir/whoami').set('Authorization', `Bearer ${after}`)).status).toBe(200);
  });
});

describe('rate limit', () => {
  it('answers 429 with Retry-After once a client exceeds its budget', async () => {
    const limited = await AuthService.create({ db, config, logger: pino({ level: 'silent' }), criteria: search, tokenRate: { capacity: 2, perSec: 0.01 } });
    const a = tinyApp(limited);
    const send = () => request(a).post('/auth/token').type('form').set('Authorization', basic('hashed', 'hashed-secret-12345')).send({ grant_type: 'client_credentials', scope: 'system/Device.rs' });
    expect((await send()).status).toBe(200);
    expect((await send()).status).toBe(200);
    const r = await send();
    expect(r.status).toBe(429);
    expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
    expect(r.body.error_description).toMatch(/too many token requests/);
    // Another client is not affected.
    const other = await request(a).post('/auth/token').type('form').set('Authorization', basic('gw-1', GW_SECRET)).send({ grant_type: 'client_credentials', scope: 'patient/Device.rs' });
    expect(other.status).toBe(200);
    await limited.close();
  });
});
