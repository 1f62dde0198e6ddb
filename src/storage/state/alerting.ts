import type { AnyBulkWriteOperation, Collection, Db, Document, Filter } from 'mongodb';
import { isDuplicateKey } from '../collections';
import { GroupInserter } from '../group-insert';
import { findByIds } from '../lookup';

/**
 * The alerting module's own collections (src/alerting), behind the storage wall: names,
 * document shapes and the few reads and writes the module needs. Every decision is a unique
 * `_id` insert (atomic on MongoDB and FerretDB alike); everything else is point reads by `_id`,
 * whole-document replaces by `_id`, and the scans named below (lease take-over, deadlines,
 * erasure), which are the only filters.
 */
export const ALERTING_COLLECTIONS = {
  keys: 'alert_keys',
  state: 'alert_state',
  heads: 'alert_heads',
  flags: 'alert_flags',
  latest: 'alert_latest',
  deadlines: 'alert_deadlines',
  claims: 'alert_claims',
} as const;

/** What an episode is about: one subject and one vital sign, score or device condition. */
export interface StoredStream {
  key: string;
  subject: { reference?: string; display?: string };
  code: { system: string; code: string; display: string };
}

/** Immutable facts, each inserted once: `<stream>#<n>` opens episode n; `#<n>|esc<level>`, `#<n>|end`, `#<n>|ack<level>`. */
export interface AlertKeyDoc {
  _id: string;
  at: Date;
  ref?: string;
  by?: string;
  stream?: StoredStream;
}

/** An episode's running state (`_id` = `<stream>#<n>`); one writer, the outbox consumer. */
export interface AlertStateDoc {
  _id: string;
  stream: StoredStream;
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

/** Hint of the newest episode number per stream (the keys are the truth). */
export interface AlertHeadDoc {
  _id: string;
  n: number;
}

/** Flag id -> episode. */
export interface AlertFlagDoc {
  _id: string;
  stream: string;
  n: number;
}

/** The newest NEWS2 inputs of a patient (`_id` = "Patient/1"). */
export interface AlertLatestDoc {
  _id: string;
  v: Record<string, { value: number | boolean | string; at: Date; ref: string }>;
  /** The scores of the NEWS2 Observation written last, and its reference. */
  last?: { scores: string; ref: string };
}

/** A durable deadline: `_id` names what it is about (`silent|Device/7`); `token` changes at each reschedule. */
export interface AlertDeadlineDoc {
  _id: string;
  due: Date;
  token: string;
  data: Record<string, string>;
}

/** A one-shot claim to fire one version (token) of a deadline. */
export interface AlertClaimDoc {
  _id: string;
  at: Date;
}

const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function withoutId<T extends { _id: string }>(d: T): Omit<T, '_id'> {
  const { _id, ...rest } = d;
  return rest;
}

/** Replaces by `_id`, inserting when absent (FerretDB's upsert is find-then-insert: a racing one loses with E11000, then a replace finishes). */
async function putById<T extends Document & { _id: string }>(col: Collection<T>, doc: T): Promise<void> {
  const filter = { _id: doc._id } as Filter<T>;
  try {
    await col.replaceOne(filter, withoutId(doc) as T, { upsert: true });
  } catch (e) {
    if (!isDuplicateKey(e)) throw e;
    await col.replaceOne(filter, withoutId(doc) as T);
  }
}

/** Many replaces by `_id` in one round trip; falls back to one at a time on a racing upsert. */
async function putManyById<T extends Document & { _id: string }>(col: Collection<T>, docs: readonly T[]): Promise<void> {
  if (docs.length === 0) return;
  if (docs.length === 1) return putById(col, docs[0]);
  const ops = docs.map((d) => ({ replaceOne: { filter: { _id: d._id } as Filter<T>, replacement: withoutId(d) as T, upsert: true } })) as AnyBulkWriteOperation<T>[];
  try {
    await col.bulkWrite(ops, { ordered: false });
  } catch (e) {
    if (!isDuplicateKey(e)) throw e;
    for (const d of docs) await putById(col, d);
  }
}

/**
 * Inserts unless the `_id` exists (false then). Through a group inserter: the keys a batch's
 * readings decide at once (one per new episode) go in one insert, each learning its own fate.
 */
async function insertOnce<T extends Document & { _id: string }>(col: GroupInserter<T>, doc: T): Promise<boolean> {
  try {
    await col.insert(doc);
    return true;
  } catch (e) {
    if (isDuplicateKey(e)) return false;
    throw e;
  }
}

/** Typed access to alerting's collections. */
export class AlertingState {
  private readonly keys: Collection<AlertKeyDoc>;
  private readonly states: Collection<AlertStateDoc>;
  private readonly heads: Collection<AlertHeadDoc>;
  private readonly flags: Collection<AlertFlagDoc>;
  private readonly latests: Collection<AlertLatestDoc>;
  private readonly deadlines: Collection<AlertDeadlineDoc>;
  private readonly claims: Collection<AlertClaimDoc>;

