import type { Resource } from 'fhir/r4';
import type { Logger } from 'pino';
import { Errors, type FhirError } from '../errors';
import { type Collections, isDuplicateKey } from './collections';
import { ErasedMarks, MARK_MARGIN_MS, MARKS_TRUSTED_MS } from './erased-marks';
import { findByIds } from './lookup';
import { STALE_INTENT_MS } from './outbox';
import { type OutboxJobs, isJob } from './outbox-jobs';
import type { QueryExecutor } from './query';
import type { BucketSource } from './query';
import { type ErasePlan, emptyErasePlan, isEmptyErasePlan, mergeErasePlan } from './query/erase-plan';
import { historyId, type CurrentDoc, type HistoryDoc, type PreparedWrite } from './types';
import type { IndexFn } from './versions';

/** An erased patient compartment: while it stands, nothing is committed into the compartment. */
export interface ErasedDoc {
  /** "Patient/<id>". */
  _id: string;
  at: Date;
}

/** A resource to erase and the newest version known of it. */
export interface EraseKey {
  type: string;
  id: string;
  vid: number;
}

/** What a sweep removed (or, in a dry run, found). */
export interface EraseCounts {
  versions: number;
  candidates: number;
  bodies: number;
}

const POLL_MS = 25;
/** The outbox job that removes erased resources' search entries (on the lease holder). */
const ERASE_JOB = 'erase-search-entries';
/** How long a sweep waits for a lease holder to run it (it runs later all the same). */
const ERASE_JOB_WAIT_MS = 60_000;
const MESSAGE_CODE = 'MSG_PATIENT_ERASED';

/** The refusal of a commit into an erased compartment (server-side writers drop their work on it). */
export function isErasedCompartment(e: unknown): boolean {
  return (e as FhirError | undefined)?.messageCode === MESSAGE_CODE;
}

/**
 * Storage's part of erasure (the repository's `erasure` face): compartment markers that every
 * commit checks after its outbox intent and before its commit point, waits that let writers and
 * the outbox get past a marker, and the sweep of every stored trace of resources (all versions,
 * current documents, out-of-line bodies, outbox intents, search bucket entries, journal entries).
 *
 * Why the order works: a commit writes its intent, then consults the markers (this process's
 * copy, erased-marks.ts). A writer that missed a marker used a copy read before the marker existed
 * and trusted for MARKS_TRUSTED_MS at most; `mark` waits that long, so the writer's intent was
 * stored before `mark` returned: `settleWriters` waits for exactly those intents, and the sweep
 * after it sees their versions. Writers that come later see the marker and are refused (derived
 * writes from outbox consumers included).
 */
export class StorageErasure {
  private readonly marks: ErasedMarks<ErasedDoc>;

  constructor(
    private readonly cols: Collections,
    private readonly executor: QueryExecutor,
    private readonly index: IndexFn,
    private readonly logger: Logger,
    private readonly jobs: OutboxJobs,
  ) {
    this.marks = new ErasedMarks(cols.erased);
    jobs.handle(ERASE_JOB, (plan) => executor.applyErase(plan as ErasePlan));
  }

  // ---------------------------------------------------------------- markers

  /**
   * Marks a patient's compartment erased (idempotent: a unique insert), then waits out the time
   * any process may still trust a copy of the marks read before the insert (erased-marks.ts), so
   * that every writer which missed the mark has stored its outbox intent by the time this returns
   * (and `settleWriters` sees it).
   */
  async mark(patientId: string): Promise<void> {
    const ref = `Patient/${patientId}`;
    await this.cols.erased.insertOne({ _id: ref, at: new Date() }).catch((e: unknown) => (isDuplicateKey(e) ? undefined : Promise.reject(e)));
    this.marks.noteMarked(ref);
    await new Promise((r) => setTimeout(r, MARKS_TRUSTED_MS + MARK_MARGIN_MS));
  }

  async isErased(patientId: string): Promise<boolean> {
    return (await this.cols.erased.findOne({ _id: `Patient/${patientId}` })) !== null;
  }

  /**
   * Refuses (422) writes into an erased compartment, from this process's copy of the marks
   * (erased-marks.ts: at most one read of the marks per MARKS_TRUSTED_MS, shared by all writers).
   * Called after the writes' outbox intents are stored and before their commit point.
   */
  async refuseErased(writes: readonly PreparedWrite[]): Promise<void> {
    const refs = new Set<string>();
    for (const w of writes) {
      for (const c of w.doc.comp) if (c.startsWith('Patient/')) refs.add(c);
      if (w.type === 'Patient') refs.add(`Patient/${w.id}`);
    }
    const hit = await this.marks.firstErased([...refs]);
    if (hit) throw Errors.unprocessable(`${hit} was erased; nothing can be written into its compartment`, MESSAGE_CODE);
  }

