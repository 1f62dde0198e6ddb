import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/storage/embedded';

export interface ServerProcess {
  proc: ChildProcess;
  port: number;
  baseUrl: string;
  /** Resolves with the exit code or signal once the process has ended. */
  exited: Promise<string>;
  /** Ends the process (SIGTERM by default) and waits for it. */
  stop(signal?: NodeJS.Signals): Promise<string>;
}

const ROOT = path.resolve(__dirname, '..', '..');

/**
 * Starts the real server (src/server.ts through ts-node) as its own process against the test
 * run's database, for tests that kill and restart it. Resolves when it prints its ready line.
 */
export async function startServerProcess(env: Record<string, string>, opts: { startTimeoutMs?: number } = {}): Promise<ServerProcess> {
  const startTimeoutMs = opts.startTimeoutMs ?? 60_000;
  const uri = process.env.VIGIL_TEST_MONGODB_URI;
  if (!uri) throw new Error('VIGIL_TEST_MONGODB_URI is not set');
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}/fhir`;
  const proc = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(ROOT, 'src', 'server.ts')], {
    cwd: ROOT,
    env: {
      ...process.env,
      MONGODB_URI: uri,
      PORT: String(port),
      BASE_URL: baseUrl,
      LOG_LEVEL: 'error',
      AUTH_ENABLED: 'false',
      BACKPRESSURE_MAX_OUTBOX_LAG_MS: '0',
      BACKPRESSURE_MAX_DB_LATENCY_MS: '0',
      DATA_DIR: mkdtempSync(path.join(os.tmpdir(), 'vigil-proc-')),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<string>((resolve) => proc.once('exit', (code, signal) => resolve(signal ?? String(code))));
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start within ${startTimeoutMs / 1000} s:\n${output}`)), startTimeoutMs);
    const onData = (d: Buffer) => {
      output += d.toString();
      if (output.includes('ready: FHIR base')) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    void exited.then((how) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${how}) during start-up:\n${output}`));
    });
  });
  return {
    proc,
    port,
    baseUrl,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}
