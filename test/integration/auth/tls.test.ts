import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createTlsServer, HSTS_VALUE } from '../../../src/auth/tls';

const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-tls-'));
const certFile = path.join(dir, 'cert.pem');
const keyFile = path.join(dir, 'key.pem');

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const maybe = hasOpenssl() ? describe : describe.skip;

maybe('createTlsServer', () => {
  beforeAll(() => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
  });

  it('serves HTTPS with HSTS on every response', async () => {
    const server = createTlsServer({ certFile, keyFile }, (_req, res) => res.end('ok'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const res = await new Promise<{ status?: number; hsts?: string; body: string }>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, path: '/', rejectUnauthorized: false }, (r) => {
          let body = '';
          r.on('data', (d) => (body += d));
          r.on('end', () => resolve({ status: r.statusCode, hsts: r.headers['strict-transport-security'] as string, body }));
        })
        .on('error', reject);
    });
    await new Promise<void>((r) => server.close(() => r()));
    expect(res).toEqual({ status: 200, hsts: HSTS_VALUE, body: 'ok' });
  });

  it('says clearly when the files cannot be read', () => {
    expect(() => createTlsServer({ certFile: path.join(dir, 'missing.pem'), keyFile }, () => undefined)).toThrow(/cannot read TLS certificate or key/);
  });
});
