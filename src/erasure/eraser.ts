import type { AuditEvent, Resource } from 'fhir/r4';
import type { Db } from 'mongodb';
import { createHash } from 'node:crypto';
import type { JobStore } from '../bulk/jobs';
import { Errors } from '../errors';
import type { CurrentDoc } from '../storage';
import { COLLECTIONS } from '../storage/collections';
import type { NotificationRow } from '../subscriptions/collections';
import { collectTarget, compartmentKeys, type Target, type TargetKey } from './targets';

export interface EraserDeps {
  db: Db;
  served: readonly string[];
  /** Removes search candidate entries (the buckets) of erased resources. */
  eraseCandidates(targets: readonly Target[], patients: readonly string[]): Promise<number>;
  jobs: JobStore;
  /** Stores AuditEvents durably (the audit trail's own write path). */
  persistAudit(events: AuditEvent[]): Promise<void>;
  /** Writes out audit records still buffered, so accesses to the patient made so far are found and erased too. */
  flushAudit?(): Promise<void>;
  clock: () => Date;
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
const BATCH = 100;
export const ERASED_PATIENT_SYSTEM = 'urn:vigil:erased-patient-sha256';

/**
 * Erasure: removes every stored trace of resources (all versions, current documents, pending
 * outbox intents, search candidate entries, their lines in export files, and what notification
 * rows say about them, the rows themselves staying as numbered tombstones), then records an
 * AuditEvent that names no erased content (the patient only as a hash of its id).
 */
export class Eraser {
  constructor(private readonly d: EraserDeps) {}

  /** $purge: the patient and everything that ever was in their compartment. */
  async purge(patientId: string, o: { dryRun: boolean; who: string }): Promise<ErasureReport> {
    await this.d.flushAudit?.();
    const keys = await compartmentKeys(this.d.db, this.d.served, patientId);
    const report = await this.erase(keys, [patientId], o.dryRun);
    if (!o.dryRun) await this.audit('purge', report, o.who, { system: ERASED_PATIENT_SYSTEM, value: sha256(patientId) });
    return report;
  }

  /** $expunge: the history of one deleted resource (404 unknown, 409 not deleted). */
  async expunge(type: string, id: string, o: { dryRun: boolean; who: string }): Promise<ErasureReport> {
    const cur = await this.d.db.collection<CurrentDoc>(type).findOne({ _id: id }, { projection: { vid: 1, deleted: 1 } });
    if (!cur) throw Errors.notFound(`${type}/${id} is not known`, 'MSG_NO_EXIST', [type]);
    if (!cur.deleted) throw Errors.conflict(`${type}/${id} is not deleted; delete it before expunging its history`, 'MSG_EXPUNGE_NOT_DELETED');
    const vid = cur.vid;
    const report = await this.erase([{ type, id, vid }], [], o.dryRun);
    if (!o.dryRun) await this.audit('expunge', report, o.who, { system: 'urn:vigil:expunged-resource-sha256', value: sha256(`${type}/${id}`) });
    return report;
  }

  private async erase(keys: TargetKey[], patients: string[], dryRun: boolean): Promise<ErasureReport> {
    const names = new Set(keys.map((k) => `${k.type}/${k.id}`));
    const report: ErasureReport = { dryRun, resources: keys.length, versions: 0, notifications: 0, candidates: 0, exportLines: 0, cancelledExports: 0, list: [...names].slice(0, LIST_MAX) };
    // Unfinished exports could still write what is being erased: they are cancelled (clients start again).
    const open = await this.d.jobs.unfinished();
    report.cancelledExports = open.length;
    if (!dryRun) for (const j of open) await this.d.jobs.remove(j._id);
    for (let i = 0; i < keys.length; i += BATCH) {
      const targets = await Promise.all(keys.slice(i, i + BATCH).map((k) => collectTarget(this.d.db, k.type, k.id, k.vid)));
      report.versions += targets.reduce((n, t) => n + t.versions.length, 0);
      if (!dryRun) await this.removeStored(targets, patients, report);
    }
    report.notifications = await this.tombstoneRows(names, dryRun);
    report.exportLines = await this.scrubExports(names, patients, dryRun);
    return report;
  }

  private async removeStored(targets: Target[], patients: string[], report: ErasureReport): Promise<void> {
    // Storage's own collections, by their names there: erasure is the one writer besides storage.
    const history = this.d.db.collection(COLLECTIONS.history);
    const outbox = this.d.db.collection(COLLECTIONS.outbox);
    for (const t of targets) {
      for (const hid of t.versions) {
        await outbox.deleteOne({ _id: hid as never });
        await history.deleteOne({ _id: hid as never });
      }
      await this.d.db.collection<CurrentDoc>(t.type).deleteOne({ _id: t.id });
    }
    report.candidates += await this.d.eraseCandidates(targets, patients);
  }

  /** Notification rows keep their numbers (gap-free) but lose what they said about erased resources. */
  private async tombstoneRows(names: Set<string>, dryRun: boolean): Promise<number> {
    const rows = this.d.db.collection<NotificationRow>('sub_notifications');
    let n = 0;
    for await (const r of rows.find({ erased: { $ne: true } }, { projection: { type: 1, id: 1 } })) {
      if (!names.has(`${r.type}/${r.id}`)) continue;
      n++;
      if (dryRun) continue;
      const full = await rows.findOne({ _id: r._id });
      if (!full) continue;
      await rows.replaceOne({ _id: r._id }, { sub: full.sub, num: full.num, historyId: '', type: '', id: '', vid: 0, method: 'DELETE', ts: full.ts, createdAt: full.createdAt, erased: true });
    }
    return n;
  }

  /**
   * Drops the lines of erased resources from finished export files (and corrects the counts).
   * Every chunk is read: a resource that left the compartment before it was exported is not
   * tagged with the patient.
   */
  private async scrubExports(names: Set<string>, patients: string[], dryRun: boolean): Promise<number> {
    const chunks = this.d.jobs.chunks;
    let removed = 0;
    const perFile = new Map<string, number>();
    for await (const c of chunks.find({})) {
      const lines = c.data.split('\n').filter(Boolean);
      const kept = lines.filter((l) => {
        const r = JSON.parse(l) as Resource;
        return !names.has(`${r.resourceType}/${r.id}`);
      });
      const gone = lines.length - kept.length;
      if (gone === 0) continue;
      removed += gone;
      perFile.set(`${c.job}\u0000${c.file}`, (perFile.get(`${c.job}\u0000${c.file}`) ?? 0) + gone);
      if (!dryRun) {
        const left = c.patients.filter((p) => !patients.includes(p));
        await chunks.replaceOne({ _id: c._id }, { job: c.job, file: c.file, seq: c.seq, data: kept.map((l) => l + '\n').join(''), lines: kept.length, patients: left });
      }
    }
    if (!dryRun) {
      for (const [key, gone] of perFile) {
        const [jobId, file] = key.split('\u0000');
        const job = await this.d.jobs.get(jobId);
        if (!job) continue;
        const files = job.files.map((f) => (f.n === Number(file) ? { ...f, count: f.count - gone } : f));
        await this.d.jobs.checkpoint(jobId, { files });
      }
    }
    return removed;
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

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}
