import type { Flag, Resource } from 'fhir/r4';
import type { Collection, Db } from 'mongodb';
import { isDuplicateKey } from '../storage';
import { putById } from './db';
import { buildFlag, flagIdOf, type EpisodeView } from './flag';
import { ALERT_EXT, SEVERITY_LEVEL, type AlertEvent, type EpisodeStream, type Judged } from './model';

/** How the module reads and writes resources (the server's own commit path; see service.ts). */
export interface ResourcePort {
  read(type: string, id: string): Promise<{ resource: Resource; vid: number } | undefined>;
  /**
   * A server-side write. With `ifMatch` (a version, or 0 for "must not exist yet") a racing
   * writer makes it throw, and the caller retries; without it, the last writer wins.
   */
  write(resource: Resource, ifMatch?: number): Promise<void>;
}

/** Immutable facts, each inserted once: the unique `_id` is what makes racing writers agree. */
interface KeyDoc {
  /** `<stream>#<n>` opens episode n; `#<n>|esc<level>`, `#<n>|end`, `#<n>|ack<level>` mark its transitions. */
  _id: string;
  at: Date;
  ref?: string;
  by?: string;
  stream?: EpisodeStream;
}
/** The episode's running state; written by the outbox consumer only (one writer, in commit order). */
interface StateDoc {
  _id: string;
  stream: EpisodeStream;
  n: number;
  level: number;
  severity: string;
  start: Date;
  firstRef: string;
  latestRef: string;
  /** Normal readings since the last abnormal one (ids, so a replayed reading counts once). */
  normals: string[];
  lastAbnormalAt: Date;
  maxLevel: number;
}
interface HeadDoc {
  _id: string;
  n: number;
}
interface FlagIndexDoc {
  _id: string;
  stream: string;
  n: number;
}

export interface EpisodeOptions {
  /** Consecutive normal readings that resolve an episode. */
  normalsToResolve: number;
}

export interface EpisodeRef {
  stream: string;
  n: number;
  open: boolean;
}

/**
 * Alert episodes per stream (subject + vital). An episode is opened by inserting the key
 * `<stream>#<n>`: of two racing readings (or two server instances) exactly one insert succeeds,
 * the other sees the episode open. Escalation, resolution and acknowledgement are keys too, so
 * each happens once. The Flag is a projection of keys and state, and the event it records is
 * the difference between the stored Flag and the projection: replaying a reading after a crash
 * completes what was not written, and never tells the same transition twice.
 */
export class EpisodeTracker {
  private readonly keys: Collection<KeyDoc>;
  private readonly state: Collection<StateDoc>;
  private readonly heads: Collection<HeadDoc>;
  private readonly flags: Collection<FlagIndexDoc>;

  constructor(
    db: Db,
    private readonly resources: ResourcePort,
    private readonly opts: EpisodeOptions,
  ) {
    this.keys = db.collection('alert_keys');
    this.state = db.collection('alert_state');
    this.heads = db.collection('alert_heads');
    this.flags = db.collection('alert_flags');
  }

  /** The newest episode of a stream and whether it is still open (probing by key from a hint). */
  async current(streamKey: string): Promise<EpisodeRef | undefined> {
    const head = await this.heads.findOne({ _id: streamKey });
    let n = head?.n ?? 0;
    while (await this.keys.findOne({ _id: `${streamKey}#${n + 1}` }, { projection: { _id: 1 } })) n++;
    if (n === 0) return undefined;
    if (n !== head?.n) await putById(this.heads, streamKey, { n }).catch(() => undefined);
    const end = await this.keys.findOne({ _id: `${streamKey}#${n}|end` }, { projection: { _id: 1 } });
    return { stream: streamKey, n, open: !end };
  }

