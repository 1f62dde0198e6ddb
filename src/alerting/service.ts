import type { Device, Flag, Observation, Resource } from 'fhir/r4';
import type { Db } from 'mongodb';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { Principal } from '../auth/types';
import type { AlertingConfig } from '../config';
import { Errors } from '../errors';
import type { BatchInfo, CommittedEvent } from '../storage';
import { AlertingState } from '../storage/state/alerting';
import type { RangeContext } from '../subscriptions/interpretation';
import { LOINC, SNOMED } from '../terminology/vital-codes';
import { DerivedBatch, type DerivedListener, type ResourcePort } from './batch';
import { DeadlineWorker, deadlineDoc, type DeadlineDoc } from './deadlines';
import { EpisodeTracker } from './episodes';
import { eventChains } from './event-chains';
import { flagIdOf } from './flag';
import { PatientInputsCache, type PatientLoader } from './inputs';
import { ALERT_CODES, type EpisodeStream } from './model';
import { News2InputMemory } from './news2-inputs';
import { NEWS2_TOTAL } from './news2-observation';
import { vitalReadings } from './readings';
import { rangeContextFor } from './targets';
import { checkDeviceWrite, reportingIntervalS } from './device-interval';

export interface AlertingDeps extends PatientLoader {
  db: Db;
  config: AlertingConfig;
  logger: Logger;
  resources: ResourcePort;
  /** The outbox lease epoch while this instance holds the lease (undefined otherwise); absent: never. */
  leaseEpoch?: () => number | undefined;
  now?: () => Date;
}

/** How many per-Observation cost samples are kept (see observationCosts). */
const COST_SAMPLES = 10_000;
/** Chains of a batch (see event-chains.ts) worked on side by side. */
const CHAINS_AT_ONCE = 32;

const DEVICE_CACHE_MS = 30_000;

/**
 * Clinical alerting, driven by committed versions from the outbox (never by memory alone):
 * alert episodes per patient and vital sign (Flag resources), NEWS2, silent devices with durable
 * deadlines, and per-patient ranges for derived interpretations. See README.md in this folder.
 */
export class AlertingService {
  readonly episodes: EpisodeTracker;
  private readonly st: AlertingState;
  private readonly deadlines: DeadlineWorker;
  private readonly inputs: PatientInputsCache;
  private readonly now: () => Date;
  private readonly leaseEpoch: () => number | undefined;
  private readonly devices = new Map<string, { interval?: number; patient?: string; at: number }>();
  /** Newest NEWS2 inputs per patient, kept while the lease is held (epoch `latestEpoch`). */
  private readonly news2: News2InputMemory;
  private latestEpoch?: number;
  private readonly costs: number[] = [];
  private derived?: DerivedListener;
  /** Batches consumed whose second wave waits for the outbox finisher (weak: a batch offered again is a new array). */
  private readonly later = new WeakMap<CommittedEvent[], { batch: DerivedBatch; ms: number; observations: number }>();
  /**
   * The same second waves by the history ids of their batch's events, until they ran. A batch
   * offered again in the same epoch (a later consumer or finisher failed) finds memory that
   * already decided it (the NEWS2 scores it recorded, the episodes it opened), so its replay
   * derives nothing new: the second wave decided the first time is run instead (see onCommitted).
   */
  private readonly unfinished = new Map<string, DerivedBatch>();

  constructor(private readonly deps: AlertingDeps) {
    this.now = deps.now ?? (() => new Date());
    this.leaseEpoch = deps.leaseEpoch ?? (() => undefined);
    this.st = new AlertingState(deps.db);
    this.episodes = new EpisodeTracker(this.st, deps.resources, {
      normalsToResolve: deps.config.normalsToResolve,
      latestRefreshMs: deps.config.latestRefreshSeconds * 1000,
      leaseEpoch: this.leaseEpoch,
      now: this.now,
    });
    this.inputs = new PatientInputsCache(deps, this.leaseEpoch);
    this.news2 = new News2InputMemory(this.st, {
      freshnessMinutes: deps.config.news2FreshnessMinutes,
      latestRefreshSeconds: deps.config.latestRefreshSeconds,
      leased: () => this.leased(),
      patient: async (ref) => (await this.inputs.get(ref)).patient,
      now: this.now,
    });
    // Deadlines fire where the consumer runs (the outbox lease holder): see deadlines.ts.
    const active = deps.leaseEpoch ? () => this.leaseEpoch() !== undefined : () => true;
    this.deadlines = new DeadlineWorker(this.st, (d) => this.episodes.exclusive(() => this.onDeadline(d)), deps.logger, this.now, deps.config.deadlinePollMs, active);
  }

