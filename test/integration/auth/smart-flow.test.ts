import { createPublicKey } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { ClientStore } from '../../../src/auth/clients';
import { FHIR_JSON } from '../../support/context';
import { authorizeUrl, codeToken, ehrLaunch, exchange, FormDriver, signIn, smartWorld, type SmartWorld } from './smart-helpers';

/**
 * SMART App Launch over HTTP, by the documented form contract: the happy paths and every
 * refusal (PKCE, codes, redirects, clients, aud, consent, refresh reuse, disabled accounts).
 */
let w: SmartWorld;
let offset = 0;
const clock = () => new Date(Date.now() + offset);

beforeAll(async () => {
  w = await smartWorld({
    clock,
    extraClients: (redirectUri) => [
      { client_id: 'app-off', name: 'To be disabled', scope: 'patient/Observation.rs', redirect_uris: [redirectUri], token_endpoint_auth_method: 'none' },
      { client_id: 'conf', name: 'Confidential', scope: 'patient/Observation.rs', redirect_uris: [redirectUri], client_secret: 'conf-secret-0123456789abcdef' },
    ],
  });
});
afterAll(async () => {
  await w?.close();
});
afterEach(() => {
  offset = 0;
});

async function patientCode(over: Record<string, string | undefined> = {}, tick?: (s: string[]) => string[]) {
  const a = authorizeUrl(w, over);
  const f = await signIn(w, a.url, { username: w.users.patient }, { tick });
  return { ...a, ...f, code: f.redirect.searchParams.get('code') as string };
}

const bearer = (t: unknown) => ({ Authorization: `Bearer ${String(t)}`, Accept: FHIR_JSON });

describe('standalone launch, Patient user', () => {
  it('signs in, consents, and gets a patient-bound token, refresh token and id_token', async () => {
    const c = await patientCode();
    expect(c.redirect.origin + c.redirect.pathname).toBe(w.app.redirectUri);
    expect(c.redirect.searchParams.get('state')).toBe(c.state);
    const t = await codeToken(w, c.code, c.verifier);
    expect(t.status).toBe(200);
    expect(t.body).toMatchObject({
      token_type: 'bearer',
      expires_in: 300,
      patient: w.patients.mine,
      need_patient_banner: true,
      smart_style_url: `${w.origin}/auth/smart-style.json`,
      scope: 'launch/patient openid fhirUser offline_access patient/Observation.rs patient/Patient.rs',
    });
    expect(typeof t.body.refresh_token).toBe('string');
    // id_token: RS256, verifiable with the published JWKS, carrying fhirUser.
    const idt = t.body.id_token as string;
    const header = JSON.parse(Buffer.from(idt.split('.')[0], 'base64url').toString());
    expect(header.alg).toBe('RS256');
    const jwks = (await w.ctx.request.get('/auth/jwks')).body;
    const key = createPublicKey({ key: jwks.keys.find((k: { kid: string }) => k.kid === header.kid), format: 'jwk' });
    const claims = jwt.verify(idt, key, { algorithms: ['RS256'], audience: 'app', issuer: `${w.origin}/auth` }) as jwt.JwtPayload;
    expect(claims.fhirUser).toBe(`${w.fhirBase}/Patient/${w.patients.mine}`);

    const own = await w.ctx.request.get(`/fhir/Patient/${w.patients.mine}`).set(bearer(t.body.access_token));
    expect(own.status).toBe(200);
    const other = await w.ctx.request.get(`/fhir/Patient/${w.patients.other}`).set(bearer(t.body.access_token));
    expect(other.status).toBe(404);
    const obs = await w.ctx.request.get('/fhir/Observation').set(bearer(t.body.access_token));
    expect(obs.body.entry.map((e: { resource: { subject: { reference: string } } }) => e.resource.subject.reference)).toEqual([`Patient/${w.patients.mine}`]);
  });

  it('grants only what was ticked: unticked scopes are absent from the token', async () => {
    const c = await patientCode({}, (s) => s.filter((x) => x !== 'patient/Patient.rs' && x !== 'offline_access'));
    const t = await codeToken(w, c.code, c.verifier);
    expect(t.status).toBe(200);
    expect(t.body.scope).toBe('launch/patient openid fhirUser patient/Observation.rs');
    expect(t.body.refresh_token).toBeUndefined();
    const r = await w.ctx.request.get(`/fhir/Patient/${w.patients.mine}`).set(bearer(t.body.access_token));
    expect(r.status).toBe(403);
  });

  it('grants requested ∩ allowed: scopes the client may not have are never offered', async () => {
    const c = await patientCode({ scope: 'patient/Observation.rs patient/Device.rs system/Patient.rs' });
    expect(c.offered).toEqual(['patient/Observation.rs']);
  });

  it('a user/ scope is not offered to a Patient user', async () => {
    const c = await patientCode({ scope: 'user/Observation.rs patient/Observation.rs' });
    expect(c.offered).toEqual(['patient/Observation.rs']);
  });
});

