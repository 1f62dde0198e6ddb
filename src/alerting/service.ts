import type { Device, Flag, Goal, Observation, Patient, Resource } from 'fhir/r4';
import type { Db } from 'mongodb';
import type { Logger } from 'pino';
import type { Principal } from '../auth/types';
import type { AlertingConfig } from '../config';
import { Errors } from '../errors';
import type { CommittedEvent } from '../storage';
import type { RangeContext } from '../subscriptions/interpretation';
import { LOINC, SNOMED } from '../terminology/vital-codes';
import { putById } from './db';
import { DeadlineWorker, type DeadlineDoc } from './deadlines';
import { EpisodeTracker, type ResourcePort } from './episodes';
import { flagIdOf } from './flag';
import { ALERT_CODES, ALERT_EXT, type EpisodeStream } from './model';
import { BAND_RANK, news2, type News2Inputs } from './news2';
import { NEWS2_TOTAL, news2Observation, news2ObservationId } from './news2-observation';
import { news2Values, vitalReadings } from './readings';
import { rangeContextFor } from './targets';

export interface AlertingDeps {
  db: Db;
  config: AlertingConfig;
  logger: Logger;
  resources: ResourcePort;
  /** Active Goals of a patient ("Patient/1"), for per-patient targets. */
  goals(patientRef: string): Promise<Goal[]>;
  now?: () => Date;
}

interface LatestDoc {
  _id: string;
  v: Partial<Record<keyof News2Inputs, { value: number | boolean | string; at: Date; ref: string }>>;
  /** The scores of the NEWS2 Observation written last, and its reference (unchanged scores are not written again). */
  last?: { scores: string; ref: string };
}

const MIN_INTERVAL_S = 10;
const DEVICE_CACHE_MS = 30_000;

/** The expected reporting interval of a Device in seconds (undefined when absent or unusable). */
export function reportingIntervalS(d: Device | undefined): number | undefined {
  const q = d?.extension?.find((e) => e.url === ALERT_EXT.reportingInterval)?.valueDuration;
  if (!q || typeof q.value !== 'number') return undefined;
  const per: Record<string, number> = { s: 1, min: 60, h: 3600, d: 86400 };
  const f = per[q.code ?? q.unit ?? ''];
  return f === undefined ? undefined : q.value * f;
}

function effectiveOf(o: Observation, fallback: Date): Date {
  const t = Date.parse(o.effectiveDateTime ?? o.effectiveInstant ?? o.effectivePeriod?.end ?? o.effectivePeriod?.start ?? '');
  return Number.isFinite(t) ? new Date(t) : fallback;
}

/**
 * Clinical alerting, driven by committed versions from the outbox (never by memory alone):
 * alert episodes per patient and vital sign (Flag resources), NEWS2, silent devices with durable
 * deadlines, and per-patient ranges for derived interpretations. See README.md in this folder.
 */
export class AlertingService {
  readonly episodes: EpisodeTracker;
  private readonly deadlines: DeadlineWorker;
  private readonly now: () => Date;
  private readonly devices = new Map<string, { interval?: number; patient?: string; at: number }>();

  constructor(private readonly deps: AlertingDeps) {
    this.now = deps.now ?? (() => new Date());
    this.episodes = new EpisodeTracker(deps.db, deps.resources, { normalsToResolve: deps.config.normalsToResolve });
    this.deadlines = new DeadlineWorker(deps.db, (d) => this.onDeadline(d), deps.logger, this.now, deps.config.deadlinePollMs);
  }

  async ensureIndexes(): Promise<void> {
    await this.deadlines.ensureIndexes();
  }

  start(): void {
    if (this.deps.config.enabled) this.deadlines.start();
  }

  async stop(): Promise<void> {
    await this.deadlines.stop();
  }

  /** For metrics: episodes open right now. */
  openEpisodeCount(): Promise<number> {
    return this.episodes.openCount();
  }