  async ensureIndexes(): Promise<void> {
    await this.st.ensureIndexes();
  }

  start(): void {
    if (this.deps.config.enabled) this.deadlines.start();
  }

  async stop(): Promise<void> {
    await this.deadlines.stop();
  }

  /** For metrics: episodes open right now (kept in memory while the lease is held; no scan at scrape). */
  openEpisodeCount(): Promise<number> {
    return this.episodes.openCount();
  }

  /** Who hears of the versions a batch committed at once (subscriptions); a failure there only logs. */
  onDerived(l: DerivedListener): void {
    this.derived = (evs) => l(evs).catch((e: unknown) => this.deps.logger.warn({ err: e }, 'matching derived versions failed; the outbox offers them again'));
  }

  /** Fires overdue deadlines now (tests with an injected clock). */
  fireDueDeadlines(): Promise<number> {
    return this.deadlines.fireDue();
  }

  /**
   * The consumer's own cost of episode tracking and NEWS2 per Observation (ms; each batch's time
   * shared among its Observations), newest last, at most 10,000 samples; `reset` empties it.
   */
  observationCosts(reset = false): number[] {
    const out = [...this.costs];
    if (reset) this.costs.length = 0;
    return out;
  }

  /**
   * Erasure: removes everything alerting keeps about `Patient/<patientId>` (episode keys, state,
   * heads and Flag index, NEWS2 inputs, quiet-period and silent-device deadlines naming it, and
   * this instance's cached copies). The Flags and NEWS2 Observations are resources in the
   * patient's compartment: erasure removes those itself.
   */
  async erase(patientId: string): Promise<void> {
    const ref = `Patient/${patientId}`;
    await this.episodes.exclusive(async () => {
      await this.st.erasePatient(ref);
      this.episodes.forget(ref);
      this.inputs.forget(ref);
      this.news2.forget(ref);
      for (const [device, info] of this.devices) if (info.patient === ref) this.devices.delete(device);
    });
  }

  // ---------------------------------------------------------------- before the commit

  /** Refuses a Device whose expected reporting interval is malformed or shorter than 10 s. */
  beforeWrite(r: Resource): Resource {
    return checkDeviceWrite(r);
  }

  /**
   * Per-patient facts for derived interpretations (targets, age, gender), from the cache while
   * the lease is held. (`_reader` is the wiring's patient reader; the cache reads through its own.)
   */
  rangeContext(obs: Observation, _reader?: unknown): Promise<RangeContext | undefined> {
    const ref = obs.subject?.reference;
    if (!this.deps.config.enabled || !ref?.startsWith('Patient/')) return Promise.resolve(undefined);
    let inputs: ReturnType<PatientInputsCache['get']> | undefined;
    const once = () => (inputs ??= this.inputs.get(ref));
    return rangeContextFor(obs, { patient: async () => (await once()).patient, goals: async () => (await once()).goals }, this.now());
  }

  // ---------------------------------------------------------------- after the commit

  /**
   * The outbox consumer. Under the lease (`batch` given) the episode state, NEWS2 inputs and
   * patient inputs live in memory, loaded when the lease epoch starts; what the batch derives is
   * written at its end in one commit (see batch.ts).
   */
  async onCommitted(events: CommittedEvent[], info?: BatchInfo): Promise<void> {
    if (!this.deps.config.enabled) return;
    await this.episodes.exclusive(async () => {
      const t0 = performance.now();
      if (info) await this.takeOver(info.epoch);
      await this.finishOffered(events);
      const batch = new DerivedBatch(this.st, this.deps.resources, this.derived);
      let observations = 0;
      try {
        const chains = eventChains(events);
        const work = async () => {
          for (let c = chains.shift(); c; c = chains.shift()) {
            for (const ev of c) {
              if (ev.type === 'Patient' || ev.type === 'Goal') this.inputs.committed(ev);
              else if (ev.type === 'Flag') await this.episodes.noteFlag(ev);
              else if (ev.type === 'Device') await this.onDevice(ev, batch);
              else if (ev.type === 'Observation' && ev.resource && ev.method !== 'DELETE' && (await this.onObservation(ev, ev.resource as Observation, batch))) observations++;
            }
          }
        };
        // Every worker runs to its end before the batch is flushed or fails (allSettled).
        const ends = await Promise.allSettled(Array.from({ length: Math.min(CHAINS_AT_ONCE, chains.length) }, work));
        const failed = ends.find((e): e is PromiseRejectedResult => e.status === 'rejected');
        if (failed) throw failed.reason;
        await batch.flush();
      } catch (e) {
        // The outbox offers the batch again; memory that ran ahead of the database is reloaded first.
        this.episodes.drop();
        this.latestEpoch = undefined;
        throw e;
      }
      this.later.set(events, { batch, ms: performance.now() - t0, observations });
      for (const ev of events) this.unfinished.set(ev.historyId, batch);
    });
  }