describe('standalone launch, Practitioner user', () => {
  it('picks a patient on the search page and gets that patient context; user/ scopes reach all patients', async () => {
    const a = authorizeUrl(w, { scope: 'launch/patient openid fhirUser patient/Observation.rs user/Patient.rs' });
    const f = await signIn(w, a.url, { username: w.users.practitioner }, { pick: { name: 'Olga', id: w.patients.other } });
    const t = await codeToken(w, f.redirect.searchParams.get('code') as string, a.verifier);
    expect(t.status).toBe(200);
    expect(t.body.patient).toBe(w.patients.other);
    const obs = await w.ctx.request.get('/fhir/Observation').set(bearer(t.body.access_token));
    expect(obs.body.entry.map((e: { resource: { subject: { reference: string } } }) => e.resource.subject.reference)).toEqual([`Patient/${w.patients.other}`]);
    const pts = await w.ctx.request.get('/fhir/Patient').set(bearer(t.body.access_token));
    expect(pts.body.entry.map((e: { resource: { id: string } }) => e.resource.id).sort()).toEqual([w.patients.mine, w.patients.other].sort());
  });

  it('the patient search page finds patients by name', async () => {
    const a = authorizeUrl(w);
    const d = new FormDriver(w.origin);
    const loc = (await d.get(a.url)).headers.get('location') as string;
    const login = await (await d.get(loc)).text();
    const r = await d.post('/auth/login', [['username', w.users.practitioner], ['password', w.users.password], ...Object.entries(FormDriver.hidden(login))]);
    const pick = r.headers.get('location') as string;
    expect(pick).toMatch(/^\/auth\/patient\?rid=/);
    const page = await (await d.get(`${pick}&name=Olga`)).text();
    expect(page).toContain(`data-patient="${w.patients.other}"`);
    expect(page).not.toContain(`data-patient="${w.patients.mine}"`);
  });
});

describe('EHR launch', () => {
  it('carries the launch patient and encounter to the token; no banner needed', async () => {
    const launch = await ehrLaunch(w, w.patients.other, 'enc-1');
    const a = authorizeUrl(w, { launch, scope: 'launch openid fhirUser patient/Observation.rs' });
    const f = await signIn(w, a.url, { username: w.users.practitioner });
    const t = await codeToken(w, f.redirect.searchParams.get('code') as string, a.verifier);
    expect(t.body).toMatchObject({ patient: w.patients.other, encounter: 'enc-1', need_patient_banner: false, scope: 'launch openid fhirUser patient/Observation.rs' });
  });

  it('refuses a launch about another patient for a Patient user', async () => {
    const launch = await ehrLaunch(w, w.patients.other);
    const a = authorizeUrl(w, { launch, scope: 'launch patient/Observation.rs' });
    const f = await signIn(w, a.url, { username: w.users.patient });
    expect(f.redirect.searchParams.get('error')).toBe('access_denied');
  });

  it('refuses an unknown launch value with an OAuth error to the app', async () => {
    const a = authorizeUrl(w, { launch: 'not-a-launch', scope: 'launch patient/Observation.rs' });
    const r = await new FormDriver(w.origin).get(a.url);
    const loc = new URL(r.headers.get('location') as string);
    expect(loc.searchParams.get('error')).toBe('invalid_request');
    expect(loc.searchParams.get('state')).toBe(a.state);
  });

  it('POST /auth/launch needs a Backend Services token and a patient it can read', async () => {
    const none = await w.ctx.request.post('/auth/launch').send({ patient: w.patients.mine });
    expect(none.status).toBe(401);
    const sys = await w.systemToken();
    const missing = await w.ctx.request.post('/auth/launch').set('Authorization', `Bearer ${sys}`).send({ patient: 'nobody' });
    expect(missing.status).toBe(404);
    expect(missing.body.resourceType).toBe('OperationOutcome');
  });
});

