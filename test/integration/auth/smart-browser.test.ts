import type { Page } from 'puppeteer-core';
import { click, signIn, startChromium, type TestBrowser } from '../../support/chromium';
import { FHIR_JSON } from '../../support/context';
import { authorizeUrl, codeToken, ehrLaunch, smartWorld, type SmartWorld } from './smart-helpers';

/**
 * The real pages in a real browser (Debian's chromium, headless): sign in, (pick a patient),
 * consent, and land on the app's redirect with a code, for a Patient user and a Practitioner
 * user, standalone and EHR launch. One browser for the file, a fresh context per test.
 */
let w: SmartWorld;
let chromium: TestBrowser;

beforeAll(async () => {
  w = await smartWorld();
  chromium = await startChromium();
}, 60_000);
afterAll(async () => {
  await chromium?.close();
  await w?.close();
});

/** Drives the pages as a person would; returns the URL the browser landed on. */
async function flow(page: Page, url: string, username: string, pick?: { name: string; id: string }): Promise<URL> {
  await signIn(page, url, { username, password: w.users.password }, pick);
  await click(page, '#allow');
  await page.waitForSelector('#landed');
  return new URL(page.url());
}

function withPage<T>(fn: (page: Page) => Promise<T>): Promise<T> {
  return chromium.withPage(fn);
}

async function tokenFrom(landed: URL, state: string, verifier: string) {
  expect(`${landed.origin}${landed.pathname}`).toBe(w.app.redirectUri);
  expect(landed.searchParams.get('state')).toBe(state);
  const code = landed.searchParams.get('code');
  expect(code).toBeTruthy();
  const t = await codeToken(w, code as string, verifier);
  expect(t.status).toBe(200);
  return t.body;
}

const read = (token: unknown, p: string) => w.ctx.request.get(p).set({ Authorization: `Bearer ${String(token)}`, Accept: FHIR_JSON });

it('Patient user, standalone launch: signs in on a phone-sized page, consents, lands with a code for their own record', async () => {
  await withPage(async (page) => {
    await page.setViewport({ width: 375, height: 740, isMobile: true });
    const a = authorizeUrl(w);
    await page.goto(a.url, { waitUntil: 'load' });
    await page.waitForSelector('#username');
    // Readable on a phone: nothing wider than the screen, the stylesheet applied under the CSP.
    const fits = await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth');
    expect(fits).toBe(true);
    const font = await page.evaluate("getComputedStyle(document.querySelector('#username')).fontSize");
    expect(font).toBe('16px');
    const landed = await flow(page, a.url, w.users.patient);
    const t = await tokenFrom(landed, a.state, a.verifier);
    expect(t.patient).toBe(w.patients.mine);
    expect((await read(t.access_token, `/fhir/Patient/${w.patients.mine}`)).status).toBe(200);
    expect((await read(t.access_token, `/fhir/Patient/${w.patients.other}`)).status).toBe(404);
  });
});

it('Practitioner user, standalone launch: picks a patient on the search page', async () => {
  await withPage(async (page) => {
    const a = authorizeUrl(w);
    const landed = await flow(page, a.url, w.users.practitioner, { name: 'Olga', id: w.patients.other });
    const t = await tokenFrom(landed, a.state, a.verifier);
    expect(t.patient).toBe(w.patients.other);
    expect(t.need_patient_banner).toBe(true);
  });
});

it('Practitioner user, EHR launch: the launch context becomes the token patient', async () => {
  await withPage(async (page) => {
    const launch = await ehrLaunch(w, w.patients.mine, 'enc-7');
    const a = authorizeUrl(w, { launch, scope: 'launch openid fhirUser patient/Observation.rs' });
    const t = await tokenFrom(await flow(page, a.url, w.users.practitioner), a.state, a.verifier);
    expect(t).toMatchObject({ patient: w.patients.mine, encounter: 'enc-7', need_patient_banner: false });
  });
});

it('Patient user, EHR launch about themselves: signs in and consents', async () => {
  await withPage(async (page) => {
    const launch = await ehrLaunch(w, w.patients.mine);
    const a = authorizeUrl(w, { launch, scope: 'launch patient/Observation.rs' });
    const t = await tokenFrom(await flow(page, a.url, w.users.patient), a.state, a.verifier);
    expect(t.patient).toBe(w.patients.mine);
  });
});

it('unticking a scope in the browser removes it from the token', async () => {
  await withPage(async (page) => {
    const a = authorizeUrl(w);
    await page.goto(a.url, { waitUntil: 'load' });
    await page.waitForSelector('#username');
    await page.type('#username', w.users.patient);
    await page.type('#password', w.users.password);
    await click(page, '#sign-in');
    await page.waitForSelector('input[name="scope"][value="patient/Patient.rs"]');
    await page.click('input[name="scope"][value="patient/Patient.rs"]');
    await click(page, '#allow');
    await page.waitForSelector('#landed');
    const t = await tokenFrom(new URL(page.url()), a.state, a.verifier);
    expect(String(t.scope).split(' ')).not.toContain('patient/Patient.rs');
    expect(String(t.scope).split(' ')).toContain('patient/Observation.rs');
  });
});