  /** Runs the unfinished second waves of earlier offers of these events (idempotent: fixed ids, replaces). */
  private async finishOffered(events: readonly CommittedEvent[]): Promise<void> {
    const waves = new Set(events.flatMap((ev) => this.unfinished.get(ev.historyId) ?? []));
    for (const wave of waves) {
      await wave.finishLater();
      this.forgetWave(wave);
    }
  }

  private forgetWave(wave: DerivedBatch): void {
    for (const [hid, b] of this.unfinished) if (b === wave) this.unfinished.delete(hid);
  }

  /**
   * The outbox finisher: the second wave of what the batch derived (batch.ts), after the
   * batch's other consumers. A batch offered again (a failure, a crash) is derived again, so a
   * batch whose second wave never ran loses nothing.
   */
  async onFinished(events: CommittedEvent[]): Promise<void> {
    const l = this.later.get(events);
    if (!l) return;
    this.later.delete(events);
    const t0 = performance.now();
    await l.batch.finishLater();
    for (const ev of events) this.unfinished.delete(ev.historyId);
    if (l.observations > 0) this.recordCost((l.ms + performance.now() - t0) / l.observations, l.observations);
  }

  private async takeOver(epoch: number): Promise<void> {
    await this.episodes.takeOver(epoch);
    this.inputs.takeOver(epoch);
    if (this.latestEpoch !== epoch) {
      this.latestEpoch = undefined;
      // Memory is reloaded from the database: a replay derives the lost second waves again.
      this.unfinished.clear();
      this.devices.clear();
      await this.news2.load();
      this.latestEpoch = epoch;
    }
  }

  private leased(): boolean {
    return this.latestEpoch !== undefined && this.leaseEpoch() === this.latestEpoch;
  }

  private recordCost(ms: number, times: number): void {
    for (let i = 0; i < times; i++) this.costs.push(ms);
    if (this.costs.length > COST_SAMPLES) this.costs.splice(0, this.costs.length - COST_SAMPLES);
  }

  /** Returns whether the Observation was one alerting judged (a vital sign, NEWS2 input or device reading). */
  private async onObservation(ev: CommittedEvent, obs: Observation, batch: DerivedBatch): Promise<boolean> {
    if ((obs.code?.coding ?? []).some((c) => c.system === SNOMED && c.code === NEWS2_TOTAL.code)) return false; // our own
    const ref = `Observation/${ev.id}`;
    const patient = obs.subject?.reference?.startsWith('Patient/') ? obs.subject.reference : undefined;
    let judged = false;
    if (patient) {
      for (const v of vitalReadings(obs)) {
        judged = true;
        const stream: EpisodeStream = {
          key: `${patient}|${v.loinc}`,
          subject: { reference: patient },
          code: { system: LOINC, code: v.loinc, display: v.display },
        };
        const event = await this.episodes.apply(stream, { level: v.level, severity: v.severity, ref, at: ev.ts }, 2, undefined, batch);
        if (event === 'raised') this.scheduleQuiet(stream.key, ev.ts, batch);
      }
      if (this.deps.config.news2) judged = (await this.onNews2Input(ev, obs, patient, batch)) || judged;
    }
    const device = obs.device?.reference;
    if (device?.startsWith('Device/')) {
      judged = true;
      await this.onDeviceReading(device, patient, ev.ts, batch);
    }
    return judged;
  }

  /**
   * The quiet period is scheduled when an episode is raised and checked when it falls due: an
   * abnormal reading since then moves it (see onDeadline), so repeat readings write nothing.
   */
  private scheduleQuiet(streamKey: string, at: Date, batch: DerivedBatch): void {
    const q = this.deps.config.quietMinutes;
    if (q > 0) batch.deadline(deadlineDoc(`quiet|${streamKey}`, new Date(at.getTime() + q * 60_000), { stream: streamKey }));
  }

  // ---------------------------------------------------------------- NEWS2

  private async onNews2Input(ev: CommittedEvent, obs: Observation, patient: string, batch: DerivedBatch): Promise<boolean> {
    const reading = await this.news2.record(ev, obs, patient, batch);
    if (reading === undefined) return false;
    if (reading === null) return true; // no new value, or incomplete: no alert, no resolution either
    const stream: EpisodeStream = { key: `${patient}|news2`, subject: { reference: patient }, code: NEWS2_TOTAL };
    const event = await this.episodes.apply(stream, { ...reading, key: `Observation/${ev.id}`, at: ev.ts }, 3, undefined, batch);
    if (event === 'raised') this.scheduleQuiet(stream.key, ev.ts, batch);
    return true;
  }

