import type pino from 'pino';
import type { SubscriptionState } from '../storage/state/subscriptions';
import type { DeliveryWorker } from './delivery';
import type { BindResult } from './websocket';

export interface BindingDeps {
  state: SubscriptionState;
  worker: DeliveryWorker;
  logger: pino.Logger;
  authEnabled: boolean;
  /** With auth on: whether the upgrade's bearer token may read Subscription `id` (a refusal text, or undefined). */
  authorizeBind?(authorization: string | undefined, id: string): Promise<string | undefined>;
  now(): Date;
}

/** Resolves `bind <id>` (R4) and `bind-with-token <token>` (Backport) requests of websocket clients. */
export async function resolveBind(d: BindingDeps, kind: 'id' | 'token', value: string, authorization?: string): Promise<BindResult> {
  if (kind === 'id') {
    // R4 `bind <id>` carries no credential of its own: the upgrade request's bearer token must read the Subscription.
    if (d.authEnabled) {
      const refused = d.authorizeBind
        ? await d.authorizeBind(authorization, value)
        : 'bind <id> needs a token here; call Subscription/<id>/$get-ws-binding-token and send "bind-with-token <token>"';
      if (refused) return { style: 'r4', error: refused };
    }
    const s = await d.state.state(value);
    if (!s || s.deleted || s.spec.channelType !== 'websocket') return { style: 'r4', error: `no websocket Subscription ${value}` };
    return { style: 'r4', ids: [value] };
  }
  const t = await d.state.token(value);
  if (!t || t.exp <= d.now()) return { style: 'backport', error: 'token unknown or expired' };
  return { style: 'backport', ids: t.subs };
}

/** A client bound: topic subscriptions get their handshake Bundle, then anything pending. */
export function onBound(d: BindingDeps, ids: string[]): void {
  void (async () => {
    for (const id of ids) {
      const s = await d.state.state(id);
      if (s?.spec.kind === 'topic') await d.worker.notifier.bundleToWebsocket(s, 'handshake');
    }
    d.worker.kick(ids);
  })().catch((e: unknown) => d.logger.warn({ err: e }, 'websocket handshake failed'));
}