  private readonly keyInserts: GroupInserter<AlertKeyDoc>;
  private readonly flagInserts: GroupInserter<AlertFlagDoc>;
  private readonly claimInserts: GroupInserter<AlertClaimDoc>;

  constructor(db: Db) {
    const c = ALERTING_COLLECTIONS;
    this.keys = db.collection(c.keys);
    this.keyInserts = new GroupInserter(this.keys);
    this.states = db.collection(c.state);
    this.heads = db.collection(c.heads);
    this.flags = db.collection(c.flags);
    this.flagInserts = new GroupInserter(this.flags);
    this.latests = db.collection(c.latest);
    this.deadlines = db.collection(c.deadlines);
    this.claims = db.collection(c.claims);
    this.claimInserts = new GroupInserter(this.claims);
  }

  async ensureIndexes(): Promise<void> {
    await this.deadlines.createIndex({ due: 1 });
  }

  // ---------------------------------------------------------------- episode keys and state

  /** Inserts a key; false when it exists already (another writer made that decision first). */
  insertKey(k: AlertKeyDoc): Promise<boolean> {
    return insertOnce(this.keyInserts, k);
  }

  key(id: string): Promise<AlertKeyDoc | null> {
    return this.keys.findOne({ _id: id });
  }

  async keyExists(id: string): Promise<boolean> {
    return (await this.keys.findOne({ _id: id }, { projection: { _id: 1 } })) !== null;
  }

  /** Point reads of several keys at once. */
  keysByIds(ids: readonly string[]): Promise<AlertKeyDoc[]> {
    return findByIds(this.keys, ids);
  }

  state(id: string): Promise<AlertStateDoc | null> {
    return this.states.findOne({ _id: id });
  }

  putStates(docs: readonly AlertStateDoc[]): Promise<void> {
    return putManyById(this.states, docs);
  }

  head(stream: string): Promise<AlertHeadDoc | null> {
    return this.heads.findOne({ _id: stream });
  }

  async putHead(stream: string, n: number): Promise<void> {
    await putById(this.heads, { _id: stream, n });
  }

  /** Records which episode a Flag id belongs to (once). */
  async indexFlag(doc: AlertFlagDoc): Promise<void> {
    await insertOnce(this.flagInserts, doc);
  }

  flagIndex(flagId: string): Promise<AlertFlagDoc | null> {
    return this.flags.findOne({ _id: flagId });
  }

  /**
   * Everything needed to know every stream's newest episode and which are open, read once when
   * the consumer takes the outbox lease: all episode states and the ids of the ended ones.
   */
  async episodesAtTakeOver(): Promise<{ states: AlertStateDoc[]; ended: Set<string>; acks: AlertKeyDoc[] }> {
    const [states, marks] = await Promise.all([
      this.states.find({}).toArray(),
      this.keys.find({ _id: { $regex: '\\|(end|ack\\d+)$' } }).toArray(),
    ]);
    const ended = new Set<string>();
    const acks: AlertKeyDoc[] = [];
    for (const k of marks) {
      if (k._id.endsWith('|end')) ended.add(k._id.slice(0, -'|end'.length));
      else acks.push(k);
    }
    return { states, ended, acks };
  }