  /**
   * One judged reading for a stream: opens, updates, escalates or counts towards resolving the
   * episode. `normalsToResolve` overrides the configured count (a silent device resolves on its first reading).
   */
  async apply(stream: EpisodeStream, r: Judged, maxLevel: number, normalsToResolve = this.opts.normalsToResolve): Promise<AlertEvent | undefined> {
    const cur = await this.current(stream.key);
    if (!cur || !cur.open) {
      if (r.level === 0) return undefined;
      const n = (cur?.n ?? 0) + 1;
      const won = await this.insertKey({ _id: `${stream.key}#${n}`, at: r.at, ref: r.ref, stream });
      if (won) await this.flags.insertOne({ _id: flagIdOf(stream.key, n), stream: stream.key, n }).catch(ignoreDuplicate);
      // Lost the race: the winner's episode is the open one; this reading updates it.
      if (won) {
        const s: StateDoc = {
          _id: `${stream.key}#${n}`, stream, n, level: r.level, severity: r.severity, start: r.at,
          firstRef: r.ref, latestRef: r.ref, normals: [], lastAbnormalAt: r.at, maxLevel,
        };
        await putById(this.state, s._id, withoutId(s));
        return this.project(stream.key, n);
      }
      return this.apply(stream, r, maxLevel, normalsToResolve);
    }
    const id = `${stream.key}#${cur.n}`;
    const s = await this.state.findOne({ _id: id });
    if (!s) {
      // Opened by a writer that died before its state: rebuild it from the opening key.
      const k = await this.keys.findOne({ _id: id });
      const rebuilt: StateDoc = {
        _id: id, stream, n: cur.n, level: r.level || 1, severity: r.level ? r.severity : '?', start: k?.at ?? r.at,
        firstRef: k?.ref ?? r.ref, latestRef: k?.ref ?? r.ref, normals: [], lastAbnormalAt: k?.at ?? r.at, maxLevel,
      };
      await putById(this.state, id, withoutId(rebuilt));
      return this.apply(stream, r, maxLevel, normalsToResolve);
    }
    if (r.level === 0) {
      const key = r.key ?? r.ref;
      const normals = s.normals.includes(key) ? s.normals : [...s.normals, key];
      if (normals.length >= normalsToResolve) {
        await this.insertKey({ _id: `${id}|end`, at: r.at, ref: r.ref });
      } else {
        await this.state.updateOne({ _id: id }, { $set: { normals } });
        return undefined;
      }
    } else {
      const next: Partial<StateDoc> = { latestRef: r.ref, normals: [], lastAbnormalAt: r.at };
      if (r.level > s.level) {
        await this.insertKey({ _id: `${id}|esc${r.level}`, at: r.at, ref: r.ref });
        next.level = r.level;
        next.severity = r.severity;
      }
      await this.state.updateOne({ _id: id }, { $set: next });
    }
    return this.project(stream.key, cur.n);
  }

  /** Resolves an open episode (quiet period elapsed); undefined when it was not open. */
  async resolve(streamKey: string, n: number, at: Date): Promise<AlertEvent | undefined> {
    await this.insertKey({ _id: `${streamKey}#${n}|end`, at });
    return this.project(streamKey, n);
  }

  /** The episode behind a Flag id. */
  async byFlag(flagId: string): Promise<{ stream: string; n: number } | undefined> {
    const d = await this.flags.findOne({ _id: flagId });
    return d ? { stream: d.stream, n: d.n } : undefined;
  }

  /**
   * Records an acknowledgement of the episode's current level (once per level: acknowledging
   * again says nothing new). Returns false when the episode is already resolved.
   */
  async acknowledge(streamKey: string, n: number, by: string, at: Date): Promise<boolean> {
    const id = `${streamKey}#${n}`;
    const [s, end] = await Promise.all([this.state.findOne({ _id: id }), this.keys.findOne({ _id: `${id}|end` })]);
    if (!s || end) return false;
    await this.insertKey({ _id: `${id}|ack${s.level}`, at, by });
    await this.project(streamKey, n);
    return true;
  }

  async stateOf(streamKey: string, n: number): Promise<{ lastAbnormalAt: Date } | undefined> {
    const s = await this.state.findOne({ _id: `${streamKey}#${n}` }, { projection: { lastAbnormalAt: 1 } });
    return s ?? undefined;
  }

