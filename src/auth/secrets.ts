import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';

function scrypt(secret: string, salt: Buffer, len: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCb(secret, salt, len, opts, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

const N = 16384;
const R = 8;
const P = 1;
const KEY_LEN = 32;

/** `scrypt$N$r$p$salt$hash` (base64url parts), so parameters can be raised later without breaking old hashes. */
export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(secret, salt, KEY_LEN, { N, r: R, p: P });
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

export function isSecretHash(s: string): boolean {
  return /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9_-]+\$[A-Za-z0-9_-]+$/.test(s);
}

/** A hash of nothing anyone knows, so unknown clients cost the same time as known ones. */
let dummyHash: Promise<string> | undefined;

/** Constant-time comparison of a presented secret with a stored hash; undefined hash still does the work. */
export async function verifySecret(secret: string, stored: string | undefined): Promise<boolean> {
  const hash = stored && isSecretHash(stored) ? stored : await (dummyHash ??= hashSecret(randomBytes(16).toString('hex')));
  const [, n, r, p, salt, key] = hash.split('$');
  const expected = Buffer.from(key, 'base64url');
  const actual = await scrypt(secret, Buffer.from(salt, 'base64url'), expected.length, {
    N: Number(n),
    r: Number(r),
    p: Number(p),
    maxmem: 256 * Number(n) * Number(r) + 1024 * 1024,
  });
  return timingSafeEqual(actual, expected) && stored === hash;
}

/** A new random client secret (256 bits). */
export function generateSecret(): string {
  return randomBytes(32).toString('base64url');
}
