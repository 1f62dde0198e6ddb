import { authorizeUrl, FormDriver, rand, smartWorld, type SmartWorld } from './smart-helpers';

/** Failed sign-ins are limited per account and per address; the injected clock lets them recover. */
let w: SmartWorld;
// A clock that moves only when the test says so: the buckets refill with it, never with slow machines.
const base = Date.now();
let offset = 0;
const clock = () => new Date(base + offset);

beforeAll(async () => {
  w = await smartWorld({ clock });
});
afterAll(async () => {
  await w?.close();
});

async function loginPage(): Promise<{ d: FormDriver; hidden: [string, string][] }> {
  const d = new FormDriver(w.origin);
  const loc = (await d.get(authorizeUrl(w).url)).headers.get('location') as string;
  return { d, hidden: Object.entries(FormDriver.hidden(await (await d.get(loc)).text())) };
}

async function attempt(username: string, password: string): Promise<number> {
  const { d, hidden } = await loginPage();
  return (await d.post('/auth/login', [['username', username], ['password', password], ...hidden])).status;
}

it('locks an account after 5 failures (even for the right password), and lets it in again a minute later', async () => {
  for (let i = 0; i < 5; i++) expect(await attempt(w.users.patient, `wrong-${i}-password`)).toBe(401);
  expect(await attempt(w.users.patient, w.users.password)).toBe(429);
  // Another account from the same address is not affected by this account's lock.
  expect(await attempt(w.users.practitioner, w.users.password)).toBe(303);
  offset += 61_000;
  expect(await attempt(w.users.patient, w.users.password)).toBe(303);
});

it('limits failures per address across accounts (20, then one per 10 s)', async () => {
  offset += 3600_000; // a fresh hour: every bucket has refilled
  for (let i = 0; i < 20; i++) expect(await attempt(rand('nobody'), 'wrong-password')).toBe(401);
  expect(await attempt(rand('nobody'), 'wrong-password')).toBe(429);
  const { d, hidden } = await loginPage();
  const r = await d.post('/auth/login', [['username', w.users.practitioner], ['password', w.users.password], ...hidden]);
  expect(r.status).toBe(429);
  expect(await r.text()).toMatch(/Too many failed sign-ins/);
  offset += 11_000;
  expect(await attempt(w.users.practitioner, w.users.password)).toBe(303);
});

it('limits sign-ins started per address (120, then one per second)', async () => {
  offset += 3600_000;
  const d = new FormDriver(w.origin);
  for (let i = 0; i < 120; i++) expect((await d.get(authorizeUrl(w).url)).status).toBe(303);
  const r = await d.get(authorizeUrl(w).url);
  expect(r.status).toBe(429);
  expect(await r.text()).toMatch(/Too many sign-ins were started/);
  offset += 1_000;
  expect((await d.get(authorizeUrl(w).url)).status).toBe(303);
});
