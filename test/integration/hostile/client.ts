import http from 'node:http';
import net from 'node:net';

export interface Sent {
  method: string;
  /** Raw path and query, sent as is (ASCII). */
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
}

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  ms: number;
}

/** One HTTP request with exactly the bytes given (no client-side encoding or validation). */
export function send(port: number, r: Sent): Promise<Answer> {
  const started = Date.now();
  const body = r.body === undefined ? undefined : Buffer.isBuffer(r.body) ? r.body : Buffer.from(r.body, 'utf8');
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: r.method,
        path: r.path,
        headers: { ...(body ? { 'Content-Length': String(body.length) } : {}), ...r.headers },
        agent: false,
        insecureHTTPParser: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8'), ms: Date.now() - started }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Raw bytes on a fresh connection; the answer's status line and body (the server closes it). */
export function sendRaw(port: number, bytes: Buffer | string): Promise<Answer> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      const all = Buffer.concat(chunks).toString('latin1');
      const head = all.slice(0, Math.max(0, all.indexOf('\r\n\r\n')));
      const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
      const headers: http.IncomingHttpHeaders = {};
      for (const line of head.split('\r\n').slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      const text = Buffer.from(all.slice(all.indexOf('\r\n\r\n') + 4), 'latin1').toString('utf8');
      resolve({ status: m ? Number(m[1]) : 0, headers, text, ms: Date.now() - started });
    });
    socket.end(bytes);
  });
}

/** True when the text is an OperationOutcome with at least one issue. */
export function isOutcome(text: string): boolean {
  try {
    const b = JSON.parse(text) as { resourceType?: string; issue?: unknown[] };
    return b.resourceType === 'OperationOutcome' && Array.isArray(b.issue) && b.issue.length > 0;
  } catch {
    return false;
  }
}
