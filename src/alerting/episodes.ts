import type { Flag } from 'fhir/r4';
import type { CommittedEvent, CurrentDoc } from '../storage';
import type { AlertingState, AlertStateDoc } from '../storage/state/alerting';
import type { DerivedBatch, ResourcePort } from './batch';
import { buildFlag, eventBetween, flagIdOf, sameContent, type EpisodeView } from './flag';
import type { AlertEvent, EpisodeStream, Judged } from './model';

export type { ResourcePort } from './batch';
export { eventBetween } from './flag';

export interface EpisodeOptions {
  /** Consecutive normal readings that resolve an episode. */
  normalsToResolve: number;
  /** A Flag is rewritten only to move its latest triggering reading at most this often (ms). */
  latestRefreshMs: number;
  /** The outbox lease epoch while this instance holds the lease (undefined otherwise). */
  leaseEpoch: () => number | undefined;
  now: () => Date;
}

export interface EpisodeRef {
  stream: string;
  n: number;
  open: boolean;
}

/** What the tracker knows of a stream's newest episode. */
interface Episode {
  key: string;
  n: number;
  open: boolean;
  state?: AlertStateDoc;
  end?: Date;
  ack?: { level: number; by: string; at: Date };
  /** The stored Flag: undefined until read, null when there is none yet. */
  flag?: CurrentDoc | null;
  /** In memory only: the state changed since it was stored in ways a replay could not rebuild. */
  unsaved?: boolean;
}

/** Known to have changed elsewhere (another instance's Flag version): read again at the next touch. */
interface Stale {
  key: string;
  stale: true;
  open: boolean;
}

const MAX_ATTEMPTS = 20;

/**
 * Alert episodes per stream (subject + vital). Every decision is a unique key insert
 * (`<stream>#<n>` opens episode n, `#<n>|esc<level>`, `#<n>|end`, `#<n>|ack<level>`), so two
 * racing readings or two instances never open two episodes nor tell a transition twice. The Flag
 * is a projection of keys and state; its event is the difference from the stored Flag.
 *
 * While this instance holds the outbox lease, the tracker keeps every stream's newest episode in
 * memory (loaded when the lease is taken): the lease makes its consumer the only one, so a reading
 * reads nothing. Without the lease (or in another epoch of it) everything is read from the
 * database as before. Changes made elsewhere (an acknowledgement on another instance) arrive as
 * Flag versions through the same consumer and mark the stream stale; a Flag written meanwhile
 * loses its If-Match and is projected again from the database.
 */
export class EpisodeTracker {
  private memo = new Map<string, Episode | Stale>();
  private open = new Set<string>();
  private flagOwner = new Map<string, string>();
  private epoch?: number;
  private queue: Promise<unknown> = Promise.resolve();
  private openScan?: { at: number; n: number };

  constructor(
    private readonly st: AlertingState,
    private readonly resources: ResourcePort,
    private readonly opts: EpisodeOptions,
  ) {}

  /** Runs `fn` alone among the tracker's writers in this process (the consumer, deadlines, acknowledgements). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Whether the memory may be used now: the lease is held, in the epoch the memory was loaded in. */
  private cached(): boolean {
    return this.epoch !== undefined && this.opts.leaseEpoch() === this.epoch;
  }

  /**
   * The consumer's batch came under lease epoch `epoch`: a new epoch (first batch, or the lease
   * lost and taken again, maybe after another instance consumed) reloads every stream's newest
   * episode from the database, once.
   */
  async takeOver(epoch: number): Promise<void> {
    if (this.epoch === epoch) return;
    this.epoch = undefined;
    const { states, ended, acks } = await this.st.episodesAtTakeOver();
    const memo = new Map<string, Episode | Stale>();
    for (const s of states) {
      const cur = memo.get(s.stream.key) as Episode | undefined;
      if (cur && cur.n > s.n) continue;
      memo.set(s.stream.key, { key: s.stream.key, n: s.n, open: !ended.has(s._id), state: s });
    }
    for (const k of acks) {
      const m = /^(.*)#(\d+)\|ack(\d+)$/.exec(k._id);
      const ep = m ? (memo.get(m[1]) as Episode | undefined) : undefined;
      if (!ep || ep.n !== Number(m![2]) || (ep.ack && ep.ack.level > Number(m![3]))) continue;
      ep.ack = { level: Number(m![3]), by: k.by ?? 'unknown', at: k.at };
    }
    this.memo = memo;
    this.open = new Set([...memo.values()].filter((e) => e.open).map((e) => e.key));
    this.flagOwner = new Map([...memo.values()].map((e) => [flagIdOf(e.key, (e as Episode).n), e.key]));
    this.epoch = epoch;
  }

