import type { AuditEvent, AuditEventEntity } from 'fhir/r4';
import type pino from 'pino';
import type { Principal } from './types';

export interface AuditRecord {
  principal: Principal | undefined;
  action: 'C' | 'R' | 'U' | 'D' | 'E';
  /** FHIR restful interaction code: read, vread, history-instance, search-type, create, update, patch, delete, batch, transaction, operation... */
  interaction: string;
  type?: string;
  id?: string;
  /** Ids of the patients whose data the request touched (compartment owners), without "Patient/". */
  patients: string[];
  /** HTTP status of the response. */
  outcome: number;
  ip?: string;
  requestId: string;
  at: Date;
}

const REST_INTERACTIONS = new Set([
  'read',
  'vread',
  'update',
  'patch',
  'delete',
  'history',
  'history-instance',
  'history-type',
  'history-system',
  'create',
  'search',
  'search-type',
  'search-system',
  'capabilities',
  'transaction',
  'batch',
  'operation',
]);

/** AuditEvent.outcome: 0 success, 4 minor failure (client error), 8 serious failure (server error). */
function outcomeCode(status: number): AuditEvent['outcome'] {
  if (status < 400) return '0';
  return status < 500 ? '4' : '8';
}

/**
 * One AuditEvent per request, in the shape of the FHIR RESTful audit pattern: who (client),
 * what (type/id, interaction), which patients, outcome, when, from where. Never resource bodies
 * or search parameters (they can hold patient data).
 */
export function toAuditEvent(r: AuditRecord): AuditEvent {
  const entity: AuditEventEntity[] = [];
  if (r.type) {
    entity.push({
      ...(r.id ? { what: { reference: `${r.type}/${r.id}` } } : {}),
      type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '2', display: 'System Object' },
      role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '4', display: 'Domain Resource' },
      name: r.type,
      detail: [{ type: 'requestId', valueString: r.requestId }],
    });
  } else {
    entity.push({ name: 'request', detail: [{ type: 'requestId', valueString: r.requestId }] });
  }
  for (const p of [...new Set(r.patients)]) {
    entity.push({
      what: { reference: `Patient/${p}` },
      type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '1', display: 'Person' },
      role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '1', display: 'Patient' },
    });
  }
  const who = r.principal?.clientId ?? 'unauthenticated';
  return {
    resourceType: 'AuditEvent',
    type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'RESTful Operation' },
    subtype: [
      REST_INTERACTIONS.has(r.interaction)
        ? { system: 'http://hl7.org/fhir/restful-interaction', code: r.interaction }
        : { system: 'urn:vigil:interaction', code: r.interaction },
    ],
    action: r.action,
    recorded: r.at.toISOString(),
    outcome: outcomeCode(r.outcome),
    outcomeDesc: `HTTP ${r.outcome}`,
    agent: [
      {
        type: {
          coding: [{ system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110153', display: 'Source Role ID' }],
        },
        who: { identifier: { system: r.principal?.issuer ?? 'urn:vigil:client', value: who }, display: who },
        requestor: true,
        ...(r.ip ? { network: { address: r.ip, type: '2' as const } } : {}),
      },
      // SMART App Launch: the person the app acts for.
      ...(r.principal?.fhirUser
        ? [
            {
              type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/extra-security-role-type', code: 'humanuser', display: 'human user' }] },
              who: { reference: r.principal.fhirUser.split('/').slice(-2).join('/') },
              requestor: true,
            },
          ]
        : []),
    ],
    source: {
      observer: { display: 'Vigil FHIR server' },
      type: [{ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4', display: 'Application Server' }],
    },
    entity,
  };
}

/**
 * Audit trail that never slows a response: `record` only queues; a timer (or a full batch) hands
 * batches to `persist`. A failing persist is retried with the next batch; beyond `maxQueue`
 * events the oldest are dropped and the loss is logged (counts only, never contents).
 */
export class AuditTrail {
  private queue: AuditEvent[] = [];
  private running?: Promise<void>;
  private readonly timer: NodeJS.Timeout;
  private dropped = 0;
  /** Events ever queued, and those written or dropped since (the queue holds the difference). */
  private recorded = 0;
  private settled = 0;
  /** Flushes waiting for the events queued before them. */
  private waiters: Array<{ upTo: number; wake: () => void }> = [];

  constructor(
    private readonly deps: {
      persist: (events: AuditEvent[]) => Promise<void>;
      logger: pino.Logger;
      batchSize?: number;
      intervalMs?: number;
      maxQueue?: number;
    },
  ) {
    this.timer = setInterval(() => void this.drain(), deps.intervalMs ?? 1000);
    this.timer.unref();
  }

  record(e: AuditRecord): void {
    this.queue.push(toAuditEvent(e));
    this.recorded++;
    const max = this.deps.maxQueue ?? 50_000;
    if (this.queue.length > max) {
      const over = this.queue.length - max;
      this.dropped += over;
      this.settled += over;
      this.queue.splice(0, over);
    }
    if (this.queue.length >= (this.deps.batchSize ?? 200)) void this.drain();
  }

  /**
   * Writes the events queued before the call (a failed write is tried once more), and no more:
   * waiting for an empty queue instead never ends while requests keep coming faster than a batch
   * is written (a $purge, which flushes first, hung for good beside a device streaming readings).
   */
  async flush(): Promise<void> {
    const upTo = this.recorded;
    for (let attempt = 0; attempt < 2 && this.settled < upTo; attempt++) {
      await new Promise<void>((wake) => {
        this.waiters.push({ upTo, wake });
        void this.drain();
      });
      // Woken by a failed write: that run ends at once (no request ran in between); the retry
      // must start a run of its own.
      if (this.settled < upTo) await this.running;
    }
  }

  /** Stops the timer after a final flush. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  private drain(): Promise<void> {
    this.running ??= this.writeAll().finally(() => (this.running = undefined));
    return this.running;
  }

  private async writeAll(): Promise<void> {
    const size = this.deps.batchSize ?? 200;
    while (this.queue.length > 0) {
      const batch = this.queue.slice(0, size);
      try {
        await this.deps.persist(batch);
        this.queue.splice(0, batch.length);
        this.settled += batch.length;
        this.wake(false);
      } catch (err) {
        this.deps.logger.error({ err: (err as Error).message, pending: this.queue.length }, 'audit events could not be written; will retry');
        this.wake(true);
        return;
      }
    }
    this.wake(false);
    if (this.dropped > 0) {
      this.deps.logger.error({ dropped: this.dropped }, 'audit queue overflowed; oldest audit events were dropped');
      this.dropped = 0;
    }
  }

  /** Wakes the flushes whose events are written (all of them when a write failed: they decide). */
  private wake(all: boolean): void {
    const still = [];
    for (const w of this.waiters) {
      if (all || w.upTo <= this.settled) w.wake();
      else still.push(w);
    }
    this.waiters = still;
  }
}
