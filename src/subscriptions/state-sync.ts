import type { Subscription } from 'fhir/r4';
import type pino from 'pino';
import type { CommittedEvent } from '../storage';
import type { OwnerDoc, StateDoc, StoredPrincipal, SubscriptionState } from '../storage/state/subscriptions';
import { fingerprint } from './fingerprint';
import type { SubscriptionRegistry } from './registry';
import { parseSubscription, type SubscriptionSpec } from './spec';
import type { CriteriaEvaluator } from './topics';

export interface SyncDeps {
  state: SubscriptionState;
  registry: SubscriptionRegistry;
  criteria: CriteriaEvaluator;
  logger: pino.Logger;
  now(): Date;
  /** A handshake is due for these subscriptions (leave the mark, start now). */
  handshakeDue(ids: string[]): Promise<void>;
}

/**
 * A committed version of a Subscription becomes its stored state (which only this writes, in
 * commit order), its entry in the active index, and a handshake when it asks for one.
 */
export async function syncSubscription(d: SyncDeps, ev: CommittedEvent): Promise<void> {
  const existing = await d.state.state(ev.id);
  if (existing && existing.resourceVid >= ev.vid) return; // a replay of something already applied
  if (ev.method === 'DELETE' || !ev.resource) {
    if (existing) await d.state.markStateDeleted(ev.id, ev.vid, d.now());
    d.registry.drop(ev.id);
    await d.registry.bumpGeneration();
    return;
  }
  let spec: SubscriptionSpec;
  try {
    spec = parseSubscription(ev.resource as Subscription, { criteria: d.criteria, topic: (u) => d.registry.topic(u) });
  } catch (e) {
    d.logger.warn({ err: e, subscription: ev.id }, 'stored Subscription cannot be evaluated; ignoring it');
    d.registry.drop(ev.id);
    return;
  }
  const owner = (await d.state.owner(ev.id)) ?? (await claimParkedOwner(d.state, ev.resource as Subscription));
  // Without a recorded writer nothing is readable: notifications would carry nothing.
  const principal: StoredPrincipal = owner?.principal ?? { clientId: 'unknown', scopes: [] };
  const doc: StateDoc = {
    _id: ev.id,
    spec,
    resourceVid: ev.vid,
    status: spec.status,
    deleted: false,
    principal,
    secrets: owner?.secrets ?? [],
    handshakeVid: spec.status === 'requested' ? ev.vid : (existing?.handshakeVid ?? 0),
    updatedAt: d.now(),
  };
  // Only onCommitted writes this document, in commit order; the vid check drops stale replays.
  await d.state.putState(doc, existing?.resourceVid);
  d.registry.put(doc);
  await d.registry.bumpGeneration();
  if (spec.status === 'requested') await d.handshakeDue([ev.id]);
}

/** A create written without an id parked its writer under the content's fingerprint. */
function claimParkedOwner(state: SubscriptionState, sub: Subscription): Promise<OwnerDoc | null> {
  return state.claimPendingOwner(fingerprint(sub), sub.id!);
}
