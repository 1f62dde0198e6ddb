/**
 * Administration of the built-in authorization server: SMART clients and signing keys.
 *
 *   node dist/admin.js clients add --id ID --name NAME --scope "system/Observation.rs" \
 *        (--jwks FILE | --jwks-uri URL | --secret VALUE | --generate-secret) [--patient ID]
 *   node dist/admin.js clients list [--json]
 *   node dist/admin.js clients disable ID        (its tokens stop working within 30 s)
 *   node dist/admin.js clients enable ID
 *   node dist/admin.js users add --username U --fhir-user Practitioner/ID (--password-stdin | --generate-password)
 *   node dist/admin.js users list | users disable U | users enable U | users reset-password U (--password-stdin | --generate-password)
 *   node dist/admin.js keys list | keys rotate | keys remove KID
 *   node dist/admin.js secret-hash               (reads a secret on stdin, prints client_secret_hash)
 *   node dist/admin.js erasure purge PATIENT_ID [--dry-run] | erasure expunge TYPE/ID [--dry-run]
 *
 * It uses the server's configuration (MONGODB_URI, MONGODB_DB, DATA_DIR).
 */
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { MongoClient, type Db } from 'mongodb';
import { runUsersAdmin, USERS_USAGE } from './auth/admin-users';
import { ClientStore, validateRegistration, type ClientRegistration } from './auth/clients';
import { listKeys, removeKey, rotateKey } from './auth/keys';
import { generateSecret, hashSecret } from './auth/secrets';
import { ConfigError, loadConfig, type Config } from './config';
import { ERASURE_USAGE, runErasure } from './erasure/admin';
import { startEmbeddedDatabase, type EmbeddedDatabase } from './storage/embedded';

export class UsageError extends Error {}

const USAGE = `usage:
  admin clients add --id ID --name NAME --scope "SCOPES" (--jwks FILE | --jwks-uri URL | --secret VALUE | --generate-secret | --public)
        [--patient ID] [--redirect-uri URL ...]
  admin clients list [--json]
  admin clients disable ID
  admin clients enable ID
${USERS_USAGE}
  admin keys list
  admin keys rotate
  admin keys remove KID
  admin secret-hash   (secret on stdin)
${ERASURE_USAGE}`;