  /** Open episodes counted the slow way (an instance that does not hold the outbox lease). */
  async countOpen(): Promise<number> {
    const [opened, ended] = await Promise.all([this.states.countDocuments({}), this.keys.countDocuments({ _id: { $regex: '\\|end$' } })]);
    return Math.max(0, opened - ended);
  }

  // ---------------------------------------------------------------- NEWS2 inputs

  /** Every patient's newest NEWS2 inputs, read once when the consumer takes the outbox lease. */
  allLatest(): Promise<AlertLatestDoc[]> {
    return this.latests.find({}).toArray();
  }

  latest(patient: string): Promise<AlertLatestDoc | null> {
    return this.latests.findOne({ _id: patient });
  }

  putLatest(docs: readonly AlertLatestDoc[]): Promise<void> {
    return putManyById(this.latests, docs);
  }

  // ---------------------------------------------------------------- deadlines and claims

  deadline(id: string): Promise<AlertDeadlineDoc | null> {
    return this.deadlines.findOne({ _id: id });
  }

  putDeadlines(docs: readonly AlertDeadlineDoc[]): Promise<void> {
    return putManyById(this.deadlines, docs);
  }

  async deleteDeadline(id: string): Promise<void> {
    await this.deadlines.deleteOne({ _id: id });
  }

  /** Deletes a fired deadline unless it was rescheduled meanwhile (another token). */
  async deleteDeadlineIfToken(id: string, token: string): Promise<void> {
    await this.deadlines.deleteOne({ _id: id, token });
  }

  /** The oldest overdue deadlines. */
  dueDeadlines(now: Date, limit: number): Promise<AlertDeadlineDoc[]> {
    return this.deadlines.find({ due: { $lte: now } }).sort({ due: 1 }).limit(limit).toArray();
  }

  insertClaim(id: string, at: Date): Promise<boolean> {
    return insertOnce(this.claimInserts, { _id: id, at });
  }

  claim(id: string): Promise<AlertClaimDoc | null> {
    return this.claims.findOne({ _id: id });
  }

  async sweepClaims(before: Date): Promise<void> {
    await this.claims.deleteMany({ at: { $lt: before } });
  }

  // ---------------------------------------------------------------- erasure

  /**
   * Removes everything alerting keeps about a patient ("Patient/1"): its streams' keys, states
   * and heads, the Flag index entries of its episodes, its NEWS2 inputs, its quiet-period
   * deadlines and the silent-device deadlines that name it. Returns the documents removed.
   */
  async erasePatient(patientRef: string): Promise<number> {
    const patientStreams = { $regex: `^${escapeRegex(patientRef)}\\|` };
    // Silent-device episodes are keyed by the device; their state names the patient.
    const deviceStreams = (await this.states.find({ 'stream.subject.reference': patientRef }, { projection: { stream: 1 } }).toArray())
      .map((s) => s.stream.key)
      .filter((k) => !k.startsWith(`${patientRef}|`));
    const removals = [
      this.keys.deleteMany({ _id: patientStreams }),
      this.states.deleteMany({ _id: patientStreams }),
      this.heads.deleteMany({ _id: patientStreams }),
      this.flags.deleteMany({ stream: patientStreams }),
    ];
    for (const key of new Set(deviceStreams)) {
      const episodes = { $regex: `^${escapeRegex(key)}#` };
      removals.push(this.keys.deleteMany({ _id: episodes }), this.states.deleteMany({ _id: episodes }), this.heads.deleteMany({ _id: key }), this.flags.deleteMany({ stream: key }));
    }
    const removed = (await Promise.all(removals)).reduce((sum, r) => sum + r.deletedCount, 0);
    const rest = await Promise.all([
      this.latests.deleteMany({ _id: patientRef }),
      this.deadlines.deleteMany({ _id: { $regex: `^quiet\\|${escapeRegex(patientRef)}\\|` } }),
      this.deadlines.deleteMany({ 'data.patient': patientRef }),
    ]);
    return removed + rest.reduce((sum, r) => sum + r.deletedCount, 0);
  }
}
