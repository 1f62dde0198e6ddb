import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MongoClient, type Db } from 'mongodb';
import { runAdmin, UsageError } from '../../../src/admin';
import { ClientStore, validateRegistration } from '../../../src/auth/clients';
import { readUsersFile, UserStore, USERS_COLLECTION } from '../../../src/auth/users';

/** `admin users ...` and `admin clients add --public`, against a real database. */
let client: MongoClient;
let db: Db;
let stdin = '';

async function admin(...argv: string[]): Promise<string[]> {
  const lines: string[] = [];
  await runAdmin(argv, db, { out: (l) => lines.push(l), readStdin: async () => stdin });
  return lines;
}

beforeAll(async () => {
  client = await MongoClient.connect(process.env.VIGIL_TEST_MONGODB_URI as string);
  db = client.db(`vigil_test_smart_admin_${randomBytes(4).toString('hex')}`);
});
afterAll(async () => {
  await db?.dropDatabase();
  await client?.close();
});

describe('admin users', () => {
  it('adds (password from stdin, only its hash kept), lists, disables, enables and resets', async () => {
    stdin = 'correct horse battery\n';
    expect(await admin('users', 'add', '--username', 'dr.a', '--fhir-user', 'Practitioner/pr1', '--name', 'Dr A', '--password-stdin')).toEqual(['user dr.a added (Practitioner/pr1)']);
    const doc = await db.collection(USERS_COLLECTION).findOne({ _id: 'dr.a' as never });
    expect(doc?.passwordHash).toMatch(/^scrypt\$/);
    expect(JSON.stringify(doc)).not.toContain('correct horse');
    const users = new UserStore(db);
    expect(await users.verify('dr.a', 'correct horse battery')).toBeDefined();

    const list = JSON.parse((await admin('users', 'list', '--json')).join('\n'));
    expect(list).toEqual([{ username: 'dr.a', fhirUser: 'Practitioner/pr1', name: 'Dr A', disabled: false, source: 'admin' }]);
    expect(await admin('users', 'disable', 'dr.a')).toEqual(['user dr.a disabled']);
    expect(await users.verify('dr.a', 'correct horse battery')).toBeUndefined();
    await admin('users', 'enable', 'dr.a');

    const out = await admin('users', 'reset-password', 'dr.a', '--generate-password');
    const generated = /^password: (\S+)/.exec(out[1])?.[1] as string;
    expect(await users.verify('dr.a', 'correct horse battery')).toBeUndefined();
    expect(await users.verify('dr.a', generated)).toBeDefined();
  });

  it.each([
    [['users', 'add', '--username', 'x', '--fhir-user', 'Observation/1', '--generate-password'], /--fhir-user must be Patient/],
    [['users', 'add', '--username', 'y', '--fhir-user', 'Patient/1'], /exactly one of --password-stdin, --generate-password/],
    [['users', 'add', '--username', 'z', '--fhir-user', 'Patient/1', '--password', 'on-the-command-line'], /Unknown option/],
    [['users', 'disable'], /exactly one username/],
  ])('refuses bad usage %#', async (argv, msg) => {
    stdin = 'long enough password';
    await expect(admin(...argv)).rejects.toThrow(UsageError);
    await expect(admin(...argv)).rejects.toThrow(msg);
  });

  it('refuses a short password and an existing username', async () => {
    stdin = 'short';
    await expect(admin('users', 'add', '--username', 'p1', '--fhir-user', 'Patient/p1', '--password-stdin')).rejects.toThrow(/at least 10/);
    stdin = 'long enough password';
    await admin('users', 'add', '--username', 'p2', '--fhir-user', 'Patient/p2', '--password-stdin');
    await expect(admin('users', 'add', '--username', 'p2', '--fhir-user', 'Patient/p2', '--password-stdin')).rejects.toThrow(/already exists/);
  });
});

describe('users file', () => {
  it('validates entries and says exactly what is wrong', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-users-'));
    const file = path.join(dir, 'users.json');
    writeFileSync(file, JSON.stringify([{ username: 'a', fhirUser: 'Patient/1', password: 'long enough password' }, { username: 'a', fhirUser: 'Patient/2', password: 'long enough password' }]));
    expect(() => readUsersFile(file)).toThrow(/username a appears twice/);
    writeFileSync(file, JSON.stringify([{ username: 'b', fhirUser: 'Patient/1' }]));
    expect(() => readUsersFile(file)).toThrow(/exactly one of password_hash, password/);
    writeFileSync(file, JSON.stringify([{ username: 'c', fhirUser: 'Patient/1', password_hash: 'nope' }]));
    expect(() => readUsersFile(file)).toThrow(/password_hash must be a hash/);
  });
});

describe('admin clients add --public', () => {
  it('registers a public app with exact redirect URIs and no credential', async () => {
    await admin('clients', 'add', '--id', 'phone-app', '--name', 'Phone app', '--scope', 'launch/patient patient/Observation.rs', '--public', '--redirect-uri', 'https://app.example.org/cb', '--redirect-uri', 'http://localhost:3000/cb');
    const c = await new ClientStore(db).get('phone-app');
    expect(c).toMatchObject({ public: true, redirectUris: ['https://app.example.org/cb', 'http://localhost:3000/cb'] });
    expect(c?.secretHash).toBeUndefined();
  });

  it.each([
    [{ token_endpoint_auth_method: 'none', scope: 'patient/Observation.rs' }, /needs redirect_uris/],
    [{ token_endpoint_auth_method: 'none', scope: 'system/Observation.rs', redirect_uris: ['https://a.example/cb'] }, /cannot hold system/],
    [{ token_endpoint_auth_method: 'none', scope: 'patient/Observation.rs', redirect_uris: ['http://a.example/cb'] }, /must be https/],
    [{ token_endpoint_auth_method: 'none', scope: 'patient/Observation.rs', redirect_uris: ['https://a.example/cb#x'] }, /fragment/],
    [{ token_endpoint_auth_method: 'none', scope: 'patient/Observation.rs', redirect_uris: ['https://a.example/cb'], client_secret: 'x'.repeat(20) }, /has no jwks/],
  ])('refuses a bad public registration %#', (over, msg) => {
    expect(() => validateRegistration({ client_id: 'x', name: 'X', ...over }, 'test')).toThrow(msg);
  });
});