  // ---------------------------------------------------------------- waits

  /**
   * Waits until every write whose intent is pending now has finished: its current document shows
   * its version, its transaction is gone, or it was abandoned (no commit within STALE_INTENT_MS).
   */
  async settleWriters(timeoutMs: number): Promise<boolean> {
    // Jobs (another erasure's bucket sweep) are no writes.
    const intents = (await this.cols.outbox.find({}).toArray()).filter((i) => !isJob(i));
    const deadline = Date.now() + Math.max(timeoutMs, STALE_INTENT_MS + 1000);
    let open = intents;
    while (open.length > 0) {
      const still = await Promise.all(open.map(async (i) => ((await this.settled(i._id, i.tx, i.at)) ? undefined : i)));
      open = still.filter((i): i is (typeof intents)[number] => i !== undefined);
      if (open.length === 0) return true;
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    if (open.length > 0) this.logger.warn({ count: open.length }, 'erasure: writes still in flight after the wait; the second sweep covers them');
    return open.length === 0;
  }

  private async settled(hid: string, tx: string | undefined, at: Date): Promise<boolean> {
    if (!(await this.cols.outbox.findOne({ _id: hid }, { projection: { _id: 1 } }))) return true;
    if (tx) return !(await this.cols.journal.findOne({ _id: tx }, { projection: { _id: 1 } }));
    const [type, id, vid] = splitHistoryId(hid);
    const h = await this.cols.history.findOne({ _id: hid }, { projection: { _id: 1 } });
    if (!h) return Date.now() - at.getTime() > STALE_INTENT_MS;
    const cur = await this.cols.current(type).findOne({ _id: id }, { projection: { vid: 1 } });
    return (cur?.vid ?? 0) >= vid;
  }

  /** Waits until the outbox has handed on (or dropped) every intent pending now. */
  async outboxPassed(timeoutMs: number): Promise<boolean> {
    let open = (await this.cols.outbox.find({}, { projection: { _id: 1 } }).toArray()).map((i) => i._id);
    const deadline = Date.now() + timeoutMs;
    while (open.length > 0 && Date.now() <= deadline) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      open = (await findByIds(this.cols.outbox, open, { projection: { _id: 1 } })).map((i) => i._id);
    }
    if (open.length > 0) this.logger.warn({ count: open.length }, 'erasure: the outbox did not pass the marker in time; continuing');
    return open.length === 0;
  }

  // ---------------------------------------------------------------- what to erase

  /**
   * Every resource that ever was in the patient's compartment (any version), and the Patient
   * itself. History is scanned once (the embedded database has no secondary index to use), the
   * current collections once each, so resources moved out of the compartment since are found too.
   */
  async compartmentKeys(patientId: string, served: readonly string[]): Promise<EraseKey[]> {
    const ref = `Patient/${patientId}`;
    const latest = new Map<string, number>();
    const note = (type: string, id: string, vid: number) => {
      const k = `${type}/${id}`;
      latest.set(k, Math.max(latest.get(k) ?? 0, vid));
    };
    const hs = this.cols.history.find({ $or: [{ comp: ref }, { type: 'Patient', id: patientId }] }, { projection: { type: 1, id: 1, vid: 1 } });
    for await (const h of hs) note(h.type, h.id, h.vid);
    for (const type of served) {
      const filter = type === 'Patient' ? { _id: patientId } : { comp: ref };
      for await (const c of this.cols.current(type).find(filter, { projection: { vid: 1 } })) note(type, c._id, c.vid);
    }
    return [...latest].map(([k, vid]) => ({ type: k.slice(0, k.indexOf('/')), id: k.slice(k.indexOf('/') + 1), vid }));
  }

  /** The current version of one resource (for `$expunge`: it must exist and be deleted). */
  async currentState(type: string, id: string): Promise<{ vid: number; deleted: boolean } | null> {
    return this.cols.current(type).findOne({ _id: id }, { projection: { vid: 1, deleted: 1 } });
  }

  /** Version counts of resources (a dry run). */
  async countVersions(keys: readonly EraseKey[]): Promise<number> {
    let n = 0;
    for (const k of keys) n += (await this.versionsOf(k)).length;
    return n;
  }

  // ---------------------------------------------------------------- the sweep