describe('the authorization request', () => {
  const page = async (over: Record<string, string | undefined>) => {
    const r = await new FormDriver(w.origin).get(authorizeUrl(w, over).url);
    return { status: r.status, location: r.headers.get('location'), text: await r.text() };
  };
  const oauthError = async (over: Record<string, string | undefined>) => {
    const r = await page(over);
    expect(r.status).toBe(303);
    return new URL(r.location as string).searchParams;
  };

  it.each([
    ['unknown client', { client_id: 'nobody' }, /not registered/],
    ['redirect mismatch', { redirect_uri: 'http://127.0.0.1:1/evil' }, /not registered/],
    ['redirect with an extra path', { redirect_uri: `http://127.0.0.1:1/callback/x` }, /not registered/],
    ['wrong aud', { aud: 'https://other.example.org/fhir' }, /another FHIR server/],
    ['missing aud', { aud: undefined }, /another FHIR server/],
  ])('%s: an error page, never a redirect', async (_n, over, text) => {
    const r = await page(over as Record<string, string | undefined>);
    expect(r.status).toBe(400);
    expect(r.location).toBeNull();
    expect(r.text).toMatch(text);
  });

  it('a redirect to a registered URI with a different port is refused too', async () => {
    const u = new URL(w.app.redirectUri);
    u.port = String(Number(u.port) + 1);
    const r = await page({ redirect_uri: u.toString() });
    expect(r.status).toBe(400);
  });

  it.each([
    ['plain PKCE', { code_challenge_method: 'plain' }, 'invalid_request', /S256/],
    ['no PKCE', { code_challenge: undefined, code_challenge_method: undefined }, 'invalid_request', /PKCE/],
    ['short challenge', { code_challenge: 'abc' }, 'invalid_request', /code_challenge/],
    ['token response type', { response_type: 'token' }, 'unsupported_response_type', /code/],
    ['malformed scope', { scope: 'patient/Observation.xyz' }, 'invalid_scope', /Malformed/],
    ['no state', { state: undefined }, 'invalid_request', /state is required/],
  ])('%s: an OAuth error back to the app, with state', async (_n, over, error, desc) => {
    const p = await oauthError(over as Record<string, string | undefined>);
    expect(p.get('error')).toBe(error);
    expect(p.get('error_description')).toMatch(desc);
    if ('state' in over) expect(p.get('state')).toBeNull();
    else expect(p.get('state')).toBeTruthy();
  });

  it('denied consent sends access_denied to the app and issues nothing', async () => {
    const a = authorizeUrl(w);
    const f = await signIn(w, a.url, { username: w.users.patient }, { decision: 'deny' });
    expect(f.redirect.searchParams.get('error')).toBe('access_denied');
    expect(f.redirect.searchParams.get('state')).toBe(a.state);
    expect(f.redirect.searchParams.get('code')).toBeNull();
  });

  it('unticking every scope is a denial', async () => {
    const f = await signIn(w, authorizeUrl(w).url, { username: w.users.patient }, { tick: () => [] });
    expect(f.redirect.searchParams.get('error')).toBe('access_denied');
  });

  it('a disabled user cannot sign in; a wrong password is refused without saying which part was wrong', async () => {
    const a = authorizeUrl(w);
    const d = new FormDriver(w.origin);
    const login = await (await d.get((await d.get(a.url)).headers.get('location') as string)).text();
    const hidden = Object.entries(FormDriver.hidden(login));
    const off = await d.post('/auth/login', [['username', w.users.disabled], ['password', w.users.password], ...hidden]);
    expect(off.status).toBe(401);
    expect(await off.text()).toContain('Wrong username or password.');
    const wrong = await d.post('/auth/login', [['username', w.users.patient], ['password', 'nope-nope-nope'], ...hidden]);
    expect(wrong.status).toBe(401);
  });

  it('the consent form refuses a missing or wrong CSRF token and another browser', async () => {
    const a = authorizeUrl(w);
    const d = new FormDriver(w.origin);
    const login = await (await d.get((await d.get(a.url)).headers.get('location') as string)).text();
    const { rid, csrf } = FormDriver.hidden(login);
    const bad = await d.post('/auth/login', [['username', w.users.patient], ['password', w.users.password], ['rid', rid], ['csrf', 'x']]);
    expect(bad.status).toBe(400);
    const stranger = new FormDriver(w.origin);
    const other = await stranger.post('/auth/login', [['username', w.users.patient], ['password', w.users.password], ['rid', rid], ['csrf', csrf]]);
    expect(other.status).toBe(400);
  });

  it('pages carry a strict CSP: no script, forms only to us and the app', async () => {
    const d = new FormDriver(w.origin);
    const r = await d.get((await d.get(authorizeUrl(w).url)).headers.get('location') as string);
    const csp = r.headers.get('content-security-policy') as string;
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toMatch(/script-src|unsafe-inline/);
    expect(csp).toContain(`form-action 'self' ${new URL(w.app.redirectUri).origin}`);
    expect(r.headers.get('cache-control')).toBe('no-store');
  });
});