  /** Fires overdue deadlines now (tests with an injected clock). */
  fireDueDeadlines(): Promise<number> {
    return this.deadlines.fireDue();
  }

  // ---------------------------------------------------------------- before the commit

  /** Refuses a Device whose expected reporting interval is malformed or shorter than 10 s. */
  beforeWrite(r: Resource): Resource {
    if (r.resourceType !== 'Device') return r;
    const ext = (r as Device).extension?.filter((e) => e.url === ALERT_EXT.reportingInterval) ?? [];
    if (ext.length === 0) return r;
    const s = ext.length === 1 ? reportingIntervalS(r as Device) : undefined;
    if (s === undefined || s < MIN_INTERVAL_S) {
      throw Errors.unprocessable(
        `The expected reporting interval must be one Duration of at least ${MIN_INTERVAL_S} seconds (UCUM s, min, h or d)`,
        'MSG_REPORTING_INTERVAL',
        ['Device.extension'],
      );
    }
    return r;
  }

  /** Per-patient facts for derived interpretations (targets, age, gender). */
  rangeContext(obs: Observation, load: { patient(id: string): Promise<Patient | undefined> }): Promise<RangeContext | undefined> {
    if (!this.deps.config.enabled) return Promise.resolve(undefined);
    return rangeContextFor(obs, { patient: load.patient, goals: (p) => this.deps.goals(p) }, this.now());
  }

  // ---------------------------------------------------------------- after the commit

  async onCommitted(events: CommittedEvent[]): Promise<void> {
    if (!this.deps.config.enabled) return;
    for (const ev of events) {
      if (ev.type === 'Device') {
        await this.onDevice(ev);
      } else if (ev.type === 'Observation' && ev.resource && ev.method !== 'DELETE') {
        await this.onObservation(ev, ev.resource as Observation);
      }
    }
  }

  private async onObservation(ev: CommittedEvent, obs: Observation): Promise<void> {
    if ((obs.code?.coding ?? []).some((c) => c.system === SNOMED && c.code === NEWS2_TOTAL.code)) return; // our own
    const ref = `Observation/${ev.id}`;
    const patient = obs.subject?.reference?.startsWith('Patient/') ? obs.subject.reference : undefined;
    if (patient) {
      for (const v of vitalReadings(obs)) {
        const stream: EpisodeStream = {
          key: `${patient}|${v.loinc}`,
          subject: { reference: patient },
          code: { system: LOINC, code: v.loinc, display: v.display },
        };
        await this.episodes.apply(stream, { level: v.level, severity: v.severity, ref, at: ev.ts }, 2);
        if (v.level > 0) await this.scheduleQuiet(stream.key, ev.ts);
      }
      if (this.deps.config.news2) await this.onNews2Input(ev, obs, patient);
    }
    const device = obs.device?.reference;
    if (device?.startsWith('Device/')) await this.onDeviceReading(device, patient, ev.ts);
  }

  private async scheduleQuiet(streamKey: string, at: Date): Promise<void> {
    const q = this.deps.config.quietMinutes;
    if (q > 0) await this.deadlines.schedule(`quiet|${streamKey}`, new Date(at.getTime() + q * 60_000), { stream: streamKey });
  }

  // ---------------------------------------------------------------- NEWS2

