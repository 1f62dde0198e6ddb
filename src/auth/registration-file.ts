import { readFileSync } from 'node:fs';

/** The field that identifies an entry, and how to read it (a repeated one is refused). */
export interface RegistrationKey<T> {
  name: string;
  of(entry: T): string;
}

/**
 * Reads a registration file (SMART_CLIENTS_FILE, SMART_USERS_FILE): a JSON array whose entries
 * `validate` checks one by one (it throws with `where` in its message), with no key repeated.
 * Every refusal names the setting and the file, so an operator knows which one to fix.
 */
export function readRegistrationFile<T>(file: string, setting: string, validate: (entry: unknown, where: string) => T, key: RegistrationKey<T>): T[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${setting} ${file}: ${(e as Error).message}`);
  }
  if (!Array.isArray(parsed)) throw new Error(`${setting} ${file}: must be a JSON array`);
  const entries = parsed.map((entry, i) => validate(entry, `${setting} ${file} entry ${i}`));
  const seen = new Set<string>();
  for (const entry of entries) {
    const k = key.of(entry);
    if (seen.has(k)) throw new Error(`${setting} ${file}: ${key.name} ${k} appears twice`);
    seen.add(k);
  }
  return entries;
}
