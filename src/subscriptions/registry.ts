import type pino from 'pino';
import type { AccessPolicy } from '../auth/types';
import type { StateDoc, StoredPrincipal, SubscriptionState } from '../storage/state/subscriptions';
import type { SubscriptionStatusCode } from './constants';
import { ActiveIndex } from './matcher';
import type { SubscriptionSpec } from './spec';
import { compileTopic, type CompiledTopic, type CriteriaEvaluator, type SubscriptionTopicResource } from './topics';

export const LIVE_STATUSES: SubscriptionStatusCode[] = ['requested', 'active', 'error'];

/** Enough of a state document to index (a deletion carries only the id). */
export type IndexableState = Pick<StateDoc, '_id' | 'status' | 'deleted'> & { spec?: SubscriptionSpec; principal?: StoredPrincipal; resourceVid?: number; updatedAt?: Date };

function versionKey(s: IndexableState): string {
  return `${s.resourceVid}|${s.status}|${s.updatedAt?.getTime?.() ?? ''}`;
}

/**
 * The live subscriptions of this process: the compiled topics and the active index built from
 * the stored states, kept in step with other instances through the shared generation.
 */
export class SubscriptionRegistry {
  readonly index: ActiveIndex;
  private topics = new Map<string, CompiledTopic>();
  private generation = -1;
  /** The outbox lease epoch in which the generation was last looked at. */
  private freshEpoch?: number;
  private indexedIds = new Set<string>();
  /** resourceVid/status/updatedAt of what is indexed, to skip recompiling unchanged subscriptions. */
  private indexedVersion = new Map<string, string>();

  constructor(
    private readonly deps: {
      state: SubscriptionState;
      criteria: CriteriaEvaluator;
      logger: pino.Logger;
      shipped: SubscriptionTopicResource[];
      policyFor(p: StoredPrincipal): AccessPolicy;
    },
  ) {
    this.index = new ActiveIndex(deps.criteria);
  }

  topic(url: string): CompiledTopic | undefined {
    return this.topics.get(url);
  }

  topicUrls(): string[] {
    return [...this.topics.keys()];
  }

  /** Topics are the ones shipped in ig/ (their Basic form is written by the server only). */
  reloadTopics(): void {
    const next = new Map<string, CompiledTopic>();
    for (const t of this.deps.shipped) {
      try {
        if (t.status === 'retired') continue;
        next.set(t.url, compileTopic(t, this.deps.criteria));
      } catch (e) {
        this.deps.logger.warn({ err: e, topic: t.url }, 'SubscriptionTopic ignored: it cannot be evaluated');
      }
    }
    this.topics = next;
  }

  /**
   * Another instance changed subscriptions (or topics) when the shared generation moved. Only
   * the outbox consumer moves it, so within one outbox lease epoch (`epoch`, see BatchInfo) one
   * look is enough: after it, only this instance's own consumer changes anything.
   */
  async refreshIfStale(epoch?: number): Promise<void> {
    if (epoch !== undefined && epoch === this.freshEpoch) return;
    const g = await this.deps.state.generation();
    if (g !== this.generation) {
      this.reloadTopics();
      await this.reload(g);
    }
    this.freshEpoch = epoch;
  }

  /** Whether the index was checked against the generation during lease epoch `epoch` (and so is current). */
  isFreshIn(epoch: number | undefined): boolean {
    return epoch !== undefined && epoch === this.freshEpoch;
  }

  /** Tells every instance (this one included) that subscriptions changed. */
  async bumpGeneration(): Promise<void> {
    const n = await this.deps.state.bumpGeneration();
    // Skipped numbers mean someone else changed something too: reload on the next batch.
    if (n === this.generation + 1) this.generation = n;
    else this.freshEpoch = undefined;
  }

  async reload(generation?: number): Promise<void> {
    const g = generation ?? (await this.deps.state.generation());
    const states = await this.deps.state.liveStates(LIVE_STATUSES);
    const seen = new Set<string>();
    let compiled = 0;
    for (const s of states) {
      seen.add(s._id);
      // Unchanged since it was indexed: keep the compiled entry (compiling is the costly part).
      if (this.indexedVersion.get(s._id) === versionKey(s)) continue;
      this.put(s);
      // Let requests and deliveries run between chunks of a large reload.
      if (++compiled % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    for (const id of [...this.indexedIds]) if (!seen.has(id)) this.drop(id);
    this.generation = g;
  }

  /** Indexes (or unindexes) one subscription as its state says. */
  put(s: IndexableState): void {
    this.indexedVersion.delete(s._id);
    if (s.deleted || !LIVE_STATUSES.includes(s.status) || !s.spec || !s.principal) {
      this.drop(s._id);
      return;
    }
    try {
      const topicTypes = s.spec.topic ? this.topics.get(s.spec.topic)?.resourceTypes : undefined;
      if (s.spec.kind === 'topic' && !topicTypes) throw new Error(`unknown topic ${s.spec.topic}`);
      this.index.put(s.spec, this.deps.policyFor(s.principal), topicTypes);
      this.indexedIds.add(s._id);
      if (s.resourceVid !== undefined) this.indexedVersion.set(s._id, versionKey(s));
    } catch (e) {
      this.deps.logger.warn({ err: e, subscription: s._id }, 'Subscription cannot be evaluated; it receives no notifications');
      this.drop(s._id);
    }
  }

  drop(id: string): void {
    this.indexedVersion.delete(id);
    this.index.remove(id);
    this.indexedIds.delete(id);
  }
}
