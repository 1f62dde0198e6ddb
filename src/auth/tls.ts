import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { RequestListener } from 'node:http';

/** One year, subdomains included: once a deployment speaks HTTPS directly it should never fall back. */
export const HSTS_VALUE = 'max-age=31536000; includeSubDomains';

/**
 * Direct HTTPS for deployments without a TLS-terminating proxy (TLS_CERT_FILE / TLS_KEY_FILE).
 * TLS 1.2 is the floor; every response carries Strict-Transport-Security.
 */
export function createTlsServer(opts: { certFile: string; keyFile: string }, app: RequestListener): https.Server {
  let cert: Buffer;
  let key: Buffer;
  try {
    cert = readFileSync(opts.certFile);
    key = readFileSync(opts.keyFile);
  } catch (e) {
    throw new Error(`cannot read TLS certificate or key: ${(e as Error).message}`);
  }
  return https.createServer({ cert, key, minVersion: 'TLSv1.2' }, (req, res) => {
    res.setHeader('Strict-Transport-Security', HSTS_VALUE);
    app(req, res);
  });
}
