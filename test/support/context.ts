import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { MongoClient, type CommandStartedEvent, type Db } from 'mongodb';
import pino from 'pino';
import supertest from 'supertest';
import { createVigil, type Vigil } from '../../src/app';
import { loadConfig, type Config } from '../../src/config';
import { freePort } from '../../src/storage/embedded';
import { guardServer } from '../../src/http/server-guard';

export interface TestContext {
  vigil: Vigil;
  app: Vigil['app'];
  db: Db;
  config: Config;
  /** supertest agent on the app (or on the listening server when `listen` was asked). */
  request: supertest.Agent;
  /** Set when `listen` was asked: the real server and its base URL. */
  server?: http.Server;
  baseUrl: string;
  close(): Promise<void>;
}

export interface TestContextOptions {
  /** Authentication on (default off, so core tests need no tokens). */
  auth?: boolean;
  /** Listen on a real loopback port (websockets, webhooks, process-level tests). */
  listen?: boolean;
  /** Extra environment for loadConfig. */
  env?: Record<string, string>;
  clock?: () => Date;
  /** Sees every command the app sends to the database (the driver's command monitoring). */
  onCommand?: (e: CommandStartedEvent) => void;
  /** Share another context's database (a second instance on one database); only the context that made it drops it. */
  dbName?: string;
}

/**
 * Builds the real app on a fresh database of the test run's FerretDB (or MONGODB_URI), one
 * database per context, dropped on close.
 */
export async function createTestContext(opts: TestContextOptions = {}): Promise<TestContext> {
  const uri = process.env.VIGIL_TEST_MONGODB_URI;
  if (!uri) throw new Error('VIGIL_TEST_MONGODB_URI is not set: run the tests through jest (globalSetup starts the database)');
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'vigil-test-data-'));
  const port = opts.listen ? await freePort() : 0;
  const baseUrl = opts.listen ? `http://127.0.0.1:${port}/fhir` : 'http://localhost/fhir';
  const config = loadConfig({
    PORT: String(port),
    BASE_URL: baseUrl,
    AUTH_ENABLED: opts.auth ? 'true' : 'false',
    DATA_DIR: dataDir,
    LOG_LEVEL: 'silent',
    // Back-pressure off unless a test asks for it: a loaded test machine must not refuse writes.
    BACKPRESSURE_MAX_OUTBOX_LAG_MS: '0',
    BACKPRESSURE_MAX_DB_LATENCY_MS: '0',
    ...opts.env,
  });
  const dbName = opts.dbName ?? `vigil_test_${randomBytes(6).toString('hex')}`;
  config.dbName = dbName;
  const client = await MongoClient.connect(uri, { monitorCommands: true });
  if (opts.onCommand) client.on('commandStarted', opts.onCommand);
  const db = client.db(dbName);
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const vigil = await createVigil({ config, db, logger, clock: opts.clock });
  await vigil.start();
  let server: http.Server | undefined;
  if (opts.listen) {
    server = http.createServer(vigil.app);
    guardServer(server, logger);
    vigil.attach(server);
    await new Promise<void>((resolve) => server!.listen(port, '127.0.0.1', () => resolve()));
  }
  const request = supertest.agent(server ?? vigil.app);
  return {
    vigil,
    app: vigil.app,
    db,
    config,
    request,
    server,
    baseUrl,
    async close() {
      if (server) {
        server.closeAllConnections?.();
        await new Promise<void>((resolve) => server!.close(() => resolve()));
      }
      await vigil.stop();
      if (!opts.dbName) await db.dropDatabase().catch(() => undefined);
      await client.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export const FHIR_JSON = 'application/fhir+json';

/** A small realistic vital sign: heart rate in beats/min (LOINC 8867-4). */
export function heartRate(patientId: string, value: number, effective = '2024-05-01T10:00:00Z'): Record<string, unknown> {
  return {
    resourceType: 'Observation',
    status: 'final',
    category: [
      {
        coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs', display: 'Vital Signs' }],
      },
    ],
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }], text: 'Heart rate' },
    subject: { reference: `Patient/${patientId}` },
    effectiveDateTime: effective,
    valueQuantity: { value, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
  };
}

export function patient(family = 'Chalmers', given = ['Peter'], identifier = 'MRN-1'): Record<string, unknown> {
  return {
    resourceType: 'Patient',
    identifier: [{ system: 'urn:oid:1.2.36.146.595.217.0.1', value: identifier }],
    active: true,
    name: [{ use: 'official', family, given }],
    gender: 'male',
    birthDate: '1974-12-25',
  };
}

/** POSTs a transaction (or batch) Bundle of `entry` to the base of a test context. */
export function postBundle(ctx: TestContext, entry: unknown[], type: 'transaction' | 'batch' = 'transaction') {
  return ctx.request.post('/fhir').set('Content-Type', FHIR_JSON).send(JSON.stringify({ resourceType: 'Bundle', type, entry }));
}
