import type { Resource } from 'fhir/r4';
import { isFhirError } from '../errors';
import type { CurrentDoc } from '../storage';
import type { AlertDeadlineDoc, AlertingState, AlertLatestDoc, AlertStateDoc } from '../storage/state/alerting';

/** How the module reads and writes resources (the server's own commit path; see index.ts). */
export interface ResourcePort {
  /** The current version, undefined when absent or deleted. */
  read(type: string, id: string): Promise<CurrentDoc | undefined>;
  /**
   * Server-side writes, all or nothing. Each replaces `current` (null: must not exist yet), so a
   * racing writer makes the whole commit throw a 409 FhirError. Returns the new current documents.
   */
  commit(writes: { resource: Resource; current: CurrentDoc | null }[]): Promise<CurrentDoc[]>;
}

interface PendingFlag {
  resource: Resource;
  current: CurrentDoc | null;
  done(doc: CurrentDoc): void;
  /** The commit lost a race: project this episode again on its own. */
  retry(): Promise<unknown>;
}

/**
 * Everything one outbox batch makes alerting write, in as few round trips as the work allows:
 * episode states, NEWS2 inputs and deadlines each in one bulk replace, then the batch's Flags and
 * NEWS2 Observations in one repository commit (all or nothing). State goes first, so a crash
 * before the commit leaves a replay (the outbox intents are still there) everything it needs.
 */
export class DerivedBatch {
  private states = new Map<string, AlertStateDoc>();
  private latest = new Map<string, AlertLatestDoc>();
  private deadlines = new Map<string, AlertDeadlineDoc>();
  private flags = new Map<string, PendingFlag>();
  private creates: Resource[] = [];

  constructor(
    private readonly st: AlertingState,
    private readonly resources: ResourcePort,
  ) {}

  state(s: AlertStateDoc): void {
    this.states.set(s._id, s);
  }

  latestInputs(d: AlertLatestDoc): void {
    this.latest.set(d._id, d);
  }

  deadline(d: AlertDeadlineDoc): void {
    this.deadlines.set(d._id, d);
  }

  /** A new resource (a NEWS2 Observation): its id is derived from its trigger, so a replay clashes and is skipped. */
  create(r: Resource): void {
    this.creates.push(r);
  }

  /** The Flag of episode `episodeId`; a later one for the same episode in this batch replaces it. */
  flag(episodeId: string, resource: Resource, current: CurrentDoc | null, done: (doc: CurrentDoc) => void, retry: () => Promise<unknown>): void {
    this.flags.set(episodeId, { resource, current, done, retry });
  }

  /** Before a transition: a Flag this batch holds for the episode is committed first, as its own version. */
  async flushIfHolds(episodeId: string): Promise<void> {
    if (this.flags.has(episodeId)) await this.flush();
  }

  async flush(): Promise<void> {
    const states = [...this.states.values()];
    const latest = [...this.latest.values()];
    const deadlines = [...this.deadlines.values()];
    const flags = [...this.flags.values()];
    const creates = this.creates;
    this.states.clear();
    this.latest.clear();
    this.deadlines.clear();
    this.flags.clear();
    this.creates = [];
    await Promise.all([this.st.putStates(states), this.st.putLatest(latest), this.st.putDeadlines(deadlines)]);
    const writes = [...creates.map((resource) => ({ resource, current: null })), ...flags.map((f) => ({ resource: f.resource, current: f.current }))];
    if (writes.length === 0) return;
    try {
      const docs = await this.resources.commit(writes);
      flags.forEach((f, i) => f.done(docs[creates.length + i]));
      return;
    } catch (e) {
      if (!isFhirError(e) || e.status !== 409) throw e;
    }
    // One of them lost a race (an acknowledgement, a replayed NEWS2 Observation): each on its own.
    for (const resource of creates) {
      try {
        await this.resources.commit([{ resource, current: null }]);
      } catch (e) {
        if (!isFhirError(e) || e.status !== 409) throw e;
      }
    }
    for (const f of flags) await f.retry();
  }
}