  /** Open episodes right now (for metrics): episodes opened minus episodes ended. */
  async openCount(): Promise<number> {
    const [opened, ended] = await Promise.all([this.state.countDocuments({}), this.keys.countDocuments({ _id: { $regex: '\\|end$' } })]);
    return Math.max(0, opened - ended);
  }

  // ---------------------------------------------------------------- projection

  private async view(streamKey: string, n: number): Promise<(EpisodeView & { maxLevel: number }) | undefined> {
    const id = `${streamKey}#${n}`;
    const s = await this.state.findOne({ _id: id });
    if (!s) return undefined;
    const ackIds = Array.from({ length: s.maxLevel }, (_, i) => `${id}|ack${i + 1}`);
    // Point reads by _id (FerretDB serves only those from its primary key).
    const [end, ...acks] = await Promise.all([`${id}|end`, ...ackIds].map((k) => this.keys.findOne({ _id: k })));
    let ack: EpisodeView['ack'];
    acks.forEach((a, i) => {
      if (a) ack = { level: i + 1, by: a.by ?? 'unknown', at: a.at };
    });
    return {
      stream: s.stream, n, level: s.level, severity: s.severity, start: s.start, end: end?.at,
      firstRef: s.firstRef, latestRef: s.latestRef, ack, maxLevel: s.maxLevel,
    };
  }

  /** Writes the Flag the keys and state describe; the event is what changed since the stored Flag. */
  private async project(streamKey: string, n: number): Promise<AlertEvent | undefined> {
    for (let attempt = 0; ; attempt++) {
      const v = await this.view(streamKey, n);
      if (!v) return undefined;
      const cur = await this.resources.read('Flag', flagIdOf(streamKey, n));
      const event = eventBetween(cur?.resource as Flag | undefined, v);
      const flag = buildFlag(v, event, v.maxLevel);
      if (cur && sameContent(cur.resource as Flag, flag, event)) return undefined;
      try {
        await this.resources.write(flag, cur?.vid ?? 0);
        return event;
      } catch (e) {
        if (attempt >= 19) throw e;
        // Someone else wrote the Flag meanwhile (an acknowledgement, a quiet-period resolution,
        // another instance): project again after a short random pause, so contenders spread out.
        await new Promise((r) => setTimeout(r, Math.random() * 10 * (attempt + 1)));
      }
    }
  }

  private async insertKey(k: KeyDoc): Promise<boolean> {
    try {
      await this.keys.insertOne(k);
      return true;
    } catch (e) {
      if (isDuplicateKey(e)) return false;
      throw e;
    }
  }
}

function withoutId<T extends { _id: string }>(d: T): Omit<T, '_id'> {
  const { _id, ...rest } = d;
  return rest;
}

function ignoreDuplicate(e: unknown): void {
  if (!isDuplicateKey(e)) throw e;
}

function ext(f: Flag, url: string) {
  return f.extension?.find((e) => e.url === url);
}

/** raised > resolved > escalated > acknowledged > updated: what the new version says happened. */
export function eventBetween(cur: Flag | undefined, v: EpisodeView): AlertEvent {
  if (!cur) return 'raised';
  if (v.end && cur.status === 'active') return 'resolved';
  if (v.end) return (ext(cur, ALERT_EXT.event)?.valueCode as AlertEvent | undefined) ?? 'resolved';
  const curLevel = SEVERITY_LEVEL[ext(cur, ALERT_EXT.severity)?.valueCode ?? ''] ?? 0;
  if (v.level > curLevel) return 'escalated';
  const curAck = ext(cur, ALERT_EXT.acknowledgement)?.extension?.find((e) => e.url === 'at')?.valueDateTime;
  if (v.ack && v.ack.at.toISOString() !== curAck) return 'acknowledged';
  return 'updated';
}

/** Equal apart from meta: writing it would change nothing (a replay). */
function sameContent(a: Flag, b: Flag, event: AlertEvent): boolean {
  if (event !== 'updated' && event !== (ext(a, ALERT_EXT.event)?.valueCode as string)) return false;
  const strip = (f: Flag) => JSON.stringify({ ...f, meta: undefined, extension: f.extension?.filter((e) => e.url !== ALERT_EXT.event) });
  return strip(a) === strip(b);
}