  /** Forgets everything in memory: the next batch reloads it (after a failed batch). */
  drop(): void {
    this.epoch = undefined;
  }

  /** Open episodes right now (metrics): kept as they open and close while the lease is held. */
  async openCount(): Promise<number> {
    if (this.cached()) return this.open.size;
    // Without the lease this instance sees no transitions: count the slow way, at most once a minute.
    if (!this.openScan || Date.now() - this.openScan.at > 60_000) this.openScan = { at: Date.now(), n: await this.st.countOpen() };
    return this.openScan.n;
  }

  private remember(ep: Episode): void {
    if (!this.cached()) return;
    this.memo.set(ep.key, ep);
    if (ep.open) this.open.add(ep.key);
    else this.open.delete(ep.key);
    if (ep.n > 0) this.flagOwner.set(flagIdOf(ep.key, ep.n), ep.key);
  }

  /** Forgets a patient's streams (erasure); they are read from the database again if ever touched. */
  forget(patientRef: string): void {
    for (const [k, m] of [...this.memo]) {
      const subject = 'stale' in m ? undefined : m.state?.stream.subject.reference;
      if (!k.startsWith(`${patientRef}|`) && subject !== patientRef) continue;
      this.memo.set(k, { key: k, stale: true, open: false });
      this.open.delete(k);
    }
  }

  /**
   * A Flag version passed through the outbox. One this tracker wrote changes nothing; any other
   * (another instance acknowledged, or resolved) marks its stream stale.
   */
  async noteFlag(ev: CommittedEvent): Promise<void> {
    if (!this.cached()) return;
    let key = this.flagOwner.get(ev.id);
    const known = key ? this.memo.get(key) : undefined;
    if (known && !('stale' in known) && known.flag && known.flag.vid >= ev.vid && flagIdOf(known.key, known.n) === ev.id) return;
    if (!key) key = (await this.st.flagIndex(ev.id))?.stream;
    if (!key) return;
    const active = ev.method !== 'DELETE' && (ev.resource as Flag | undefined)?.status === 'active';
    const cur = this.memo.get(key);
    // An older episode's Flag says nothing about whether the newest one is open.
    const newest = !cur || 'stale' in cur || flagIdOf(key, cur.n) === ev.id;
    this.memo.set(key, { key, stale: true, open: newest ? active : cur.open });
    if (newest ? active : cur.open) this.open.add(key);
    else this.open.delete(key);
  }

  /** The newest episode of a stream and whether it is still open. */
  async current(streamKey: string): Promise<EpisodeRef | undefined> {
    const ep = await this.episode(streamKey);
    return ep.n === 0 ? undefined : { stream: streamKey, n: ep.n, open: ep.open };
  }

  private async episode(streamKey: string): Promise<Episode> {
    if (this.cached()) {
      const m = this.memo.get(streamKey);
      if (!m) return { key: streamKey, n: 0, open: false };
      if (!('stale' in m)) return m;
    }
    const ep = await this.load(streamKey);
    this.remember(ep);
    return ep;
  }

  /** Reads a stream's newest episode from the database (probing forward from the head hint). */
  private async load(streamKey: string): Promise<Episode> {
    const head = await this.st.head(streamKey);
    let n = head?.n ?? 0;
    while (await this.st.keyExists(`${streamKey}#${n + 1}`)) n++;
    if (n === 0) return { key: streamKey, n: 0, open: false };
    if (n !== head?.n) await this.st.putHead(streamKey, n).catch(() => undefined);
    const id = `${streamKey}#${n}`;
    const [end, state] = await Promise.all([this.st.key(`${id}|end`), this.st.state(id)]);
    const ep: Episode = { key: streamKey, n, open: !end, end: end?.at, state: state ?? undefined };
    if (state) {
      const acks = await this.st.keysByIds(Array.from({ length: state.maxLevel }, (_, i) => `${id}|ack${i + 1}`));
      for (const a of acks) {
        const level = Number(a._id.slice(a._id.lastIndexOf('|ack') + 4));
        if (!ep.ack || level > ep.ack.level) ep.ack = { level, by: a.by ?? 'unknown', at: a.at };
      }
    }
    return ep;
  }

