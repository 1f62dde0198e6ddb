import type { Flag, Resource } from 'fhir/r4';
import { historyId, type CommittedEvent, type CurrentDoc } from '../storage';
import type { AlertDeadlineDoc, AlertFlagDoc, AlertingState, AlertLatestDoc, AlertStateDoc } from '../storage/state/alerting';
import { ALERT_EXT } from './model';

/** How the module reads and writes resources (the server's own commit path; see index.ts). */
export interface ResourcePort {
  /** The current version, undefined when absent or deleted. */
  read(type: string, id: string): Promise<CurrentDoc | undefined>;
  /**
   * Server-side writes, each committed on its own and all at once (storage groups their inserts
   * into a few round trips). Each replaces `current` (null: must not exist yet); one that lost a
   * race to another writer is `'conflict'`, the others stand. Returns the new current documents.
   */
  commit(writes: { resource: Resource; current: CurrentDoc | null }[]): Promise<Array<CurrentDoc | 'conflict'>>;
}

/**
 * Told the versions a batch committed, before the outbox offers them again: the subscriptions
 * module matches them in the same outbox batch (its rows recognise the re-offer by history id).
 */
export type DerivedListener = (events: CommittedEvent[]) => Promise<void>;

/** The committed event of a server-side write, as the outbox will offer it later. */
export function derivedEvent(doc: CurrentDoc, replaced: CurrentDoc | null): CommittedEvent {
  const type = doc.res.resourceType;
  return {
    historyId: historyId(type, doc._id, doc.vid),
    type,
    id: doc._id,
    vid: doc.vid,
    ts: doc.ts,
    method: 'PUT',
    resource: doc.res,
    dec: doc.dec,
    previous: async () => (replaced && !replaced.deleted ? replaced.res : undefined),
  };
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
 * episode states, NEWS2 inputs and deadlines each in one bulk replace, and beside them the
 * batch's Flags and NEWS2 Observations committed together (concurrent single-version commits,
 * whose intents and versions storage groups into one insert each), in two waves (see flush).
 * They need not be all or nothing: each Flag stands alone, and a replayed NEWS2 Observation that
 * exists already must not hold back the batch's Flags. A journal commit would cost seven
 * sequential round trips where this costs three. A crash in between is repaired by the replay
 * (the outbox intents are still there; the keys say what was decided).
 */
export class DerivedBatch {
  private states = new Map<string, AlertStateDoc>();
  private latest = new Map<string, AlertLatestDoc>();
  private deadlines = new Map<string, AlertDeadlineDoc>();
  private flags = new Map<string, PendingFlag>();
  private creates: Resource[] = [];
  private flagIndex: AlertFlagDoc[] = [];
  /** What the flushes so far left for `finishLater`. */
  private laterCreates: Resource[] = [];
  private laterLatest = new Map<string, AlertLatestDoc>();

  constructor(
    private readonly st: AlertingState,
    private readonly resources: ResourcePort,
    private readonly listener?: DerivedListener,
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

  /** A new episode's Flag id -> episode entry (stored with the first wave, before its Flag is visible). */
  indexFlag(d: AlertFlagDoc): void {
    this.flagIndex.push(d);
  }

  /** The Flag of episode `episodeId`; a later one for the same episode in this batch replaces it. */
  flag(episodeId: string, resource: Resource, current: CurrentDoc | null, done: (doc: CurrentDoc) => void, retry: () => Promise<unknown>): void {
    this.flags.set(episodeId, { resource, current, done, retry });
  }

  /** Before a transition: a Flag this batch holds for the episode is committed first, as its own version. */
  async flushIfHolds(episodeId: string): Promise<void> {
    if (this.flags.has(episodeId)) await this.flush();
  }

  /**
   * Two waves. First (here) what a notification depends on: the Flags (with any resource they
   * refer to), their index entries, episode states and deadlines; then the listener matches the
   * new versions. The second, what no notification waits for (the NEWS2 Observations no Flag
   * refers to and the NEWS2 inputs), is left for `finishLater`: the outbox runs it after the
   * batch's other consumers, beside the next batch, and both are rebuilt by a replay of the same
   * events after a crash before it (their intents stay until it is done).
   */
  async flush(): Promise<void> {
    const flags = [...this.flags.values()];
    const creates = this.creates;
    const referred = (r: Resource) => flags.some((f) => refersTo(f.resource, r));
    const first = creates.filter(referred);
    const later = creates.filter((r) => !referred(r));
    const states = [...this.states.values()];
    const latest = [...this.latest.values()];
    const deadlines = [...this.deadlines.values()];
    const index = this.flagIndex;
    this.flagIndex = [];
    this.states.clear();
    this.latest.clear();
    this.deadlines.clear();
    this.flags.clear();
    this.creates = [];
    const writes = [...first.map((resource) => ({ resource, current: null })), ...flags.map((f) => ({ resource: f.resource, current: f.current }))];
    const [results] = await Promise.all([
      writes.length ? this.resources.commit(writes) : Promise.resolve([]),
      this.st.putStates(states),
      this.st.putDeadlines(deadlines),
      // Inserted in the same wave: a Flag's current version, what makes it readable, is the
      // last of its commit's three steps, so the entry is there before anyone can acknowledge it.
      ...index.map((d) => this.st.indexFlag(d)),
    ]);
    // A create that clashed is a replay (the NEWS2 Observation exists); a Flag that lost its
    // If-Match (an acknowledgement, another instance) is projected again from the database.
    for (let i = 0; i < flags.length; i++) {
      const r = results[first.length + i];
      if (r === 'conflict') await flags[i].retry();
      else flags[i].done(r);
    }
    await this.tell(writes, results);
    this.laterCreates.push(...later);
    for (const d of latest) this.laterLatest.set(d._id, d);
  }

  /**
   * The second wave of every flush so far. Its versions are not told to the listener: the
   * outbox offers them in a later batch like any other commit (the listener's matching runs
   * one batch at a time, and this runs beside the next one).
   */
  async finishLater(): Promise<void> {
    const creates = this.laterCreates.map((resource) => ({ resource, current: null }));
    const latest = [...this.laterLatest.values()];
    await Promise.all([creates.length ? this.resources.commit(creates) : Promise.resolve([]), this.st.putLatest(latest)]);
    // Cleared only once done: a second wave that failed is run again whole (a create that
    // exists already is a conflict, which is skipped; inputs are replaced).
    this.laterCreates = [];
    this.laterLatest.clear();
  }

  /** New versions only (an unchanged write commits nothing and returns the current document). */
  private async tell(writes: { resource: Resource; current: CurrentDoc | null }[], results: Array<CurrentDoc | 'conflict'>): Promise<void> {
    const events = writes.flatMap((w, i) => {
      const r = results[i];
      return r !== 'conflict' && r.vid > (w.current?.vid ?? 0) ? [derivedEvent(r, w.current)] : [];
    });
    if (events.length && this.listener) await this.listener(events);
  }
}

/** Whether one of `flag`'s flag-detail extensions (its triggering readings) names `r`. */
function refersTo(flag: Resource, r: Resource): boolean {
  const ref = `${r.resourceType}/${r.id}`;
  return r.id !== undefined && ((flag as Flag).extension ?? []).some((x) => x.url === ALERT_EXT.flagDetail && x.valueReference?.reference === ref);
}