describe('the code at the token endpoint', () => {
  it.each([
    ['wrong verifier', (v: string) => ({ code_verifier: v.slice(0, -2) + 'xx' }), /code_verifier does not match/, true],
    ['verifier of the wrong form', () => ({ code_verifier: 'short' }), /code_verifier does not match/, true],
    ['missing verifier', () => ({ code_verifier: '' }), /code_verifier is required/, false],
    ['redirect mismatch', () => ({ redirect_uri: 'http://127.0.0.1:1/other' }), /redirect_uri does not match/, true],
  ])('%s: invalid_grant (a code that was presented is spent)', async (_n, over, desc, spent) => {
    const c = await patientCode();
    const bad = await codeToken(w, c.code, c.verifier, over(c.verifier));
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe('invalid_grant');
    expect(bad.body.error_description).toMatch(desc);
    const again = await codeToken(w, c.code, c.verifier);
    if (spent) expect(again.body.error).toBe('invalid_grant');
    else expect(again.status).toBe(200);
  });

  it('a code of another client is refused', async () => {
    const c = await patientCode();
    const r = await exchange(w, { client_id: 'app2', grant_type: 'authorization_code', code: c.code, redirect_uri: w.app.redirectUri, code_verifier: c.verifier });
    expect(r.status).toBe(401);
    expect(r.body.error).toBe('invalid_client');
  });

  it('a reused code is refused and revokes the tokens it issued', async () => {
    const c = await patientCode();
    const t = await codeToken(w, c.code, c.verifier);
    expect(t.status).toBe(200);
    const ok = await w.ctx.request.get(`/fhir/Patient/${w.patients.mine}`).set(bearer(t.body.access_token));
    expect(ok.status).toBe(200);
    const again = await codeToken(w, c.code, c.verifier);
    expect(again.body).toMatchObject({ error: 'invalid_grant', error_description: expect.stringMatching(/already used/) });
    const after = await w.ctx.request.get(`/fhir/Patient/${w.patients.mine}`).set(bearer(t.body.access_token));
    expect(after.status).toBe(401);
    const refreshed = await exchange(w, { grant_type: 'refresh_token', refresh_token: t.body.refresh_token as string });
    expect(refreshed.body.error).toBe('invalid_grant');
  });

  it('an expired code (61 s later, injected clock) is refused', async () => {
    const c = await patientCode();
    offset = 61_000;
    const r = await codeToken(w, c.code, c.verifier);
    expect(r.body).toMatchObject({ error: 'invalid_grant', error_description: 'the code has expired' });
  });
});

