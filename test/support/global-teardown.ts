import { rmSync } from 'node:fs';

export default async function globalTeardown(): Promise<void> {
  await globalThis.__VIGIL_TEST_DB__?.stop();
  const dir = process.env.VIGIL_TEST_DB_DIR;
  if (dir) rmSync(dir, { recursive: true, force: true });
}
