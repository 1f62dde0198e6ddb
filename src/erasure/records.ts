import type { Resource } from 'fhir/r4';
import type { Db } from 'mongodb';
import type { JobStore } from '../bulk/jobs';
import { SubscriptionState } from '../storage/state/subscriptions';

/**
 * What other modules recorded about erased resources, through those modules' own handles:
 * notification rows (kept as numbered tombstones, so event numbers stay gap-free) and lines of
 * finished export files.
 */

/** Notification rows keep their numbers (gap-free) but lose what they said about erased resources. */
export function tombstoneRows(db: Db, names: ReadonlySet<string>, dryRun: boolean): Promise<number> {
  return new SubscriptionState(db).tombstoneRows(names, dryRun);
}

/**
 * Drops the lines of erased resources from finished export files (and corrects the counts).
 * Every chunk is read: a resource that left the compartment before it was exported is not
 * tagged with the patient.
 */
export async function scrubExports(jobs: JobStore, names: ReadonlySet<string>, patients: readonly string[], dryRun: boolean): Promise<number> {
  let removed = 0;
  const perFile = new Map<string, number>();
  for await (const c of jobs.allChunks()) {
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
      await jobs.replaceChunk({ _id: c._id, job: c.job, file: c.file, seq: c.seq, data: kept.map((l) => l + '\n').join(''), lines: kept.length, patients: left });
    }
  }
  if (!dryRun) {
    for (const [key, gone] of perFile) {
      const [jobId, file] = key.split('\u0000');
      const job = await jobs.get(jobId);
      if (!job) continue;
      const files = job.files.map((f) => (f.n === Number(file) ? { ...f, count: f.count - gone } : f));
      await jobs.checkpoint(jobId, { files });
    }
  }
  return removed;
}
