import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readClientsFile } from '../../../src/auth/clients';
import { readRegistrationFile } from '../../../src/auth/registration-file';
import { readUsersFile } from '../../../src/auth/users';

/** A validator for entries `{ name: string }`, refusing anything else with the place it was found. */
function named(entry: unknown, where: string): { name: string } {
  const n = (entry as { name?: unknown } | null)?.name;
  if (typeof n !== 'string') throw new Error(`${where}: name must be a string`);
  return { name: n };
}
const byName = { name: 'name', of: (e: { name: string }) => e.name };

let dir: string;
beforeAll(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-registration-'))));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function fileWith(text: string): string {
  const file = path.join(dir, `f-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, text);
  return file;
}

describe('readRegistrationFile', () => {
  it('returns the validated entries in file order', () => {
    const file = fileWith(JSON.stringify([{ name: 'b' }, { name: 'a' }]));
    expect(readRegistrationFile(file, 'SOME_FILE', named, byName)).toEqual([{ name: 'b' }, { name: 'a' }]);
  });

  it('refuses a missing file, naming the setting and the file', () => {
    const file = path.join(dir, 'absent.json');
    expect(() => readRegistrationFile(file, 'SOME_FILE', named, byName)).toThrow(new RegExp(`^SOME_FILE ${file}: .*ENOENT`));
  });

  it('refuses text that is not JSON', () => {
    const file = fileWith('[{"name": "a"');
    expect(() => readRegistrationFile(file, 'SOME_FILE', named, byName)).toThrow(new RegExp(`^SOME_FILE ${file}: `));
  });

  it('refuses JSON that is not an array', () => {
    const file = fileWith(JSON.stringify({ name: 'a' }));
    expect(() => readRegistrationFile(file, 'SOME_FILE', named, byName)).toThrow(`SOME_FILE ${file}: must be a JSON array`);
  });

  it('refuses an invalid entry with its index', () => {
    const file = fileWith(JSON.stringify([{ name: 'a' }, { name: 7 }]));
    expect(() => readRegistrationFile(file, 'SOME_FILE', named, byName)).toThrow(`SOME_FILE ${file} entry 1: name must be a string`);
  });

  it('refuses a repeated key, naming the key field', () => {
    const file = fileWith(JSON.stringify([{ name: 'a' }, { name: 'b' }, { name: 'a' }]));
    expect(() => readRegistrationFile(file, 'SOME_FILE', named, byName)).toThrow(`SOME_FILE ${file}: name a appears twice`);
  });
});

describe('the two registration files', () => {
  it('SMART_CLIENTS_FILE refuses a repeated client_id', () => {
    const client = { client_id: 'gw-1', name: 'Gateway', scope: 'system/Observation.c', client_secret: 'a long enough client secret value' };
    const file = fileWith(JSON.stringify([client, client]));
    expect(() => readClientsFile(file)).toThrow(`SMART_CLIENTS_FILE ${file}: client_id gw-1 appears twice`);
    expect(readClientsFile(fileWith(JSON.stringify([client])))).toHaveLength(1);
  });

  it('SMART_USERS_FILE refuses a repeated username and a non-array', () => {
    const user = { username: 'nurse1', fhirUser: 'Practitioner/1', password: 'long enough password' };
    const file = fileWith(JSON.stringify([user, user]));
    expect(() => readUsersFile(file)).toThrow(`SMART_USERS_FILE ${file}: username nurse1 appears twice`);
    const obj = fileWith(JSON.stringify(user));
    expect(() => readUsersFile(obj)).toThrow(`SMART_USERS_FILE ${obj}: must be a JSON array`);
  });
});
