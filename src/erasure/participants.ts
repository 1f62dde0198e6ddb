/**
 * Erasure participants: modules that keep their own state about patients (alerting's episodes
 * and readings, ...) register a function here; a purge calls each after the patient's stored
 * resources are swept and the outbox has passed the erasure's marker, and once more after the
 * second sweep (so state written by work already in flight is caught too). A participant must be
 * idempotent and must not fail for a patient it knows nothing of.
 */
export type EraseFn = (patientId: string) => Promise<unknown>;

export class ErasureParticipants {
  private readonly fns = new Map<string, EraseFn>();

  /** Registers (or replaces) the participant `name`. */
  register(name: string, erase: EraseFn): void {
    this.fns.set(name, erase);
  }

  names(): string[] {
    return [...this.fns.keys()];
  }

  /** Runs every participant for one patient, one after the other (a failure fails the purge: it is retried whole). */
  async erase(patientId: string): Promise<void> {
    for (const fn of this.fns.values()) await fn(patientId);
  }
}
