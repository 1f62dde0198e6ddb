import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createTestContext, FHIR_JSON, heartRate, patient, type TestContext } from '../../support/context';
import { basic } from './helpers';

/**
 * A SMART App Launch world for tests: a listening server with auth on, an "app" (a loopback
 * HTTP server whose /callback is the registered redirect), users, patients, a practitioner,
 * and an HTTP driver for the sign-in pages that speaks the documented form contract.
 */
export const rand = (p: string) => `${p}-${randomBytes(6).toString('hex')}`;

export interface SmartWorld {
  ctx: TestContext;
  origin: string;
  fhirBase: string;
  app: { redirectUri: string; close(): Promise<void> };
  ehr: { id: string; secret: string };
  users: { patient: string; practitioner: string; disabled: string; password: string };
  patients: { mine: string; other: string };
  practitioner: string;
  /** A client_credentials token of the EHR system (system/*.cruds); cached unless `fresh` (the token endpoint is rate limited). */
  systemToken(fresh?: boolean): Promise<string>;
  close(): Promise<void>;
}

/** A tiny app: GET /callback answers 200 with the query shown, so a browser lands somewhere real. */
export async function startApp(): Promise<{ redirectUri: string; origin: string; close(): Promise<void> }> {
  const srv = http.createServer((req, res) => {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(`<!DOCTYPE html><title>app</title><p id="landed">${req.url?.startsWith('/callback') ? 'callback' : 'app'}</p>`);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  return {
    origin,
    redirectUri: `${origin}/callback`,
    close: () =>
      new Promise<void>((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      }),
  };
}

export const PUBLIC_SCOPES =
  'launch launch/patient openid fhirUser offline_access online_access patient/Subscription.cruds patient/Observation.rs patient/Patient.rs user/*.cruds';

export async function smartWorld(opts: { clock?: () => Date; extraClients?: (redirectUri: string) => Record<string, unknown>[] } = {}): Promise<SmartWorld> {
  const app = await startApp();
  const password = `pw-${randomBytes(8).toString('hex')}`;
  const users = { patient: rand('pat'), practitioner: rand('doc'), disabled: rand('off'), password };
  const patients = { mine: rand('p'), other: rand('p') };
  const practitioner = rand('pr');
  const ehr = { id: 'ehr', secret: `ehr-${randomBytes(12).toString('hex')}` };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-smart-'));
  const clientsFile = path.join(dir, 'clients.json');
  const usersFile = path.join(dir, 'users.json');
  writeFileSync(
    clientsFile,
    JSON.stringify([
      { client_id: 'app', name: 'Heart companion', scope: PUBLIC_SCOPES, redirect_uris: [app.redirectUri], token_endpoint_auth_method: 'none' },
      { client_id: ehr.id, name: 'The EHR', scope: 'system/*.cruds', client_secret: ehr.secret },
      ...(opts.extraClients?.(app.redirectUri) ?? []),
    ]),
  );
  writeFileSync(
    usersFile,
    JSON.stringify([
      { username: users.patient, fhirUser: `Patient/${patients.mine}`, name: 'Pat Mine', password },
      { username: users.practitioner, fhirUser: `Practitioner/${practitioner}`, name: 'Dr Who', password },
      { username: users.disabled, fhirUser: `Practitioner/${practitioner}`, password, disabled: true },
    ]),
  );
  const ctx = await createTestContext({ auth: true, listen: true, clock: opts.clock, env: { SMART_CLIENTS_FILE: clientsFile, SMART_USERS_FILE: usersFile, NEWS2_ENABLED: 'false' } });
  const origin = new URL(ctx.baseUrl).origin;
  let cached: string | undefined;
  const systemToken = async (fresh = false) => {
    if (cached && !fresh) return cached;
    const r = await ctx.request.post('/auth/token').type('form').set('Authorization', basic(ehr.id, ehr.secret)).send({ grant_type: 'client_credentials', scope: 'system/*.cruds' });
    if (r.status !== 200) throw new Error(`system token: ${r.status} ${JSON.stringify(r.body)}`);
    if (!fresh) cached = r.body.access_token as string;
    return r.body.access_token as string;
  };
  const sys = await systemToken();
  const put = async (res: Record<string, unknown>) => {
    const r = await ctx.request.put(`/fhir/${res.resourceType}/${res.id}`).set({ Authorization: `Bearer ${sys}` }).type(FHIR_JSON).send(JSON.stringify(res));
    if (r.status >= 300) throw new Error(`seed ${res.resourceType}/${res.id}: ${r.status} ${JSON.stringify(r.body)}`);
  };
  await put({ ...patient('Mine', ['Pat'], rand('MRN')), id: patients.mine });
  await put({ ...patient('Other', ['Olga'], rand('MRN')), id: patients.other });
  await put({ resourceType: 'Practitioner', id: practitioner, active: true, name: [{ family: 'Who', given: ['Doctor'] }] });
  await put({ ...heartRate(patients.mine, 71), id: rand('o') });
  await put({ ...heartRate(patients.other, 72), id: rand('o') });
  return {
    ctx,
    origin,
    fhirBase: ctx.baseUrl,
    app,
    ehr,
    users,
    patients,
    practitioner,
    systemToken,
    async close() {
      await ctx.close();
      await app.close();
    },
  };
}

export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export function authorizeUrl(w: SmartWorld, over: Record<string, string | undefined> = {}): { url: string; verifier: string; state: string } {
  const { verifier, challenge } = pkce();
  const state = rand('st');
  const params: Record<string, string | undefined> = {
    response_type: 'code',
    client_id: 'app',
    redirect_uri: w.app.redirectUri,
    scope: 'launch/patient openid fhirUser offline_access patient/Observation.rs patient/Patient.rs',
    state,
    aud: w.fhirBase,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...over,
  };
  const u = new URL(`${w.origin}/auth/authorize`);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) u.searchParams.set(k, v);
  return { url: u.toString(), verifier, state };
}

/** A browser without a browser: follows the pages by the form contract, keeping the cookie. */
export class FormDriver {
  cookie = '';
  constructor(private readonly origin: string) {}

  async get(url: string): Promise<Response> {
    const r = await fetch(new URL(url, this.origin), { redirect: 'manual', headers: this.cookie ? { cookie: this.cookie } : {} });
    const set = r.headers.get('set-cookie');
    if (set) this.cookie = set.split(';')[0];
    return r;
  }

  async post(url: string, fields: [string, string][]): Promise<Response> {
    return fetch(new URL(url, this.origin), {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...(this.cookie ? { cookie: this.cookie } : {}) },
      body: new URLSearchParams(fields).toString(),
    });
  }

  static hidden(html: string): { rid: string; csrf: string } {
    const rid = /name="rid" value="([^"]+)"/.exec(html)?.[1];
    const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1];
    if (!rid || !csrf) throw new Error(`no form in page: ${html.slice(0, 300)}`);
    return { rid, csrf };
  }
}

