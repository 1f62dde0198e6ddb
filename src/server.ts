import http from 'node:http';
import { MongoClient } from 'mongodb';
import pino from 'pino';
import { createVigil } from './app';
import { createTlsServer } from './auth';
import { ConfigError, loadConfig, type Config } from './config';
import { startEmbeddedDatabase, type EmbeddedDatabase } from './storage/embedded';
import { guardServer } from './http/server-guard';
import { VERSION } from './version';

/**
 * Fault injection for the crash-recovery tests: VIGIL_TEST_CRASH_AT=after-history|after-commit
 * makes the process kill itself at that point of a transaction commit. Unset in real use.
 */
function crashPoint(): ((point: string) => void) | undefined {
  const at = process.env.VIGIL_TEST_CRASH_AT;
  if (!at) return undefined;
  return (point) => {
    if (point === at) process.kill(process.pid, 'SIGKILL');
  };
}

function warnAuthOff(logger: pino.Logger): void {
  const line = '!'.repeat(78);
  const msg = [
    line,
    '!! AUTH IS DISABLED (AUTH_ENABLED=false): every caller can read and write all patient data.',
    '!! Use this only for local experiments, never with real patients.',
    line,
  ].join('\n');
  process.stderr.write(msg + '\n');
  logger.warn('authentication is disabled (AUTH_ENABLED=false)');
}

/** The embedded database, stopped on any way out so no FerretDB process is left behind. */
let embedded: EmbeddedDatabase | undefined;

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`vigil: configuration error: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const logger = pino({
    level: config.logLevel,
    base: { service: 'vigil' },
    redact: ['req.headers.authorization', 'authorization', 'token', 'access_token'],
  });
  if (!config.authEnabled) warnAuthOff(logger);

  let uri = config.mongodbUri;
  if (!uri) {
    embedded = await startEmbeddedDatabase(config.dataDir, { log: (m) => logger.info(m), syncMs: config.embeddedSyncMs });
    uri = embedded.uri;
  }
  // Command monitoring feeds the database latency metrics and back-pressure.
  const client = new MongoClient(uri, { appName: 'vigil', serverSelectionTimeoutMS: 10_000, monitorCommands: true });
  await client.connect();
  const db = client.db(config.dbName);
  const bulkCrash = Number(process.env.VIGIL_TEST_BULK_CRASH_AFTER_CHUNKS) || undefined;
  const vigil = await createVigil({ config, db, logger, crashPoint: crashPoint(), bulkCrashAfterChunks: bulkCrash });
  await vigil.start();

  const server: http.Server =
    config.tlsCertFile && config.tlsKeyFile
      ? createTlsServer({ certFile: config.tlsCertFile, keyFile: config.tlsKeyFile }, vigil.app)
      : http.createServer(vigil.app);
  server.requestTimeout = 60_000;
  server.headersTimeout = 30_000;
  guardServer(server, logger);
  vigil.attach(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.port;
  logger.info({ port, version: VERSION, database: embedded ? 'embedded FerretDB' : 'MONGODB_URI' }, 'vigil ready');
  process.stdout.write(`Vigil ${VERSION} ready: FHIR base ${config.baseUrl}\n`);

  let shuttingDown = false;
  const shutdown = async (signal: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    logger.info({ signal }, 'shutting down: draining requests');
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections?.();
    const force = setTimeout(() => server.closeAllConnections?.(), 10_000);
    await closed;
    clearTimeout(force);
    await vigil.stop();
    await client.close();
    await embedded?.stop();
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch(async (e: unknown) => {
  process.stderr.write(`vigil: failed to start: ${(e as Error).stack ?? String(e)}\n`);
  await embedded?.stop().catch(() => undefined);
  process.exit(1);
});