describe('refresh tokens', () => {
  it('rotate on every use; reuse of a spent one revokes the whole family', async () => {
    const c = await patientCode();
    const t0 = await codeToken(w, c.code, c.verifier);
    const t1 = await exchange(w, { grant_type: 'refresh_token', refresh_token: t0.body.refresh_token as string });
    expect(t1.status).toBe(200);
    expect(t1.body.refresh_token).not.toBe(t0.body.refresh_token);
    expect(t1.body.patient).toBe(w.patients.mine);
    const reuse = await exchange(w, { grant_type: 'refresh_token', refresh_token: t0.body.refresh_token as string });
    expect(reuse.body).toMatchObject({ error: 'invalid_grant', error_description: expect.stringMatching(/already used/) });
    const t2 = await exchange(w, { grant_type: 'refresh_token', refresh_token: t1.body.refresh_token as string });
    expect(t2.body.error).toBe('invalid_grant');
    const api = await w.ctx.request.get('/fhir/Observation').set(bearer(t1.body.access_token));
    expect(api.status).toBe(401);
  });

  it('online_access refresh tokens live 8 hours, offline_access ones 90 days', async () => {
    const sys = await w.systemToken();
    const exp = async (scope: string) => {
      const c = await patientCode({ scope });
      const t = await codeToken(w, c.code, c.verifier);
      const intro = await w.ctx.request.post('/auth/introspect').type('form').set('Authorization', `Bearer ${sys}`).send({ token: t.body.refresh_token });
      return (intro.body.exp as number) - Date.now() / 1000;
    };
    const online = await exp('online_access patient/Observation.rs');
    expect(online).toBeGreaterThan(7.9 * 3600);
    expect(online).toBeLessThanOrEqual(8 * 3600 + 60);
    expect(await exp('offline_access patient/Observation.rs')).toBeGreaterThan(89 * 24 * 3600);
  });

  it('may narrow, never widen, the scope', async () => {
    const c = await patientCode();
    const t0 = await codeToken(w, c.code, c.verifier);
    const wide = await exchange(w, { grant_type: 'refresh_token', refresh_token: t0.body.refresh_token as string, scope: 'patient/*.cruds' });
    expect(wide.body.error).toBe('invalid_scope');
  });

  it('stop working when the user is disabled', async () => {
    const c = await patientCode();
    const t0 = await codeToken(w, c.code, c.verifier);
    await w.ctx.vigil.auth!.users.setDisabled(w.users.patient, true, new Date());
    try {
      const r = await exchange(w, { grant_type: 'refresh_token', refresh_token: t0.body.refresh_token as string });
      expect(r.body.error).toBe('invalid_grant');
      const intro = await w.ctx.request.post('/auth/introspect').type('form').set('Authorization', `Bearer ${await w.systemToken()}`).send({ token: t0.body.access_token });
      expect(intro.body).toEqual({ active: false });
    } finally {
      await w.ctx.vigil.auth!.users.setDisabled(w.users.patient, false, new Date());
    }
  });
});

describe('revocation and introspection', () => {
  it('revoking a refresh token ends the grant; introspection reports every token kind', async () => {
    const c = await patientCode();
    const t = await codeToken(w, c.code, c.verifier);
    const sys = await w.systemToken();
    const intro = (token: unknown) => w.ctx.request.post('/auth/introspect').type('form').set('Authorization', `Bearer ${sys}`).send({ token });
    expect((await intro(t.body.access_token)).body).toMatchObject({ active: true, patient: w.patients.mine, sub: w.users.patient, fhirUser: `${w.fhirBase}/Patient/${w.patients.mine}` });
    expect((await intro(t.body.refresh_token)).body).toMatchObject({ active: true, token_type: 'refresh_token', client_id: 'app' });
    expect((await intro(sys)).body).toMatchObject({ active: true, client_id: 'ehr' });

    const rv = await w.ctx.request.post('/auth/revoke').type('form').send({ client_id: 'app', token: t.body.refresh_token });
    expect(rv.status).toBe(200);
    expect((await intro(t.body.refresh_token)).body).toEqual({ active: false });
    expect((await intro(t.body.access_token)).body).toEqual({ active: false });
    const api = await w.ctx.request.get('/fhir/Observation').set(bearer(t.body.access_token));
    expect(api.status).toBe(401);
  });

  it('revokes a client_credentials access token by its id', async () => {
    const sys = await w.systemToken(true);
    const other = await w.systemToken(true);
    const rv = await w.ctx.request.post('/auth/revoke').type('form').set('Authorization', `Basic ${Buffer.from(`ehr:${w.ehr.secret}`).toString('base64')}`).send({ token: sys });
    expect(rv.status).toBe(200);
    expect((await w.ctx.request.get('/fhir/Patient').set(bearer(sys))).status).toBe(401);
    expect((await w.ctx.request.get('/fhir/Patient').set(bearer(other))).status).toBe(200);
  });

  it('answers 200 for an unknown token, 401 for an unknown client', async () => {
    expect((await w.ctx.request.post('/auth/revoke').type('form').send({ client_id: 'app', token: 'nonsense' })).status).toBe(200);
    const r = await w.ctx.request.post('/auth/revoke').type('form').send({ client_id: 'nobody', token: 'nonsense' });
    expect(r.status).toBe(401);
    expect(r.body.error).toBe('invalid_client');
  });
});