export interface FlowResult {
  /** Where the server finally sent the browser (the app's redirect), parsed. */
  redirect: URL;
  offered: string[];
  driver: FormDriver;
}

/**
 * Runs the whole sign-in over HTTP: authorize, login, (patient pick), consent. `tick` chooses
 * the scopes to keep (default: all offered).
 */
export async function signIn(
  w: SmartWorld,
  url: string,
  who: { username: string; password?: string },
  opts: { pick?: { name: string; id: string }; tick?: (offered: string[]) => string[]; decision?: 'allow' | 'deny' } = {},
): Promise<FlowResult> {
  const d = new FormDriver(w.origin);
  let r = await d.get(url);
  if (r.status !== 303) throw new Error(`authorize: ${r.status} ${await r.text()}`);
  let loc = r.headers.get('location') as string;
  if (!loc.startsWith('/auth/login')) return { redirect: new URL(loc), offered: [], driver: d };
  const login = await (await d.get(loc)).text();
  r = await d.post('/auth/login', [['username', who.username], ['password', who.password ?? w.users.password], ...Object.entries(FormDriver.hidden(login))]);
  if (r.status !== 303) throw new Error(`login: ${r.status}`);
  loc = r.headers.get('location') as string;
  if (loc.startsWith('/auth/patient')) {
    const page = await (await d.get(`${loc}&name=${encodeURIComponent(opts.pick?.name ?? '')}`)).text();
    const csrf = /name="csrf" value="([^"]+)"/.exec(page)?.[1] ?? '';
    r = await d.post('/auth/patient', [['patient', opts.pick?.id ?? ''], ['rid', new URL(loc, w.origin).searchParams.get('rid') ?? ''], ['csrf', csrf]]);
    loc = r.headers.get('location') as string;
  }
  if (!loc.startsWith('/auth/consent')) return { redirect: new URL(loc), offered: [], driver: d };
  const consent = await (await d.get(loc)).text();
  const offered = [...consent.matchAll(/name="scope" value="([^"]+)"/g)].map((m) => m[1].replace(/&amp;/g, '&'));
  const ticked = opts.tick ? opts.tick(offered) : offered;
  r = await d.post('/auth/consent', [
    ...Object.entries(FormDriver.hidden(consent)),
    ...ticked.map((s): [string, string] => ['scope', s]),
    ['decision', opts.decision ?? 'allow'],
  ]);
  if (r.status !== 303) throw new Error(`consent: ${r.status} ${await r.text()}`);
  return { redirect: new URL(r.headers.get('location') as string), offered, driver: d };
}

/** POST /auth/token as the public app. */
export async function exchange(w: SmartWorld, fields: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await w.ctx.request.post('/auth/token').type('form').send({ client_id: 'app', ...fields });
  return { status: r.status, body: r.body as Record<string, unknown> };
}

export async function codeToken(w: SmartWorld, code: string, verifier: string, over: Record<string, string> = {}) {
  return exchange(w, { grant_type: 'authorization_code', code, redirect_uri: w.app.redirectUri, code_verifier: verifier, ...over });
}

export async function ehrLaunch(w: SmartWorld, patientId: string, encounter?: string): Promise<string> {
  const sys = await w.systemToken();
  const r = await w.ctx.request
    .post('/auth/launch')
    .set('Authorization', `Bearer ${sys}`)
    .send({ patient: patientId, ...(encounter ? { encounter } : {}) });
  if (r.status !== 201) throw new Error(`launch: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.launch as string;
}
