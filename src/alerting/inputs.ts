import type { Goal, Patient } from 'fhir/r4';
import type { CommittedEvent } from '../storage';

/** What range resolution and NEWS2 need about a patient. */
export interface PatientInputs {
  patient?: Patient;
  /** Goals about the patient (per-patient targets). */
  goals: Goal[];
}

export interface PatientLoader {
  patient(id: string): Promise<Patient | undefined>;
  goals(patientRef: string): Promise<Goal[]>;
}

/**
 * Patients and their Goals, cached per patient while this instance holds the outbox lease, and
 * invalidated by the outbox commits of those types (the alerting consumer sees every commit
 * while it holds the lease, so nothing changes unseen). Without the lease, or in a new epoch of
 * it, every call reads the database. A change is used from the moment the outbox hands it to the
 * consumer (the moment its subscribers hear of it); a read that raced an invalidation is not kept.
 * (ObservationDefinitions are the subscriptions module's in-memory index, reloaded the same way.)
 */
export class PatientInputsCache {
  private cache = new Map<string, PatientInputs>();
  private epoch?: number;
  /** Bumped at each invalidation: a read started before it is not cached. */
  private generation = 0;

  constructor(
    private readonly load: PatientLoader,
    private readonly leaseEpoch: () => number | undefined,
  ) {}

  async get(patientRef: string): Promise<PatientInputs> {
    const epoch = this.leaseEpoch();
    if (epoch !== undefined && epoch === this.epoch) {
      const hit = this.cache.get(patientRef);
      if (hit) return hit;
    }
    const generation = this.generation;
    const [patient, goals] = await Promise.all([this.load.patient(patientRef.slice('Patient/'.length)), this.load.goals(patientRef)]);
    const inputs = { patient, goals };
    if (epoch !== undefined && epoch === this.epoch && generation === this.generation) this.cache.set(patientRef, inputs);
    return inputs;
  }

  /** The consumer's batch came under lease epoch `epoch`: a new one starts from nothing. */
  takeOver(epoch: number): void {
    if (this.epoch === epoch) return;
    this.generation++;
    this.cache.clear();
    this.epoch = epoch;
  }

  /** A committed version of a Patient or Goal: the patients it concerns are read again. */
  committed(ev: CommittedEvent): void {
    if (ev.type === 'Patient') this.forget(`Patient/${ev.id}`);
    if (ev.type !== 'Goal') return;
    this.generation++;
    const subject = (ev.resource as Goal | undefined)?.subject?.reference;
    if (subject) this.cache.delete(subject);
    // The Goal may have named another patient before (or be deleted): drop whoever holds it.
    for (const [ref, v] of this.cache) if (v.goals.some((g) => g.id === ev.id)) this.cache.delete(ref);
  }

  forget(patientRef: string): void {
    this.generation++;
    this.cache.delete(patientRef);
  }
}
