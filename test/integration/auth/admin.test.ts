import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MongoClient, type Db } from 'mongodb';
import pino from 'pino';
import request from 'supertest';
import express from 'express';
import { runAdmin, UsageError } from '../../../src/admin';
import { AuthService } from '../../../src/auth';
import { CLIENTS_COLLECTION } from '../../../src/auth/clients';
import { loadConfig } from '../../../src/config';
import { SearchService } from '../../../src/search/service';
import { basic, makeKey } from './helpers';

let client: MongoClient;
let db: Db;
const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-admin-'));

const config = loadConfig({ BASE_URL: 'http://localhost:1/fhir' });
const criteria = () => SearchService.create({ db, config, types: ['Patient', 'Device', 'Observation'] });

async function admin(...argv: string[]): Promise<string[]> {
  const lines: string[] = [];
  await runAdmin(argv, db, { out: (l) => lines.push(l), readStdin: async () => 'a-secret-of-enough-length\n' });
  return lines;
}

beforeAll(async () => {
  client = await MongoClient.connect(process.env.VIGIL_TEST_MONGODB_URI as string);
  db = client.db(`vigil_test_auth_admin_${randomBytes(4).toString('hex')}`);
});
afterAll(async () => {
  await db?.dropDatabase();
  await client?.close();
});

describe('admin clients', () => {
  it('adds a secret client whose generated secret works at the token endpoint, and only its hash is stored', async () => {
    const out = await admin('clients', 'add', '--id', 'gw-9', '--name', 'Ward gateway', '--scope', 'patient/Observation.c', '--patient', 'p9', '--generate-secret');
    expect(out[0]).toBe('client gw-9 added');
    const secret = /client_secret: (\S+)/.exec(out[1])?.[1] as string;
    expect(secret).toHaveLength(43);
    const stored = await db.collection(CLIENTS_COLLECTION).findOne({ _id: 'gw-9' as never });
    expect(JSON.stringify(stored)).not.toContain(secret);
    expect(stored?.secretHash).toMatch(/^scrypt\$/);

    const svc = await AuthService.create({ db, config, logger: pino({ level: 'silent' }), criteria: await criteria() });
    const app = express().use(svc.router());
    const r = await request(app).post('/auth/token').type('form').set('Authorization', basic('gw-9', secret)).send({ grant_type: 'client_credentials', scope: 'patient/Observation.c' });
    expect(r.status).toBe(200);
    expect(r.body.patient).toBe('p9');

    await admin('clients', 'disable', 'gw-9');
    const off = await request(app).post('/auth/token').type('form').set('Authorization', basic('gw-9', secret)).send({ grant_type: 'client_credentials', scope: 'patient/Observation.c' });
    expect(off.status).toBe(401);
    await admin('clients', 'enable', 'gw-9');
    await svc.close();
  });

  it('adds key-based clients from a JWKS file or URL and lists them', async () => {
    const jwksFile = path.join(dir, 'jwks.json');
    writeFileSync(jwksFile, JSON.stringify({ keys: [makeKey('ES384', 'k1').jwk] }));
    await admin('clients', 'add', '--id', 'backend-1', '--name', 'Analytics', '--scope', 'system/*.rs', '--jwks', jwksFile);
    await admin('clients', 'add', '--id', 'backend-2', '--name', 'Remote keys', '--scope', 'system/Device.rs', '--jwks-uri', 'https://keys.example/jwks.json');
    await admin('clients', 'disable', 'backend-2');
    const list = JSON.parse((await admin('clients', 'list', '--json')).join('\n'));
    expect(list).toEqual([
      { client_id: 'backend-1', name: 'Analytics', scope: 'system/*.rs', auth: 'private_key_jwt (jwks)', disabled: false, source: 'admin' },
      { client_id: 'backend-2', name: 'Remote keys', scope: 'system/Device.rs', auth: 'private_key_jwt (https://keys.example/jwks.json)', disabled: true, source: 'admin' },
      { client_id: 'gw-9', name: 'Ward gateway', scope: 'patient/Observation.c', auth: 'client_secret_basic', patient: 'p9', disabled: false, source: 'admin' },
    ]);
    const text = await admin('clients', 'list');
    expect(text[1]).toMatch(/^backend-2\tDISABLED\tadmin/);
  });

  it.each([
    [['clients', 'add', '--id', 'x', '--name', 'X', '--scope', 'system/*.rs'], /exactly one of --jwks, --jwks-uri, --secret, --generate-secret/],
    [['clients', 'add', '--id', 'x', '--name', 'X', '--scope', 'system/*.rx', '--generate-secret'], /Malformed scope "system\/\*\.rx"/],
    [['clients', 'add', '--id', 'x', '--name', 'X', '--scope', 'system/*.rs', '--secret', 'short'], /at least 16 characters/],
    [['clients', 'add', '--id', 'x', '--name', 'X', '--scope', 'system/*.rs', '--jwks-uri', 'http://keys.example/j'], /must use https/],
    [['clients', 'add', '--id', 'x', '--bogus'], /Unknown option '--bogus'/],
    [['clients', 'disable'], /exactly one client id/],
    [['clients'], /usage:/],
    [['nope'], /usage:/],
  ])('refuses bad input %#', async (argv, reason) => {
    await expect(admin(...argv)).rejects.toThrow(UsageError);
    await expect(admin(...argv)).rejects.toThrow(reason);
  });

  it('refuses duplicate ids and unknown clients', async () => {
    await expect(admin('clients', 'add', '--id', 'gw-9', '--name', 'Again', '--scope', 'system/*.rs', '--generate-secret')).rejects.toThrow('client gw-9 already exists');
    await expect(admin('clients', 'disable', 'ghost')).rejects.toThrow('no client ghost');
  });

  it('prints a secret hash usable as client_secret_hash in SMART_CLIENTS_FILE', async () => {
    const [hash] = await admin('secret-hash');
    expect(hash).toMatch(/^scrypt\$16384\$8\$1\$/);
  });
});

describe('admin keys', () => {
  it('lists, rotates and removes signing keys, never the last one', async () => {
    const svc = await AuthService.create({ db, config, logger: pino({ level: 'silent' }), criteria: await criteria() });
    await svc.close();
    const before = await admin('keys', 'list');
    expect(before).toHaveLength(1);
    const kid = before[0].split('\t')[0];
    const rotated = await admin('keys', 'rotate');
    expect(rotated[0]).toMatch(/^new signing key /);
    expect(await admin('keys', 'list')).toHaveLength(2);
    expect(await admin('keys', 'remove', kid)).toEqual([`key ${kid} removed; tokens it signed are no longer accepted`]);
    const last = (await admin('keys', 'list'))[0].split('\t')[0];
    await expect(admin('keys', 'remove', last)).rejects.toThrow(/only signing key/);
  });
});
