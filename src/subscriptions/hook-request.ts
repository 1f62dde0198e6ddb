import type { NotificationRow, StateDoc } from '../storage/state/subscriptions';
import { SIGNATURE_HEADER, type NotificationType } from './constants';
import { signatureHeader } from './signature';

export type Outcome = { ok: true } | { ok: false; error: string };
export type HookMethod = 'POST' | 'PUT' | 'DELETE';

/**
 * One rest-hook request: the subscriber's `channel.header` headers, our signature over timestamp
 * and body, and the X-Vigil-* headers; any 2xx is success, anything else an error to retry.
 */
export async function sendHook(r: {
  s: StateDoc;
  method: HookMethod;
  url: string;
  body: string;
  type: NotificationType;
  rows: NotificationRow[];
  now: Date;
  defaultTimeoutMs: number;
}): Promise<Outcome> {
  const { s, body, rows, now } = r;
  const spec = s.spec;
  const headers: Record<string, string> = {};
  for (const h of spec.headers) headers[h.name] = h.value;
  if (body) headers['Content-Type'] = `${spec.payloadMime ?? 'application/fhir+json'}; charset=utf-8`;
  const secrets = s.secrets.filter((x) => !x.notAfter || x.notAfter > now).map((x) => x.value);
  if (secrets.length) headers[SIGNATURE_HEADER] = signatureHeader(Math.floor(now.getTime() / 1000), body, secrets);
  headers['X-Vigil-Subscription'] = s._id;
  headers['X-Vigil-Notification-Type'] = r.type;
  if (rows.length) headers['X-Vigil-Event-Numbers'] = rows.map((x) => x.num).join(',');
  const timeoutMs = spec.timeoutSeconds ? spec.timeoutSeconds * 1000 : r.defaultTimeoutMs;
  const ctl = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  // Our own timer, held until the request ends, settles the send whatever happens to the
  // request underneath: a fetch whose connection the endpoint tore down was once seen never to
  // settle, and a send that never ends holds its subscription's turn (and a graceful stop) forever.
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const e = new Error(`no answer within ${timeoutMs} ms`);
      e.name = 'TimeoutError';
      ctl.abort(e);
      reject(e);
    }, timeoutMs);
  });
  const exchange = async (): Promise<number> => {
    // An empty body is sent as none, so fetch adds no text/plain Content-Type.
    const res = await fetch(r.url, { method: r.method, headers, body: body === '' ? undefined : body, signal: ctl.signal, redirect: 'manual' });
    await res.arrayBuffer().catch(() => undefined);
    return res.status;
  };
  try {
    const status = await Promise.race([exchange(), deadline]);
    return status >= 200 && status < 300 ? { ok: true } : { ok: false, error: `endpoint answered ${status}` };
  } catch (e) {
    const err = e as Error & { cause?: { code?: string } };
    const why = err.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (err.cause?.code ?? err.message);
    return { ok: false, error: `endpoint unreachable: ${why}` };
  } finally {
    clearTimeout(timer);
  }
}
