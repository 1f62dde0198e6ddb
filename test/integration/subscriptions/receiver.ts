import http from 'node:http';
import type { Bundle, Parameters, Resource } from 'fhir/r4';

export interface Received {
  method: string;
  /** Path and query as requested (an R4 update goes to [endpoint]/[type]/[id]). */
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The body when it is a resource other than a Bundle (R4 criteria updates). */
  resource?: Resource;
  bundle?: Bundle;
  /** The SubscriptionStatus Parameters (first entry), when the body is a notification Bundle. */
  status?: Parameters;
}

/** A real webhook receiver on loopback that records every request; can be switched to failing. */
export class WebhookReceiver {
  readonly received: Received[] = [];
  /** HTTP status to answer with (set to 500/503 to simulate an endpoint that is down). */
  answer = 200;
  private server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      if (this.answer >= 200 && this.answer < 300) {
        const r: Received = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body };
        const parsed = body ? (JSON.parse(body) as Resource) : undefined;
        if (parsed?.resourceType === 'Bundle') {
          r.bundle = parsed as Bundle;
          r.status = r.bundle.entry?.[0]?.resource as Parameters | undefined;
        } else if (parsed) r.resource = parsed;
        this.received.push(r);
        for (const w of this.waiters.splice(0)) w();
      } else {
        this.refused++;
      }
      res.statusCode = this.answer;
      res.end();
    });
  });
  refused = 0;
  private waiters: Array<() => void> = [];
  url = '';

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', () => resolve()));
    const a = this.server.address();
    this.url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}/hook`;
    return this;
  }

  /** Resolves once `pred` holds over what was received (polls on each arrival; gives up after ms). */
  async waitFor(pred: (r: Received[]) => boolean, ms = 20_000): Promise<Received[]> {
    const deadline = Date.now() + ms;
    while (!pred(this.received)) {
      if (Date.now() > deadline) throw new Error(`webhook wait timed out; received ${this.received.length}: ${this.received.map((r) => typeOf(r)).join(', ')}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 200);
      });
    }
    return this.received;
  }

  events(): Received[] {
    return this.received.filter((r) => typeOf(r) === 'event-notification');
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export function typeOf(r: Received): string | undefined {
  return r.status?.parameter?.find((p) => p.name === 'type')?.valueCode ?? (r.body === '' ? 'empty' : undefined);
}

export function eventNumbers(r: Received): number[] {
  return (r.status?.parameter ?? [])
    .filter((p) => p.name === 'notification-event')
    .map((p) => Number(p.part?.find((x) => x.name === 'event-number')?.valueString));
}

export function paramValue(p: Parameters | undefined, name: string): unknown {
  const x = p?.parameter?.find((q) => q.name === name);
  if (!x) return undefined;
  const { name: _n, ...rest } = x;
  return Object.values(rest)[0];
}