  private async onNews2Input(ev: CommittedEvent, obs: Observation, patient: string): Promise<void> {
    const values = news2Values(obs);
    if (values.length === 0) return;
    const latest = this.deps.db.collection<LatestDoc>('alert_latest');
    const at = effectiveOf(obs, ev.ts);
    const doc = (await latest.findOne({ _id: patient })) ?? { _id: patient, v: {} };
    let changed = false;
    for (const v of values) {
      const cur = doc.v[v.param];
      if (cur && cur.at > at) continue; // an older reading arriving late does not replace a newer one
      doc.v[v.param] = { value: v.value, at, ref: `Observation/${ev.id}` };
      changed = true;
    }
    if (!changed) return;

    const fresh = at.getTime() - this.deps.config.news2FreshnessMinutes * 60_000;
    const inputs: News2Inputs = {};
    const refs = new Set<string>();
    for (const [param, e] of Object.entries(doc.v) as [keyof News2Inputs, NonNullable<LatestDoc['v'][keyof News2Inputs]>][]) {
      if (e.at.getTime() < fresh || e.at.getTime() > at.getTime()) continue;
      (inputs as Record<string, unknown>)[param] = e.value;
      refs.add(e.ref);
    }
    const p = (await this.deps.resources.read('Patient', patient.slice('Patient/'.length)))?.resource as Patient | undefined;
    const scale = p?.extension?.find((e) => e.url === ALERT_EXT.news2Scale)?.valueInteger === 2 ? 2 : 1;
    const result = news2(inputs, scale);
    // The same scores as the NEWS2 Observation written last are not recorded again (a wearable
    // repeating one parameter would otherwise double the writes); they still count for the episode.
    const scores = JSON.stringify([result.scale, result.complete, result.scores]);
    let ref = doc.last?.scores === scores ? doc.last.ref : undefined;
    if (!ref) {
      const id = news2ObservationId(`Observation/${ev.id}`, ev.vid);
      await this.deps.resources.write(news2Observation({ id, patient, effective: at, result, inputs: [...refs].sort() }));
      ref = `Observation/${id}`;
    }
    await putById(latest, patient, { v: doc.v, last: { scores, ref } });
    if (!result.complete || !result.band) return; // incomplete: no alert, no resolution either
    const stream: EpisodeStream = { key: `${patient}|news2`, subject: { reference: patient }, code: NEWS2_TOTAL };
    const level = BAND_RANK[result.band];
    await this.episodes.apply(stream, { level, severity: result.band, ref, key: `Observation/${ev.id}`, at: ev.ts }, 3);
    if (level > 0) await this.scheduleQuiet(stream.key, ev.ts);
  }

  // ---------------------------------------------------------------- silent devices

  private async deviceInfo(ref: string): Promise<{ interval?: number; patient?: string }> {
    const cached = this.devices.get(ref);
    if (cached && Date.now() - cached.at < DEVICE_CACHE_MS) return cached;
    const d = (await this.deps.resources.read('Device', ref.slice('Device/'.length)))?.resource as Device | undefined;
    const info = { interval: reportingIntervalS(d), patient: d?.patient?.reference, at: Date.now() };
    this.devices.set(ref, info);
    return info;
  }

  private async onDevice(ev: CommittedEvent): Promise<void> {
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
    const existing = await this.deps.db.collection<DeadlineDoc>('alert_deadlines').findOne({ _id: id });
    if (!existing) await this.deadlines.schedule(id, new Date(ev.ts.getTime() + interval * 1000), d?.patient?.reference ? { patient: d.patient.reference } : {});
  }

  private async onDeviceReading(ref: string, patient: string | undefined, at: Date): Promise<void> {
    const info = await this.deviceInfo(ref);
    if (info.interval === undefined) return;
    const owner = patient ?? info.patient;
    await this.deadlines.schedule(`silent|${ref}`, new Date(at.getTime() + info.interval * 1000), owner ? { patient: owner } : {});
    // Data resumed: an open silent episode resolves on the first reading.
    await this.episodes.apply(this.silentStream(ref, owner), { level: 0, severity: 'reporting', ref, at }, 1, 1);
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
      const quietMs = this.deps.config.quietMinutes * 60_000;
      if (s && s.lastAbnormalAt.getTime() + quietMs <= now.getTime()) await this.episodes.resolve(stream, cur.n, now);
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
    const ok = await this.episodes.acknowledge(ep.stream, ep.n, principal.clientId, this.now());
    if (!ok) throw Errors.conflict(`Flag/${flagId} is already resolved`, 'MSG_EPISODE_RESOLVED');
    return (await this.deps.resources.read('Flag', flagId))!.resource as Flag;
  }
}

