import { readFileSync } from 'node:fs';
import path from 'node:path';

/** The server version, from package.json (found from src/ and from dist/). */
export const VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(path.resolve(__dirname, '..', 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();
