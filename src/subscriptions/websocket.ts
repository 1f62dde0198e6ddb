import type http from 'node:http';
import type { Duplex } from 'node:stream';
import type pino from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';

export interface BindResult {
  /** Subscription ids now bound, or an error text to send back. */
  ids?: string[];
  error?: string;
  /** Backport (bind-with-token) clients get Bundles; R4 (bind) clients get "ping <id>". */
  style: 'r4' | 'backport';
}

export interface HubHooks {
  /** Resolves `bind <id>` (R4) and `bind-with-token <token>` (Backport) requests. */
  /** `authorization`: the upgrade request's Authorization header, for `bind <id>` with auth on. */
  bind(kind: 'id' | 'token', value: string, authorization?: string): Promise<BindResult>;
  /** Called after a successful bind: send the handshake and anything pending. */
  bound(ids: string[], style: BindResult['style']): void;
}

/**
 * Websocket channel on the server's own port. Holds the sockets bound in this process; which
 * instance delivers a subscription's websocket notifications is decided by the delivery leases
 * (an instance only claims subscriptions it has sockets for).
 */
export class WebSocketHub {
  private wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  private bySub = new Map<string, Set<WebSocket>>();

  constructor(
    readonly path: string,
    private readonly hooks: HubHooks,
    private readonly logger: pino.Logger,
  ) {}

  attach(server: http.Server): void {
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (url.pathname !== this.path) return; // another upgrade handler may own it
      const authorization = req.headers.authorization;
      this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, authorization));
    });
  }

  private accept(ws: WebSocket, authorization: string | undefined): void {
    const mine = new Set<string>();
    ws.on('message', (data) => {
      const text = data.toString().trim();
      const m = /^(bind-with-token|bind|unbind)\s+(\S+)$/.exec(text);
      if (!m) {
        if (text !== 'ping') ws.send(`error unknown command; use "bind-with-token <token>" or "bind <id>"`);
        return;
      }
      if (m[1] === 'unbind') {
        this.unbind(ws, m[2]);
        mine.delete(m[2]);
        ws.send(`unbound ${m[2]}`);
        return;
      }
      this.hooks
        .bind(m[1] === 'bind' ? 'id' : 'token', m[2], authorization)
        .then((r) => {
          if (!r.ids) {
            ws.send(`error ${r.error ?? 'bind refused'}`);
            return;
          }
          for (const id of r.ids) {
            mine.add(id);
            const set = this.bySub.get(id) ?? new Set<WebSocket>();
            set.add(ws);
            this.bySub.set(id, set);
          }
          if (r.style === 'r4') for (const id of r.ids) ws.send(`bound ${id}`);
          this.hooks.bound(r.ids, r.style);
        })
        .catch((e: unknown) => {
          this.logger.warn({ err: e }, 'websocket bind failed');
          ws.send('error bind failed');
        });
    });
    ws.on('close', () => {
      for (const id of mine) this.unbind(ws, id);
    });
    ws.on('error', () => ws.terminate());
  }

  private unbind(ws: WebSocket, id: string): void {
    const set = this.bySub.get(id);
    if (!set) return;
    set.delete(ws);
    if (set.size === 0) this.bySub.delete(id);
  }

  boundIds(): string[] {
    return [...this.bySub.keys()];
  }

  isBound(id: string): boolean {
    return (this.bySub.get(id)?.size ?? 0) > 0;
  }

  /** Sends to every socket bound to the subscription; resolves to how many accepted it. */
  async send(id: string, text: string): Promise<number> {
    const sockets = [...(this.bySub.get(id) ?? [])].filter((s) => s.readyState === s.OPEN);
    const results = await Promise.all(
      sockets.map((s) => new Promise<boolean>((resolve) => s.send(text, (err) => resolve(!err)))),
    );
    return results.filter(Boolean).length;
  }

  close(): void {
    for (const ws of this.wss.clients) ws.terminate();
    this.bySub.clear();
    this.wss.close();
  }
}
