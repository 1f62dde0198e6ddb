import puppeteer, { type Browser } from 'puppeteer-core';

/** Debian's chromium, never a downloaded browser (see .ci/run). */
export const CHROMIUM = '/usr/bin/chromium';
export function launchChromium(profileDir: string): Promise<Browser> {
  return puppeteer.launch({
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
      `--user-data-dir=${profileDir}`,
    ],
  });
}
