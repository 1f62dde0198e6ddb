import type { Subscription } from 'fhir/r4';
import type pino from 'pino';
import type { CommittedEvent } from '../storage';
import type { OwnerDoc, StateDoc, StoredPrincipal, SubscriptionState } from '../storage/state/subscriptions';
import { fingerprint } from './fingerprint';
import type { SubscriptionRegistry } from './registry';
import type { StateCache } from './state-cache';
import { parseSubscription, type SubscriptionSpec } from './spec';
import type { CriteriaEvaluator } from './topics';

export interface SyncDeps {
  state: SubscriptionState;
  /** Stored states in memory while the outbox lease is held (this is their only writer). */
  cache: StateCache;
  registry: SubscriptionRegistry;
  criteria: CriteriaEvaluator;
  logger: pino.Logger;
  now(): Date;
}

/** What applying one version changed: whether other instances must reload, and a handshake to run. */
export interface SyncResult {
  changed: boolean;
  handshake?: string;
}

/**
 * Applies a run of consecutive Subscription versions of one outbox batch: versions of different
 * Subscriptions at once (they touch different documents), versions of one Subscription in commit
 * order; then one generation bump for the run (other instances reload once, not once per
 * version). Returns the Subscriptions whose handshake is due.
 */
export async function syncSubscriptions(d: SyncDeps, events: readonly CommittedEvent[]): Promise<string[]> {
  const byId = new Map<string, CommittedEvent[]>();
  for (const ev of events) byId.set(ev.id, [...(byId.get(ev.id) ?? []), ev]);
  const results = await Promise.all(
    [...byId.values()].map(async (evs) => {
      const out: SyncResult[] = [];
      for (const ev of evs) out.push(await syncSubscription(d, ev));
      return out;
    }),
  );
  const flat = results.flat();
  if (flat.some((r) => r.changed)) await d.registry.bumpGeneration();
  return [...new Set(flat.flatMap((r) => (r.handshake ? [r.handshake] : [])))];
}

/**
 * A committed version of a Subscription becomes its stored state (which only this writes, in
 * commit order), its entry in the active index, and a handshake when it asks for one. The caller
 * bumps the generation when `changed` (after the state is stored).
 */
export async function syncSubscription(d: SyncDeps, ev: CommittedEvent): Promise<SyncResult> {
  const existing = await d.cache.get(ev.id);
  if (existing && existing.resourceVid >= ev.vid) return { changed: false }; // a replay of something already applied
  if (ev.method === 'DELETE' || !ev.resource) {
    if (existing) await d.state.markStateDeleted(ev.id, ev.vid, d.now());
    d.cache.forget(ev.id);
    d.registry.drop(ev.id);
    return { changed: true };
  }
  let spec: SubscriptionSpec;
  try {
    spec = parseSubscription(ev.resource as Subscription, { criteria: d.criteria, topic: (u) => d.registry.topic(u) });
  } catch (e) {
    d.logger.warn({ err: e, subscription: ev.id }, 'stored Subscription cannot be evaluated; ignoring it');
    d.registry.drop(ev.id);
    return { changed: false };
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
  d.cache.remember(doc._id, doc);
  d.registry.put(doc);
  return { changed: true, handshake: spec.status === 'requested' ? ev.id : undefined };
}

/** A create written without an id parked its writer under the content's fingerprint. */
function claimParkedOwner(state: SubscriptionState, sub: Subscription): Promise<OwnerDoc | null> {
  return state.claimPendingOwner(fingerprint(sub), sub.id!);
}