describe('disabled clients and confidential clients', () => {
  it('a disabled client gets an error page, cannot redeem its code, and its tokens stop', async () => {
    const a = authorizeUrl(w, { client_id: 'app-off', scope: 'patient/Observation.rs' });
    const f = await signIn(w, a.url, { username: w.users.patient });
    const code = f.redirect.searchParams.get('code') as string;
    const c2 = await signIn(w, authorizeUrl(w, { client_id: 'app-off', scope: 'patient/Observation.rs' }).url, { username: w.users.patient });
    const t = await codeToken(w, code, a.verifier, { client_id: 'app-off' });
    expect(t.status).toBe(200);
    await new ClientStore(w.ctx.db).setDisabled('app-off', true, new Date());
    const page = await new FormDriver(w.origin).get(authorizeUrl(w, { client_id: 'app-off' }).url);
    expect(page.status).toBe(400);
    const redeem = await codeToken(w, c2.redirect.searchParams.get('code') as string, 'x'.repeat(43), { client_id: 'app-off' });
    expect(redeem).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
    offset = 31_000; // the disabled-client list is re-read every 30 s
    expect((await w.ctx.request.get('/fhir/Observation').set(bearer(t.body.access_token))).status).toBe(401);
  });

  it('a confidential client must authenticate: client_id alone is refused, Basic works', async () => {
    const a = authorizeUrl(w, { client_id: 'conf', scope: 'patient/Observation.rs' });
    const f = await signIn(w, a.url, { username: w.users.patient });
    const code = f.redirect.searchParams.get('code') as string;
    const alone = await codeToken(w, code, a.verifier, { client_id: 'conf' });
    expect(alone).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
    const a2 = authorizeUrl(w, { client_id: 'conf', scope: 'patient/Observation.rs' });
    const f2 = await signIn(w, a2.url, { username: w.users.patient });
    const r = await w.ctx.request
      .post('/auth/token')
      .type('form')
      .set('Authorization', `Basic ${Buffer.from('conf:conf-secret-0123456789abcdef').toString('base64')}`)
      .send({ grant_type: 'authorization_code', code: f2.redirect.searchParams.get('code'), redirect_uri: w.app.redirectUri, code_verifier: a2.verifier });
    expect(r.status).toBe(200);
    expect(r.body.patient).toBe(w.patients.mine);
  });
});