  /**
   * One judged reading for a stream: opens, updates, escalates or counts towards resolving the
   * episode. `normalsToResolve` overrides the configured count (a silent device resolves on its
   * first reading). With a batch, what it writes joins the batch's one commit.
   */
  async apply(stream: EpisodeStream, r: Judged, maxLevel: number, normalsToResolve = this.opts.normalsToResolve, batch?: DerivedBatch): Promise<AlertEvent | undefined> {
    for (let attempt = 0; ; attempt++) {
      const ep = attempt === 0 ? await this.episode(stream.key) : await this.reload(stream.key);
      if (ep.open || r.level > 0) {
        const out = await this.applyTo(ep, stream, r, maxLevel, normalsToResolve, batch);
        if (out !== 'lost' || attempt >= MAX_ATTEMPTS) return out === 'lost' ? undefined : out;
      } else {
        return undefined;
      }
    }
  }

  private async reload(streamKey: string): Promise<Episode> {
    const ep = await this.load(streamKey);
    this.remember(ep);
    return ep;
  }

  /** 'lost': another writer decided first (a key existed); the caller reloads and applies again. */
  private async applyTo(ep: Episode, stream: EpisodeStream, r: Judged, maxLevel: number, normalsToResolve: number, batch?: DerivedBatch): Promise<AlertEvent | undefined | 'lost'> {
    if (!ep.open) {
      const n = ep.n + 1;
      if (!(await this.st.insertKey({ _id: `${stream.key}#${n}`, at: r.at, ref: r.ref, stream }))) return 'lost';
      const index = { _id: flagIdOf(stream.key, n), stream: stream.key, n };
      if (batch) batch.indexFlag(index);
      else await this.st.indexFlag(index);
      const state: AlertStateDoc = {
        _id: `${stream.key}#${n}`, stream, n, level: r.level, severity: r.severity, start: r.at,
        firstRef: r.ref, latestRef: r.ref, normals: [], lastAbnormalAt: r.at, maxLevel,
      };
      const opened: Episode = { key: stream.key, n, open: true, state, flag: null };
      this.remember(opened);
      await this.saveState(opened, batch);
      return this.project(opened, batch);
    }
    const id = `${stream.key}#${ep.n}`;
    if (!ep.state) {
      // Opened by a writer that died before its state: rebuild it from the opening key.
      const k = await this.st.key(id);
      ep.state = {
        _id: id, stream, n: ep.n, level: r.level || 1, severity: r.level ? r.severity : '?', start: k?.at ?? r.at,
        firstRef: k?.ref ?? r.ref, latestRef: k?.ref ?? r.ref, normals: [], lastAbnormalAt: k?.at ?? r.at, maxLevel,
      };
      await this.saveState(ep, batch);
    }
    const s = ep.state;
    if (r.level === 0) {
      const key = r.key ?? r.ref;
      if (s.normals.includes(key)) return undefined;
      s.normals = [...s.normals, key];
      if (s.normals.length < normalsToResolve) {
        await this.saveState(ep, batch);
        return undefined;
      }
      // A transition: what the batch holds for this episode is told first, as its own version.
      await batch?.flushIfHolds(id);
      // Already there: decided before (a replay) or by another writer; the key's time is the end.
      const endAt = (await this.st.insertKey({ _id: `${id}|end`, at: r.at, ref: r.ref })) ? r.at : ((await this.st.key(`${id}|end`))?.at ?? r.at);
      ep.open = false;
      ep.end = endAt;
      this.remember(ep);
      await this.saveState(ep, batch);
      return this.project(ep, batch);
    }
    const important = s.normals.length > 0 || r.level > s.level;
    s.latestRef = r.ref;
    s.normals = [];
    s.lastAbnormalAt = r.at;
    if (r.level > s.level) {
      await batch?.flushIfHolds(id);
      // A duplicate is an escalation decided before (a replay) or by another writer: the level stands.
      await this.st.insertKey({ _id: `${id}|esc${r.level}`, at: r.at, ref: r.ref });
      s.level = r.level;
      s.severity = r.severity;
    }
    if (important) await this.saveState(ep, batch);
    else ep.unsaved = true;
    return this.project(ep, batch);
  }

