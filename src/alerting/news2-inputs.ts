import type { Observation } from 'fhir/r4';
import type { CommittedEvent } from '../storage';
import type { AlertingState, AlertLatestDoc } from '../storage/state/alerting';
import type { DerivedBatch } from './batch';
import { effectiveOf } from './device-interval';
import { ALERT_EXT } from './model';
import { BAND_RANK, news2, type News2Inputs } from './news2';
import { news2Observation, news2ObservationId } from './news2-observation';
import { news2Values } from './readings';

export interface News2InputsOptions {
  freshnessMinutes: number;
  latestRefreshSeconds: number;
  /** Whether the outbox lease is held in the epoch the memory was loaded for. */
  leased: () => boolean;
  /** The patient's record (for the SpO2 scale extension). */
  patient: (ref: string) => Promise<{ extension?: { url: string; valueInteger?: number }[] } | undefined>;
  now: () => Date;
}

/** What a NEWS2 input makes of the patient's score: the reading the NEWS2 episode judges, if complete. */
export interface News2Reading {
  level: number;
  severity: string;
  /** The NEWS2 Observation that carries the score. */
  ref: string;
}

/**
 * The newest value of each NEWS2 parameter per patient, and the step from a committed input to
 * a score: which NEWS2 Observation to write (only when the scores change) and when to store the
 * inputs. Under the outbox lease the inputs live in memory (loaded once per epoch, `load`);
 * without it every read goes to the database.
 */
export class News2InputMemory {
  private readonly latest = new Map<string, AlertLatestDoc>();
  /** When each patient's inputs were last stored (clock ms). */
  private readonly savedAt = new Map<string, number>();

  constructor(
    private readonly st: AlertingState,
    private readonly opts: News2InputsOptions,
  ) {}

  /** Every patient's inputs at once, for a new lease epoch: under the lease a patient absent here has none. */
  async load(): Promise<void> {
    this.clear();
    const nowMs = this.opts.now().getTime();
    for (const d of await this.st.allLatest()) {
      this.latest.set(d._id, d);
      this.savedAt.set(d._id, nowMs);
    }
  }

  clear(): void {
    this.latest.clear();
    this.savedAt.clear();
  }

  forget(patient: string): void {
    this.latest.delete(patient);
    this.savedAt.delete(patient);
  }

  /**
   * Records the NEWS2 parameters `obs` carries; returns undefined when it carries none, null
   * when the score is incomplete (no alert, no resolution either), else the reading.
   */
  async record(ev: CommittedEvent, obs: Observation, patient: string, batch: DerivedBatch): Promise<News2Reading | null | undefined> {
    const values = news2Values(obs);
    if (values.length === 0) return undefined;
    const at = effectiveOf(obs, ev.ts);
    const doc = await this.latestOf(patient);
    let changed = false;
    for (const v of values) {
      const cur = doc.v[v.param];
      if (cur && cur.at > at) continue; // an older reading arriving late does not replace a newer one
      doc.v[v.param] = { value: v.value, at, ref: `Observation/${ev.id}` };
      changed = true;
    }
    if (!changed) return null;

    const fresh = at.getTime() - this.opts.freshnessMinutes * 60_000;
    const inputs: News2Inputs = {};
    const refs = new Set<string>();
    for (const [param, e] of Object.entries(doc.v)) {
      if (e.at.getTime() < fresh || e.at.getTime() > at.getTime()) continue;
      (inputs as Record<string, unknown>)[param] = e.value;
      refs.add(e.ref);
    }
    const scale = (await this.opts.patient(patient))?.extension?.find((e) => e.url === ALERT_EXT.news2Scale)?.valueInteger === 2 ? 2 : 1;
    const result = news2(inputs, scale);
    // The same scores as the NEWS2 Observation written last are not recorded again (a wearable
    // repeating one parameter would otherwise double the writes); they still count for the episode.
    const scores = JSON.stringify([result.scale, result.complete, result.scores]);
    let ref = doc.last?.scores === scores ? doc.last.ref : undefined;
    const rescored = !ref;
    if (!ref) {
      const id = news2ObservationId(`Observation/${ev.id}`, ev.vid);
      batch.create(news2Observation({ id, patient, effective: at, result, inputs: [...refs].sort() }));
      ref = `Observation/${id}`;
      doc.last = { scores, ref };
    }
    this.store(doc, rescored, batch);
    if (!result.complete || !result.band) return null;
    return { level: BAND_RANK[result.band], severity: result.band, ref };
  }

  /**
   * Stored when the scores changed; values that score the same change no NEWS2 and are stored at
   * most once a refresh interval (after a take-over their times may be that much older).
   */
  private store(doc: AlertLatestDoc, rescored: boolean, batch: DerivedBatch): void {
    const nowMs = this.opts.now().getTime();
    const savedAt = this.savedAt.get(doc._id);
    if (!this.opts.leased() || rescored || savedAt === undefined || nowMs - savedAt >= this.opts.latestRefreshSeconds * 1000) {
      batch.latestInputs(doc);
      this.savedAt.set(doc._id, nowMs);
    }
  }

  private async latestOf(patient: string): Promise<AlertLatestDoc> {
    const leased = this.opts.leased();
    const hit = leased ? this.latest.get(patient) : undefined;
    if (hit) return hit;
    const doc = (leased ? undefined : await this.st.latest(patient)) ?? { _id: patient, v: {} };
    if (leased) this.latest.set(patient, doc);
    return doc;
  }
}
