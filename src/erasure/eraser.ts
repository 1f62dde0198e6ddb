import type { AuditEvent } from 'fhir/r4';
import type { Db } from 'mongodb';
import { createHash } from 'node:crypto';
import type { JobStore } from '../bulk/jobs';
import { Errors } from '../errors';
import type { EraseKey, StorageErasure } from '../storage';
import type { ErasureParticipants } from './participants';
import { scrubExports, tombstoneRows } from './records';

export interface EraserDeps {
  /** Storage's erasure face (`repository.erasure`): markers, waits and the sweep. */
  storage: StorageErasure;
  /** The database of the modules' own records (notification rows), reached through their handles. */
  db: Db;
  served: readonly string[];
  participants: ErasureParticipants;
  jobs: JobStore;
  /** Stores AuditEvents durably (the audit trail's own write path). */
  persistAudit(events: AuditEvent[]): Promise<void>;
  /** Writes out audit records still buffered, so accesses to the patient made so far are found and erased too. */
  flushAudit?(): Promise<void>;
  clock: () => Date;
  /** Longest wait for writers in flight, then for the outbox, at a marker (default 15 s each). */
  waitMs?: number;
}

/** What an erasure removed (or, for a dry run, would remove). */
export interface ErasureReport {
  dryRun: boolean;
  resources: number;
  versions: number;
  notifications: number;
  candidates: number;
  exportLines: number;
  cancelledExports: number;
  /** `Type/id` of the resources, at most LIST_MAX of them. */
  list: string[];
}

const LIST_MAX = 1000;
const WAIT_MS = 15_000;
export const ERASED_PATIENT_SYSTEM = 'urn:vigil:erased-patient-sha256';

/**
 * Erasure: removes every stored trace of resources (all versions, current documents, bodies,
 * pending outbox intents, search candidate entries, their lines in export files, and what
 * notification rows say about them, the rows themselves staying as numbered tombstones), then
 * records an AuditEvent that names no erased content (the patient only as a hash of its id).
 *
 * A purge first marks the compartment erased (storage then refuses every commit into it, derived
 * ones from alerting included), waits for the writes that started before the marker, sweeps,
 * waits until the outbox has passed the marker (consumers may still have been working on the
 * patient's events), lets the participants erase their own state, and sweeps again.
 */
export class Eraser {
  constructor(private readonly d: EraserDeps) {}

  /** Where modules with their own patient state register (`participants.register(name, fn)`). */
  get participants(): ErasureParticipants {
    return this.d.participants;
  }

  private get waitMs(): number {
    return this.d.waitMs ?? WAIT_MS;
  }

  /** $purge: the patient and everything that ever was in their compartment. */
  async purge(patientId: string, o: { dryRun: boolean; who: string }): Promise<ErasureReport> {
    await this.d.flushAudit?.();
    const st = this.d.storage;
    if (o.dryRun) return this.dryRun(await st.compartmentKeys(patientId, this.d.served), [patientId]);
    await st.mark(patientId);
    await st.settleWriters(this.waitMs);
    const cancelled = await this.cancelExports();
    const first = await st.compartmentKeys(patientId, this.d.served);
    const a = await st.sweep(first, [patientId]);
    await st.outboxPassed(this.waitMs);
    await this.d.participants.erase(patientId);
    const second = await st.compartmentKeys(patientId, this.d.served);
    const b = await st.sweep(second, [patientId]);
    await this.d.participants.erase(patientId);
    const report = await this.finish([...first, ...second], [patientId], cancelled);
    report.versions = a.versions + b.versions;
    report.candidates = a.candidates + b.candidates;
    await this.audit('purge', report, o.who, { system: ERASED_PATIENT_SYSTEM, value: sha256(patientId) });
    return report;
  }

  /** $expunge: the history of one deleted resource (404 unknown, 409 not deleted). */
  async expunge(type: string, id: string, o: { dryRun: boolean; who: string }): Promise<ErasureReport> {
    const cur = await this.d.storage.currentState(type, id);
    if (!cur) throw Errors.notFound(`${type}/${id} is not known`, 'MSG_NO_EXIST', [type]);
    if (!cur.deleted) throw Errors.conflict(`${type}/${id} is not deleted; delete it before expunging its history`, 'MSG_EXPUNGE_NOT_DELETED');
    const keys = [{ type, id, vid: cur.vid }];
    if (o.dryRun) return this.dryRun(keys, []);
    const cancelled = await this.cancelExports();
    const counts = await this.d.storage.sweep(keys, []);
    const report = await this.finish(keys, [], cancelled);
    report.versions = counts.versions;
    report.candidates = counts.candidates;
    await this.audit('expunge', report, o.who, { system: 'urn:vigil:expunged-resource-sha256', value: sha256(`${type}/${id}`) });
    return report;
  }

  private async dryRun(keys: EraseKey[], patients: string[]): Promise<ErasureReport> {
    const names = namesOf(keys);
    return {
      dryRun: true,
      resources: names.size,
      versions: await this.d.storage.countVersions(keys),
      notifications: await tombstoneRows(this.d.db, names, true),
      candidates: 0,
      exportLines: await scrubExports(this.d.jobs, names, patients, true),
      cancelledExports: (await this.d.jobs.unfinished()).length,
      list: [...names].slice(0, LIST_MAX),
    };
  }

  /** Unfinished exports could still write what is being erased: they are cancelled (clients start again). */
  private async cancelExports(): Promise<number> {
    const open = await this.d.jobs.unfinished();
    for (const j of open) await this.d.jobs.remove(j._id);
    return open.length;
  }

  /** The records other modules keep about the erased resources, and the report. */
  private async finish(keys: EraseKey[], patients: string[], cancelledExports: number): Promise<ErasureReport> {
    const names = namesOf(keys);
    return {
      dryRun: false,
      resources: names.size,
      versions: 0,
      notifications: await tombstoneRows(this.d.db, names, false),
      candidates: 0,
      exportLines: await scrubExports(this.d.jobs, names, patients, false),
      cancelledExports,
      list: [...names].slice(0, LIST_MAX),
    };
  }

  private async audit(op: 'purge' | 'expunge', r: ErasureReport, who: string, what: { system: string; value: string }): Promise<void> {
    const event: AuditEvent = {
      resourceType: 'AuditEvent',
      type: { system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110110', display: 'Patient Record' },
      subtype: [{ system: 'urn:vigil:operations', code: op, display: op === 'purge' ? 'Patient erasure' : 'Resource history erasure' }],
      action: 'D',
      recorded: this.d.clock().toISOString(),
      outcome: '0',
      agent: [{ who: { display: who }, requestor: true }],
      source: { observer: { display: 'Vigil' } },
      entity: [
        {
          what: { identifier: what },
          detail: [
            { type: 'resources', valueString: String(r.resources) },
            { type: 'versions', valueString: String(r.versions) },
            { type: 'notifications', valueString: String(r.notifications) },
            { type: 'export-lines', valueString: String(r.exportLines) },
          ],
        },
      ],
    };
    await this.d.persistAudit([event]);
  }
}

function namesOf(keys: readonly EraseKey[]): Set<string> {
  return new Set(keys.map((k) => `${k.type}/${k.id}`));
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}
