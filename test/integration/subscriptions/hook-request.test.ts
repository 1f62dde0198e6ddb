import http from 'node:http';
import net from 'node:net';
import type { StateDoc } from '../../../src/storage/state/subscriptions';
import { sendHook } from '../../../src/subscriptions/hook-request';

/**
 * One rest-hook send against real endpoints that misbehave: every send ends, within its
 * timeout, with an outcome that says what went wrong (a send that never ends would hold its
 * subscription's turn, and a graceful stop, for good).
 */
function state(endpoint: string, timeoutSeconds?: number): StateDoc {
  return {
    _id: 'sub-hook-request',
    spec: { id: 'sub-hook-request', kind: 'topic', filters: [], channelType: 'rest-hook', endpoint, headers: [], payloadMime: 'application/fhir+json', content: 'id-only', maxCount: 10, status: 'active', timeoutSeconds },
    resourceVid: 1,
    status: 'active',
    deleted: false,
    principal: { clientId: 'hook-request-test', scopes: [] },
    secrets: [],
    handshakeVid: 1,
    updatedAt: new Date(),
  };
}

async function listen(server: http.Server | net.Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address() as net.AddressInfo;
  return `http://127.0.0.1:${addr.port}/hook`;
}

const send = (url: string, defaultTimeoutMs = 400) =>
  sendHook({ s: state(url), method: 'POST', url, body: '{"resourceType":"Bundle"}', type: 'event-notification', rows: [], now: new Date(), defaultTimeoutMs });

describe('rest-hook send', () => {
  const servers: Array<http.Server | net.Server> = [];
  const sockets = new Set<net.Socket>();
  afterEach(async () => {
    for (const s of sockets) s.destroy();
    sockets.clear();
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  });
  const track = <S extends http.Server | net.Server>(s: S): S => {
    s.on('connection', (c: net.Socket) => sockets.add(c));
    servers.push(s);
    return s;
  };

  it('succeeds on a 2xx and reports any other status', async () => {
    let status = 204;
    const url = await listen(track(http.createServer((_req, res) => res.writeHead(status).end())));
    expect(await send(url)).toEqual({ ok: true });
    status = 410;
    expect(await send(url)).toEqual({ ok: false, error: 'endpoint answered 410' });
  });

  it('ends at its timeout when the endpoint accepts the connection and never answers', async () => {
    const url = await listen(track(net.createServer(() => undefined)));
    expect(await send(url)).toEqual({ ok: false, error: 'endpoint unreachable: no answer within 400 ms' });
  });

  it('ends at its timeout when the endpoint sends its headers and then stalls the body', async () => {
    const url = await listen(
      track(
        http.createServer((_req, res) => {
          res.writeHead(200, { 'Content-Length': '100' });
          res.write('partial');
        }),
      ),
    );
    expect(await send(url)).toEqual({ ok: false, error: 'endpoint unreachable: no answer within 400 ms' });
  });

  it('reports an endpoint that tears the connection down mid-request', async () => {
    const url = await listen(track(net.createServer((c) => c.once('data', () => c.destroy()))));
    const out = await send(url, 10_000);
    expect(out.ok).toBe(false);
    expect(out.ok === false && out.error).toMatch(/^endpoint unreachable: /);
    expect(out.ok === false && out.error).not.toMatch(/no answer within/);
  });

  it('uses the subscription timeout over the default one', async () => {
    const url = await listen(track(net.createServer(() => undefined)));
    const out = await sendHook({ s: state(url, 1), method: 'POST', url, body: '', type: 'heartbeat', rows: [], now: new Date(), defaultTimeoutMs: 60_000 });
    expect(out).toEqual({ ok: false, error: 'endpoint unreachable: no answer within 1000 ms' });
  });
});