/** parseArgs, with its complaints (unknown option, missing value) turned into usage errors. */
function options<T extends ParseArgsConfig['options']>(args: string[], opts: T) {
  try {
    return parseArgs({ args, options: opts, strict: true, allowPositionals: false });
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n${USAGE}`);
  }
}

export interface AdminIo {
  out: (line: string) => void;
  readStdin?: () => Promise<string>;
  now?: () => Date;
  /** Server configuration (erasure builds the server's services); default: from the environment. */
  config?: Config;
}

/** Runs one admin command against a database; returns normally or throws UsageError / Error. */
export async function runAdmin(argv: string[], db: Db | undefined, io: AdminIo): Promise<void> {
  const [group, action, ...rest] = argv;
  const now = io.now ?? (() => new Date());
  const needDb = (): Db => {
    if (!db) throw new Error('no database');
    return db;
  };

  if (group === 'secret-hash') {
    const secret = (await (io.readStdin ?? readAllStdin)()).replace(/\r?\n$/, '');
    if (secret.length < 16) throw new UsageError('the secret must have at least 16 characters');
    io.out(await hashSecret(secret));
    return;
  }

  if (group === 'clients') {
    const store = new ClientStore(needDb());
    switch (action) {
      case 'add': {
        const { values } = options(rest, {
          id: { type: 'string' },
          name: { type: 'string' },
          scope: { type: 'string' },
          jwks: { type: 'string' },
          'jwks-uri': { type: 'string' },
          secret: { type: 'string' },
          'generate-secret': { type: 'boolean' },
          patient: { type: 'string' },
          'redirect-uri': { type: 'string', multiple: true },
          public: { type: 'boolean' },
        });
        const generated = values['generate-secret'] ? generateSecret() : undefined;
        let jwks: unknown;
        if (values.jwks !== undefined) {
          try {
            jwks = JSON.parse(readFileSync(values.jwks, 'utf8'));
          } catch (e) {
            throw new UsageError(`--jwks ${values.jwks}: ${(e as Error).message}`);
          }
        }
        const raw: Record<string, unknown> = {
          client_id: values.id,
          name: values.name,
          scope: values.scope,
          ...(jwks !== undefined ? { jwks } : {}),
          ...(values['jwks-uri'] !== undefined ? { jwks_uri: values['jwks-uri'] } : {}),
          ...(values.secret !== undefined ? { client_secret: values.secret } : {}),
          ...(generated ? { client_secret: generated } : {}),
          ...(values.patient !== undefined ? { patient: values.patient } : {}),
          ...(values['redirect-uri'] ? { redirect_uris: values['redirect-uri'] } : {}),
          ...(values.public ? { token_endpoint_auth_method: 'none' } : {}),
        };
        let reg: ClientRegistration;
        try {
          reg = validateRegistration(raw, 'clients add');
        } catch (e) {
          throw new UsageError((e as Error).message.replace(/client_id/, '--id').replace(/one of jwks, jwks_uri, client_secret, client_secret_hash/, 'one of --jwks, --jwks-uri, --secret, --generate-secret'));
        }
        await store.add(reg, now());
        io.out(`client ${reg.client_id} added`);
        if (generated) io.out(`client_secret: ${generated}\n(shown once: store it now; only its hash is kept)`);
        return;
      }
      case 'list': {
        const { values } = options(rest, { json: { type: 'boolean' } });
        const clients = await store.list();
        const view = clients.map((c) => ({
          client_id: c._id,
          name: c.name,
          scope: c.scope,
          auth: c.public ? 'public (PKCE)' : c.jwks ? 'private_key_jwt (jwks)' : c.jwks_uri ? `private_key_jwt (${c.jwks_uri})` : 'client_secret_basic',
          ...(c.redirectUris ? { redirect_uris: c.redirectUris } : {}),
          ...(c.patient ? { patient: c.patient } : {}),
          disabled: c.disabled,
          source: c.source,
        }));
        if (values.json) io.out(JSON.stringify(view, null, 2));
        else if (view.length === 0) io.out('no clients');
        else
          for (const c of view) {
            io.out(`${c.client_id}\t${c.disabled ? 'DISABLED' : 'enabled'}\t${c.source}\t${c.auth}\t${c.patient ? `patient=${c.patient}\t` : ''}${c.scope}\t${c.name}`);
          }
        return;
      }
      case 'disable':
      case 'enable': {
        const id = rest[0];
        if (!id || rest.length !== 1) throw new UsageError(`clients ${action} needs exactly one client id`);
        if (!(await store.setDisabled(id, action === 'disable', now()))) throw new Error(`no client ${id}`);
        io.out(`client ${id} ${action}d`);
        return;
      }
    }
  }

  if (group === 'users') {
    await runUsersAdmin(action, rest, needDb(), {
      out: io.out,
      readStdin: io.readStdin ?? readAllStdin,
      now,
      usage: (m) => new UsageError(`${m}\n${USAGE}`),
    });
    return;
  }

  if (group === 'erasure') {
    await runErasure([action, ...rest], needDb(), io.config ?? loadConfig(), io.out, (msg) => {
      throw new UsageError(msg);
    });
    return;
  }

  if (group === 'keys') {
    switch (action) {
      case 'list':
        for (const k of await listKeys(needDb())) io.out(`${k.kid}\t${k.alg}\t${k.createdAt.toISOString()}`);
        return;
      case 'rotate': {
        const kid = await rotateKey(needDb(), now());
        io.out(`new signing key ${kid}; every instance signs with it within a minute. Remove the old key after the token lifetime (5 min) has passed.`);
        return;
      }
      case 'remove': {
        const kid = rest[0];
        if (!kid || rest.length !== 1) throw new UsageError('keys remove needs exactly one kid');
        if (!(await removeKey(needDb(), kid))) throw new Error(`no key ${kid}`);
        io.out(`key ${kid} removed; tokens it signed are no longer accepted`);
        return;
      }
    }
  }
  throw new UsageError(USAGE);
}

function readAllStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    let s = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (d) => (s += d));
    process.stdin.on('end', () => resolve(s));
    process.stdin.on('error', reject);
  });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === 'secret-hash') {
    await runAdmin(argv, undefined, { out: (l) => process.stdout.write(l + '\n') });
    return;
  }
  if (!['clients', 'keys', 'users', 'erasure'].includes(argv[0] ?? '')) throw new UsageError(USAGE);
  const config = loadConfig();
  let embedded: EmbeddedDatabase | undefined;
  let uri = config.mongodbUri;
  if (!uri) {
    process.stderr.write(`No MONGODB_URI: opening the embedded database under ${config.dataDir}.\n`);
    embedded = await startEmbeddedDatabase(config.dataDir, { syncMs: config.embeddedSyncMs });
    uri = embedded.uri;
  }
  const client = new MongoClient(uri, { appName: 'vigil-admin', serverSelectionTimeoutMS: 10_000 });
  try {
    await client.connect();
    await runAdmin(argv, client.db(config.dbName), { out: (l) => process.stdout.write(l + '\n') });
  } finally {
    await client.close();
    await embedded?.stop();
  }
}

if (require.main === module) {
  main().catch((e: unknown) => {
    if (e instanceof UsageError || e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`admin: ${(e as Error).message}\n`);
    process.exit(1);
  });
}
