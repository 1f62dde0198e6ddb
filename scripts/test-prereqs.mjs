#!/usr/bin/env node
// Runs before `npm test` (pretest): makes sure the tools the suite drives are on the machine, so
// that `npm install && npm test` works on a fresh one.
// - Debian's chromium, for the sign-in page tests (puppeteer-core never downloads a browser);
// - Java 17+ and Maven, for the strict R4 judge (tools/r4-validator, HAPI FHIR from Maven Central),
//   which the conformance tests build on first use.
// Missing packages are installed with apt-get when we may (root on Debian); otherwise we say what
// to install and stop, rather than letting a test fail obscurely later.
import { spawnSync } from 'node:child_process';

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const wanted = [];
if (!has('chromium')) wanted.push({ pkg: 'chromium', why: 'the sign-in page tests (headless chromium)' });
if (!has('java')) wanted.push({ pkg: 'default-jdk-headless', why: 'the strict R4 judge (Java)' });
if (!has('mvn')) wanted.push({ pkg: 'maven', why: 'building the strict R4 judge' });
if (wanted.length === 0) process.exit(0);

for (const w of wanted) console.log(`vigil tests: ${w.pkg} is needed for ${w.why}`);
const root = typeof process.getuid === 'function' && process.getuid() === 0;
if (!root || !has('apt-get')) {
  console.error(`vigil tests: install ${wanted.map((w) => w.pkg).join(' ')} (Debian package names) and run npm test again`);
  process.exit(1);
}
console.log(`vigil tests: installing ${wanted.map((w) => w.pkg).join(' ')} with apt-get...`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
const update = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
const install = spawnSync('apt-get', ['install', '-y', '-qq', ...wanted.map((w) => w.pkg)], { stdio: 'inherit', env });
if (update.status !== 0 || install.status !== 0) {
  console.error('vigil tests: apt-get could not install them; install them by hand and run npm test again');
  process.exit(1);
}
