import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import smart from 'fhirclient';
import { click, signIn, startChromium, type TestBrowser } from '../../support/chromium';
import { ehrLaunch, smartWorld, type SmartWorld } from './smart-helpers';

/**
 * A real SMART client library, unmodified: fhirclient's server-side (Node) API runs an app that
 * a real browser visits. It discovers the endpoints, sends the user through our pages with PKCE,
 * exchanges the code and reads the patient, as a public app, a client_secret_basic app and a
 * private_key_jwt app, standalone and EHR launch.
 */
let w: SmartWorld;
let chromium: TestBrowser;
let app: http.Server;
let appOrigin = '';
const secret = `fc-secret-${Date.now()}-0123456789`;
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const privateJwk = { ...privateKey.export({ format: 'jwk' }), kid: 'fc-1', alg: 'ES384' };
const publicJwk = { ...publicKey.export({ format: 'jwk' }), kid: 'fc-1', alg: 'ES384', use: 'sig' };

/** fhirclient keeps its state in a storage object; one Map per app is all a test needs. */
const stores = new Map<string, Map<string, unknown>>();
function storage(name: string) {
  const m = stores.get(name) ?? new Map<string, unknown>();
  stores.set(name, m);
  return {
    get: async (k: string) => m.get(k),
    set: async (k: string, v: unknown) => {
      m.set(k, v);
      return v;
    },
    unset: async (k: string) => m.delete(k),
  };
}

const CLIENTS: Record<string, Record<string, unknown>> = {
  'fc-public': {},
  'fc-secret': { clientSecret: secret },
  'fc-jwt': { clientPrivateJwk: privateJwk },
};
const SCOPE = 'launch/patient openid fhirUser patient/Patient.rs patient/Observation.rs';

/** The app: /launch/<client> starts the flow, /callback/<client> finishes it and shows the patient. */
async function startApp(): Promise<void> {
  app = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const [, step, name] = u.pathname.split('/');
    const opts = CLIENTS[name];
    if (!opts) {
      res.statusCode = 404;
      res.end();
      return;
    }
    const s = smart(req, res, storage(name));
    const run = async () => {
      if (step === 'launch') {
        const launch = u.searchParams.get('launch');
        await s.authorize({
          clientId: name,
          scope: launch ? 'launch openid fhirUser patient/Patient.rs' : SCOPE,
          redirectUri: `/callback/${name}`,
          iss: u.searchParams.get('iss') ?? w.fhirBase,
          ...(launch ? { launch } : {}),
          pkceMode: 'required',
          ...opts,
        });
        return;
      }
      const client = await s.ready();
      const pat = (await client.patient.read()) as { id: string; name?: { family?: string }[] };
      const fhirUser = client.getFhirUser();
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(`<!DOCTYPE html><p id="patient">${pat.id}</p><p id="family">${pat.name?.[0]?.family ?? ''}</p><p id="fhir-user">${fhirUser ?? ''}</p>`);
    };
    run().catch((e: unknown) => {
      res.statusCode = 500;
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(`<!DOCTYPE html><p id="failed">${String((e as Error).message).replace(/</g, '&lt;')}</p>`);
    });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  appOrigin = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  await startApp();
  const common = { scope: 'launch launch/patient openid fhirUser patient/Patient.rs patient/Observation.rs' };
  w = await smartWorld({
    extraClients: () => [
      { client_id: 'fc-public', name: 'fhirclient public', ...common, redirect_uris: [`${appOrigin}/callback/fc-public`], token_endpoint_auth_method: 'none' },
      { client_id: 'fc-secret', name: 'fhirclient secret', ...common, redirect_uris: [`${appOrigin}/callback/fc-secret`], client_secret: secret },
      { client_id: 'fc-jwt', name: 'fhirclient jwt', ...common, redirect_uris: [`${appOrigin}/callback/fc-jwt`], jwks: { keys: [publicJwk] } },
    ],
  });
  chromium = await startChromium();
}, 60_000);
afterAll(async () => {
  await chromium?.close();
  await w?.close();
  await new Promise<void>((r) => {
    app?.closeAllConnections();
    app ? app.close(() => r()) : r();
  });
});

/** A person opens the app, signs in and allows; returns what the app shows. */
async function visit(url: string, username: string, pick?: { name: string; id: string }): Promise<{ patient: string; fhirUser: string; failed?: string }> {
  return chromium.withPage(async (page) => {
    await signIn(page, url, { username, password: w.users.password }, pick);
    await click(page, '#allow');
    await page.waitForSelector('#patient, #failed');
    const text = async (sel: string) => ((await page.$(sel)) ? ((await page.$eval(sel, (e) => e.textContent)) ?? '') : '');
    const failed = await text('#failed');
    return { patient: await text('#patient'), fhirUser: await text('#fhir-user'), ...(failed ? { failed } : {}) };
  });
}

it.each(['fc-public', 'fc-secret', 'fc-jwt'])('%s: standalone launch of a Patient user completes and reads their Patient', async (name) => {
  const r = await visit(`${appOrigin}/launch/${name}`, w.users.patient);
  expect(r).toEqual({ patient: w.patients.mine, fhirUser: `Patient/${w.patients.mine}` });
});

it('fc-public: a Practitioner picks a patient', async () => {
  const r = await visit(`${appOrigin}/launch/fc-public`, w.users.practitioner, { name: 'Olga', id: w.patients.other });
  expect(r).toEqual({ patient: w.patients.other, fhirUser: `Practitioner/${w.practitioner}` });
});

it('fc-public: EHR launch with launch and iss from the EHR', async () => {
  const launch = await ehrLaunch(w, w.patients.mine);
  const r = await visit(`${appOrigin}/launch/fc-public?launch=${encodeURIComponent(launch)}&iss=${encodeURIComponent(w.fhirBase)}`, w.users.practitioner);
  expect(r).toEqual({ patient: w.patients.mine, fhirUser: `Practitioner/${w.practitioner}` });
});