  /**
   * Removes every stored trace of `keys`; `patients` are erased compartments (their search
   * directories and any body tagged with them, even of a version that never committed).
   * Documents go before their bodies, so a reader never meets a document whose body is gone for
   * long (bodies.ts refuses to return a lean copy).
   */
  async sweep(keys: readonly EraseKey[], patients: readonly string[]): Promise<EraseCounts> {
    const counts: EraseCounts = { versions: 0, candidates: 0, bodies: 0 };
    // Engine-side entries to remove, by type: every version's index values (token lists, code
    // and patient buckets) and its time-bucket entry (history by time), plus the current form.
    const entries = new Map<string, { docs: BucketSource[]; ids: Set<string> }>();
    const bodyIds: string[] = [];
    for (const k of keys) {
      const versions = await this.versionsOf(k);
      const cur = await this.cols.current(k.type).findOne({ _id: k.id });
      counts.versions += versions.length;
      for (const h of versions) {
        if (h.body) bodyIds.push(h.body);
        await this.cols.outbox.deleteOne({ _id: h._id });
        await this.cols.history.deleteOne({ _id: h._id });
      }
      if (cur?.body) bodyIds.push(cur.body);
      await this.cols.current(k.type).deleteOne({ _id: k.id });
      const e = entries.get(k.type) ?? { docs: [], ids: new Set<string>() };
      entries.set(k.type, e);
      e.ids.add(k.id);
      for (const res of [...versions.map((h) => h.res), cur?.res]) {
        const indexed = res && this.indexOf(res as Resource);
        if (indexed) e.docs.push({ _id: k.id, ...indexed });
      }
      for (const h of versions) e.docs.push({ _id: k.id, idx: {}, comp: [], vid: h.vid, ts: h.ts, deleted: true });
      if (cur && !cur.deleted) e.docs.push(cur as CurrentDoc);
    }
    await this.dropJournalEntries(new Set(keys.map((k) => `${k.type}/${k.id}`)));
    for (const p of patients) bodyIds.push(...(await this.bodiesOf(`Patient/${p}`)));
    counts.bodies = await this.removeBodies(bodyIds);
    // The patients' own directories live with the Observation buckets: visited even when no
    // Observation of theirs is left.
    if (patients.length > 0 && !entries.has('Observation')) entries.set('Observation', { docs: [], ids: new Set() });
    // What this process holds in memory goes now; the stored entries go by the bucket writer's hand.
    const plan = emptyErasePlan();
    for (const [type, e] of entries) mergeErasePlan(plan, this.executor.eraseStaged(type, e.docs, e.ids, patients));
    if (!isEmptyErasePlan(plan)) {
      const r = await this.jobs.run(ERASE_JOB, plan, ERASE_JOB_WAIT_MS);
      if (r.done) counts.candidates = Number(r.result ?? 0);
      else this.logger.warn('erasure: no outbox lease holder removed the search entries in time; the first to hold the lease will');
    }
    return counts;
  }

  /** Index values of a stored version (undefined for a type the search module does not index). */
  private indexOf(res: Resource): Pick<BucketSource, 'idx' | 'comp'> | undefined {
    try {
      return this.index(res);
    } catch {
      return undefined;
    }
  }

  /** All versions by key (1..n, probing past the newest known so a version in flight is not missed). */
  private async versionsOf(k: EraseKey): Promise<HistoryDoc[]> {
    const out: HistoryDoc[] = [];
    for (let v = 1; ; v++) {
      const h = await this.cols.history.findOne({ _id: historyId(k.type, k.id, v) });
      if (!h) {
        if (v > k.vid) break;
        continue;
      }
      out.push(h);
    }
    return out;
  }

  /** Journal entries naming erased resources go; a journal left with none goes too. */
  private async dropJournalEntries(names: ReadonlySet<string>): Promise<void> {
    for (const j of await this.cols.journal.find({}).toArray()) {
      const kept = j.versions.filter((v) => !names.has(`${v.type}/${v.id}`));
      if (kept.length === j.versions.length) continue;
      if (kept.length === 0) await this.cols.journal.deleteOne({ _id: j._id });
      else await this.cols.journal.updateOne({ _id: j._id }, { $set: { versions: kept } });
    }
  }

  private async bodiesOf(compartment: string): Promise<string[]> {
    return (await this.cols.bodies.find({ comp: compartment }, { projection: { _id: 1 } }).toArray()).map((b) => b._id);
  }

  private async removeBodies(ids: readonly string[]): Promise<number> {
    let n = 0;
    for (const id of new Set(ids)) n += (await this.cols.bodies.deleteOne({ _id: id })).deletedCount;
    return n;
  }
}

function splitHistoryId(hid: string): [string, string, number] {
  const a = hid.indexOf('/');
  const b = hid.lastIndexOf('/');
  return [hid.slice(0, a), hid.slice(a + 1, b), Number(hid.slice(b + 1))];
}