describe('cross-patient attempts with a patient-context user token', () => {
  let token: string;
  beforeAll(async () => {
    const c = await patientCode();
    token = (await codeToken(w, c.code, c.verifier)).body.access_token as string;
  });
  const get = (p: string) => w.ctx.request.get(p).set(bearer(token));
  const ids = (b: { entry?: { resource: { resourceType: string; id: string } }[] }) => (b.entry ?? []).map((e) => `${e.resource.resourceType}/${e.resource.id}`);

  it('search by the other patient finds nothing; history and vread of the other patient are 404', async () => {
    expect(ids((await get(`/fhir/Observation?patient=${w.patients.other}`)).body)).toEqual([]);
    expect(ids((await get(`/fhir/Observation?subject=Patient/${w.patients.other}`)).body)).toEqual([]);
    expect((await get(`/fhir/Patient/${w.patients.other}/_history`)).status).toBe(404);
    expect((await get(`/fhir/Patient/${w.patients.other}/_history/1`)).status).toBe(404);
    expect(ids((await get(`/fhir/Observation/$lastn?patient=${w.patients.other}`)).body)).toEqual([]);
  });

  it('_revinclude and _include never bring in the other patient', async () => {
    const r = await get(`/fhir/Patient?_id=${w.patients.mine},${w.patients.other}&_revinclude=Observation:subject`);
    expect(ids(r.body).every((x) => x === `Patient/${w.patients.mine}` || x.startsWith('Observation/'))).toBe(true);
    const obs = await get('/fhir/Observation?_include=Observation:subject');
    expect(ids(obs.body)).not.toContain(`Patient/${w.patients.other}`);
  });

  it('a batch reading the other patient answers 404 for that entry', async () => {
    const r = await w.ctx.request
      .post('/fhir')
      .set(bearer(token))
      .type(FHIR_JSON)
      .send(JSON.stringify({ resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: `Patient/${w.patients.other}` } }, { request: { method: 'GET', url: `Patient/${w.patients.mine}` } }] }));
    expect(r.status).toBe(200);
    expect(r.body.entry.map((e: { response: { status: string } }) => e.response.status.slice(0, 3))).toEqual(['404', '200']);
  });

  it('writes for the other patient are refused', async () => {
    const r = await w.ctx.request.post('/fhir/Observation').set(bearer(token)).type(FHIR_JSON).send(JSON.stringify({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${w.patients.other}` } }));
    expect(r.status).toBe(403);
  });
});

describe('audit trail', () => {
  it('records the signed-in person beside the app', async () => {
    const c = await patientCode();
    const t = await codeToken(w, c.code, c.verifier);
    const r = await w.ctx.request.get(`/fhir/Patient/${w.patients.mine}`).set(bearer(t.body.access_token));
    const rid = r.headers['x-request-id'];
    const sys = await w.systemToken();
    let agents: { who: { reference?: string; display?: string } }[] = [];
    for (let i = 0; i < 200 && agents.length === 0; i++) {
      const s = await w.ctx.request.get('/fhir/AuditEvent?_count=200').set(bearer(sys));
      const mine = (s.body.entry ?? []).map((e: { resource: { agent: typeof agents; source?: unknown; entity?: { what?: { identifier?: { value?: string } } }[] } }) => e.resource)
        .find((a: { entity?: { what?: { identifier?: { value?: string } } }[] }) => JSON.stringify(a).includes(rid));
      if (mine) agents = mine.agent;
      else await new Promise((res) => setTimeout(res, 50));
    }
    expect(agents.map((a) => a.who.reference ?? a.who.display)).toEqual(['app', `Patient/${w.patients.mine}`]);
  });
});

describe('discovery', () => {
  it('lists the SMART App Launch endpoints and exactly the capabilities offered', async () => {
    const r = await w.ctx.request.get('/fhir/.well-known/smart-configuration');
    expect(r.body).toMatchObject({
      issuer: `${w.origin}/auth`,
      authorization_endpoint: `${w.origin}/auth/authorize`,
      revocation_endpoint: `${w.origin}/auth/revoke`,
      code_challenge_methods_supported: ['S256'],
      response_types_supported: ['code'],
    });
    expect(r.body.capabilities).toEqual(
      expect.arrayContaining(['launch-standalone', 'launch-ehr', 'client-public', 'client-confidential-symmetric', 'client-confidential-asymmetric',
        'context-standalone-patient', 'context-ehr-patient', 'permission-patient', 'permission-user', 'permission-offline', 'permission-v1', 'permission-v2', 'sso-openid-connect']),
    );
    const meta = await w.ctx.request.get('/fhir/metadata');
    const uris = meta.body.rest[0].security.extension[0].extension;
    // R4's oauth-uris defines token, authorize, register and manage only (a strict R4 validator
    // refuses others); revocation is listed in the SMART configuration above.
    expect(uris).toEqual(expect.arrayContaining([{ url: 'authorize', valueUri: `${w.origin}/auth/authorize` }]));
  });
});
