import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';

/** Debian's chromium, never a downloaded browser (see .ci/run). */
export const CHROMIUM = '/usr/bin/chromium';

/** One headless chromium for a test file, on its own throw-away profile; a fresh context per page. */
export interface TestBrowser {
  browser: Browser;
  /** Runs `fn` on a page of a fresh browser context (no cookies shared with other tests). */
  withPage<T>(fn: (page: Page) => Promise<T>): Promise<T>;
  /** Closes the browser and removes its profile. */
  close(): Promise<void>;
}

export async function startChromium(): Promise<TestBrowser> {
  const profile = mkdtempSync(path.join(os.tmpdir(), 'vigil-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--user-data-dir=${profile}`,
    ],
  });
  return {
    browser,
    async withPage(fn) {
      const context = await browser.createBrowserContext();
      try {
        return await fn(await context.newPage());
      } finally {
        await context.close();
      }
    },
    async close() {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Clicks something that navigates, and waits for the new page. */
export async function click(page: Page, selector: string): Promise<void> {
  await page.waitForSelector(selector);
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click(selector)]);
}

/**
 * Walks the authorization server's pages as a person would, up to the consent page: opens `url`,
 * signs in, and (a Practitioner without a patient yet) searches for and picks one.
 */
export async function signIn(page: Page, url: string, user: { username: string; password: string }, pick?: { name: string; id: string }): Promise<void> {
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector('#username');
  await page.type('#username', user.username);
  await page.type('#password', user.password);
  await click(page, '#sign-in');
  if (pick) {
    await page.waitForSelector('#name');
    await page.type('#name', pick.name);
    await click(page, '#search');
    await click(page, `button[data-patient="${pick.id}"]`);
  }
  await page.waitForSelector('#allow');
}