  /** Resolves an open episode (quiet period elapsed); undefined when it was not open. */
  async resolve(streamKey: string, n: number, at: Date): Promise<AlertEvent | undefined> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const ep = attempt === 0 ? await this.episode(streamKey) : await this.reload(streamKey);
      if (ep.n !== n || !ep.open) return undefined;
      const endAt = (await this.st.insertKey({ _id: `${streamKey}#${n}|end`, at })) ? at : ((await this.st.key(`${streamKey}#${n}|end`))?.at ?? at);
      ep.open = false;
      ep.end = endAt;
      this.remember(ep);
      if (ep.state) await this.saveState(ep);
      return this.project(ep);
    }
    return undefined;
  }

  /** The episode behind a Flag id. */
  async byFlag(flagId: string): Promise<{ stream: string; n: number } | undefined> {
    const d = await this.st.flagIndex(flagId);
    return d ? { stream: d.stream, n: d.n } : undefined;
  }

  /**
   * Records an acknowledgement of the episode's current level (once per level: acknowledging
   * again says nothing new). Returns false when the episode is already resolved.
   */
  async acknowledge(streamKey: string, n: number, by: string, at: Date): Promise<boolean> {
    const ep = await this.episode(streamKey);
    if (ep.n !== n || !ep.open || !ep.state) return false;
    if (await this.st.insertKey({ _id: `${streamKey}#${n}|ack${ep.state.level}`, at, by })) {
      ep.ack = { level: ep.state.level, by, at };
    } else {
      Object.assign(ep, await this.load(streamKey));
    }
    await this.project(ep);
    return true;
  }

  /** When the episode last had an abnormal reading, and whether that is known exactly (this instance's memory). */
  async stateOf(streamKey: string, n: number): Promise<{ lastAbnormalAt: Date; exact: boolean } | undefined> {
    const ep = await this.episode(streamKey);
    if (ep.n !== n || !ep.state) return undefined;
    return { lastAbnormalAt: ep.state.lastAbnormalAt, exact: this.cached() };
  }

  // ---------------------------------------------------------------- state and projection

  private async saveState(ep: Episode, batch?: DerivedBatch): Promise<void> {
    ep.unsaved = false;
    if (batch) batch.state(ep.state!);
    else await this.st.putStates([ep.state!]);
  }

  private view(ep: Episode): EpisodeView {
    const s = ep.state!;
    return {
      stream: s.stream, n: ep.n, level: s.level, severity: s.severity, start: s.start, end: ep.end,
      firstRef: s.firstRef, latestRef: s.latestRef, ack: ep.ack,
    };
  }

  /**
   * Writes the Flag the episode describes, unless it would change nothing a subscriber or an EHR
   * needs: a repeat reading moves the Flag's latest triggering reading only when the stored Flag
   * is older than the refresh interval (every transition writes at once).
   */
  private async project(ep: Episode, batch?: DerivedBatch): Promise<AlertEvent | undefined> {
    if (!ep.state) return undefined;
    const flagId = flagIdOf(ep.key, ep.n);
    if (ep.flag === undefined) ep.flag = (await this.resources.read('Flag', flagId)) ?? null;
    const cur = ep.flag;
    const v = this.view(ep);
    const event = eventBetween(cur?.res as Flag | undefined, v);
    const flag = buildFlag(v, event, ep.state.maxLevel);
    if (cur && sameContent(cur.res as Flag, flag, event)) return undefined;
    if (cur && event === 'updated' && this.opts.now().getTime() - cur.ts.getTime() < this.opts.latestRefreshMs) return undefined;
    if (ep.unsaved) await this.saveState(ep, batch);
    if (batch) {
      batch.flag(`${ep.key}#${ep.n}`, flag, cur, (doc) => {
        ep.flag = doc;
      }, () => this.reproject(ep.key));
      return event;
    }
    const [written] = await this.resources.commit([{ resource: flag, current: cur }]);
    if (written === 'conflict') return this.reproject(ep.key);
    ep.flag = written;
    return event;
  }

  /**
   * Someone else wrote the Flag meanwhile (an acknowledgement, another instance): read the
   * episode again and project, after a short random pause so contenders spread out.
   */
  private async reproject(streamKey: string): Promise<AlertEvent | undefined> {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      await new Promise((r) => setTimeout(r, Math.random() * 10 * attempt));
      const ep = await this.reload(streamKey);
      if (!ep.state) return undefined;
      const flagId = flagIdOf(ep.key, ep.n);
      ep.flag = (await this.resources.read('Flag', flagId)) ?? null;
      const v = this.view(ep);
      const event = eventBetween(ep.flag?.res as Flag | undefined, v);
      const flag = buildFlag(v, event, ep.state.maxLevel);
      if (ep.flag && sameContent(ep.flag.res as Flag, flag, event)) return undefined;
      const [written] = await this.resources.commit([{ resource: flag, current: ep.flag }]);
      if (written !== 'conflict') {
        ep.flag = written;
        return event;
      }
    }
    throw new Error(`alert episode ${streamKey}: the Flag kept changing under ${MAX_ATTEMPTS} projections`);
  }
}