  // ---------------------------------------------------------------- silent devices

  private async deviceInfo(ref: string): Promise<{ interval?: number; patient?: string }> {
    const cached = this.devices.get(ref);
    // While the lease is held, Device commits invalidate the entry (onDevice); else it ages out.
    if (cached && (this.leased() || Date.now() - cached.at < DEVICE_CACHE_MS)) return cached;
    const d = (await this.deps.resources.read('Device', ref.slice('Device/'.length)))?.res as Device | undefined;
    const info = { interval: reportingIntervalS(d), patient: d?.patient?.reference, at: Date.now() };
    this.devices.set(ref, info);
    return info;
  }

  private async onDevice(ev: CommittedEvent, batch: DerivedBatch): Promise<void> {
    const ref = `Device/${ev.id}`;
    this.devices.delete(ref);
    const d = ev.method === 'DELETE' ? undefined : (ev.resource as Device | undefined);
    const interval = reportingIntervalS(d);
    const id = `silent|${ref}`;
    if (interval === undefined) {
      await this.deadlines.cancel(id);
      return;
    }
    // A device that never reports at all is silent too: its first deadline counts from now.
    if (!(await this.st.deadline(id))) batch.deadline(deadlineDoc(id, new Date(ev.ts.getTime() + interval * 1000), d?.patient?.reference ? { patient: d.patient.reference } : {}));
  }

  private async onDeviceReading(ref: string, patient: string | undefined, at: Date, batch: DerivedBatch): Promise<void> {
    const info = await this.deviceInfo(ref);
    if (info.interval === undefined) return;
    const owner = patient ?? info.patient;
    batch.deadline(deadlineDoc(`silent|${ref}`, new Date(at.getTime() + info.interval * 1000), owner ? { patient: owner } : {}));
    // Data resumed: an open silent episode resolves on the first reading.
    await this.episodes.apply(this.silentStream(ref, owner), { level: 0, severity: 'reporting', ref, at }, 1, 1, batch);
  }

  private silentStream(device: string, patient: string | undefined): EpisodeStream {
    return {
      key: `${device}|device-silent`,
      subject: patient ? { reference: patient } : { display: `No patient recorded for ${device}` },
      code: { system: ALERT_CODES, code: 'device-silent', display: 'Device silent' },
    };
  }

  private async onDeadline(d: DeadlineDoc): Promise<void> {
    const now = this.now();
    if (d._id.startsWith('silent|')) {
      const device = d._id.slice('silent|'.length);
      const patient = d.data.patient ?? (await this.deviceInfo(device)).patient;
      await this.episodes.apply(this.silentStream(device, patient), { level: 1, severity: 'silent', ref: device, at: d.due }, 1, 1);
    } else if (d._id.startsWith('quiet|')) {
      const stream = d.data.stream;
      const cur = await this.episodes.current(stream);
      if (!cur?.open) return;
      const s = await this.episodes.stateOf(stream, cur.n);
      if (!s) return;
      // Read from the database, the time of the last abnormal reading may lag by the refresh interval.
      const slack = s.exact ? 0 : this.deps.config.latestRefreshSeconds * 1000;
      const quietAt = s.lastAbnormalAt.getTime() + this.deps.config.quietMinutes * 60_000 + slack;
      if (quietAt <= now.getTime()) await this.episodes.resolve(stream, cur.n, now);
      else await this.deadlines.schedule(d._id, new Date(quietAt), d.data);
    }
  }

  // ---------------------------------------------------------------- acknowledgement

  /**
   * Flag/[id]/$acknowledge: records who acknowledged the episode's current level and when. The
   * caller has already been authorised to update the Flag.
   */
  async acknowledge(flagId: string, principal: Principal): Promise<Flag> {
    const ep = await this.episodes.byFlag(flagId);
    if (!ep || flagIdOf(ep.stream, ep.n) !== flagId) {
      throw Errors.unprocessable(`Flag/${flagId} is not an alert episode`, 'MSG_NOT_AN_EPISODE', ['Flag']);
    }
    const ok = await this.episodes.exclusive(() => this.episodes.acknowledge(ep.stream, ep.n, principal.clientId, this.now()));
    if (!ok) throw Errors.conflict(`Flag/${flagId} is already resolved`, 'MSG_EPISODE_RESOLVED');
    return (await this.deps.resources.read('Flag', flagId))!.res as Flag;
  }
}
