import type { Resource } from 'fhir/r4';
import type { AccessPolicy } from '../auth/types';
import type { CommittedEvent, ResourceRepository } from '../storage';
import type { NewRow } from './numbering';
import type { SubscriptionRegistry } from './registry';
import type { SubscriptionSpec } from './spec';
import { topicFires, type CriteriaEvaluator, type Interaction } from './topics';

/** One subscription an event matched, with the subscriber's policy and the resource to check it on. */
export interface Hit {
  sub: string;
  ev: CommittedEvent;
  policy: AccessPolicy;
  checkOn: Resource;
}

export interface MatchDeps {
  registry: SubscriptionRegistry;
  criteria: CriteriaEvaluator;
  repository: ResourceRepository;
}

function interactionOf(ev: CommittedEvent): Interaction {
  return ev.method === 'DELETE' ? 'delete' : ev.vid === 1 || ev.method === 'POST' ? 'create' : 'update';
}

/** Subscriptions (criteria and topic) that one committed version matches, as the index stands now. */
export async function hitsOf(d: MatchDeps, ev: CommittedEvent, now: Date): Promise<Hit[]> {
  const hits: Hit[] = [];
  const index = d.registry.index;
  const live = (spec: SubscriptionSpec) => !spec.end || Date.parse(spec.end) > now.getTime();
  if (ev.resource) {
    for (const s of index.criteriaCandidates(ev.type, ev.resource)) {
      if (live(s.spec) && index.filtersPass(s, ev.type, ev.resource)) hits.push({ sub: s.spec.id, ev, policy: s.policy, checkOn: ev.resource });
    }
  }
  for (const url of index.topicsFor(ev.type)) {
    const topic = d.registry.topic(url);
    if (!topic) continue;
    let prev: Resource | undefined | null = null;
    const previous = async () => (prev === null ? (prev = await ev.previous()) : prev);
    if (!(await topicFires(topic, { type: ev.type, interaction: interactionOf(ev), current: ev.resource, previous }, d.criteria))) continue;
    const subject = ev.resource ?? (await previous());
    if (!subject) continue;
    for (const s of index.topicCandidates(url, ev.type, subject)) {
      if (live(s.spec) && index.filtersPass(s, ev.type, subject)) hits.push({ sub: s.spec.id, ev, policy: s.policy, checkOn: subject });
    }
  }
  return hits;
}

/**
 * The notification rows the hits of a batch make, per subscription, in commit order. The
 * subscriber's policy decides: a notification never tells about what it could not read.
 */
export async function rowsForHits(repository: ResourceRepository, hits: readonly Hit[], now: Date): Promise<Map<string, NewRow[]>> {
  const bySub = new Map<string, NewRow[]>();
  if (hits.length === 0) return bySub;
  const comps = await compartmentsFor(repository, hits);
  for (const h of hits) {
    if (!h.policy.canRead(h.checkOn, comps.get(h.ev.historyId) ?? [])) continue;
    const rows = bySub.get(h.sub) ?? [];
    if (rows.some((r) => r.historyId === h.ev.historyId)) continue; // several triggers, one event
    const { historyId, type, id, vid, method, ts } = h.ev;
    rows.push({ sub: h.sub, historyId, type, id, vid, method, ts, createdAt: now });
    bySub.set(h.sub, rows);
  }
  return bySub;
}

/** Compartments of the versions a compartment-restricted policy must check (by history id). */
async function compartmentsFor(repository: ResourceRepository, hits: readonly Hit[]): Promise<Map<string, string[]>> {
  const ids = [...new Set(hits.filter((h) => h.policy.readCond(h.ev.type) !== undefined).map((h) => h.ev.historyId))];
  const docs = await repository.versions(ids);
  return new Map(docs.map((d) => [d._id, d.comp ?? []]));
}
