import type { Resource } from 'fhir/r4';
import type { Collection, Db } from 'mongodb';
import { historyId, type CurrentDoc, type HistoryDoc } from '../storage';
import { COLLECTIONS } from '../storage/collections';

/** A resource to erase and the newest version known of it. */
export interface TargetKey {
  type: string;
  id: string;
  vid: number;
}

/** One resource to erase: every version of it. */
export interface Target {
  type: string;
  id: string;
  /** History ids of all its versions. */
  versions: string[];
  /** Resource bodies of its versions (to find the index entries they produced). */
  bodies: Resource[];
  /** Version numbers and times of its versions (deletions included: the time buckets list them). */
  times: { vid: number; ts: Date }[];
}

/**
 * Finds everything stored about resources: all versions by key (1..n, probing past the newest
 * known so a version in flight is not missed), and the current document.
 */
export async function collectTarget(db: Db, type: string, id: string, knownVid: number): Promise<Target> {
  const history = db.collection<HistoryDoc>(COLLECTIONS.history);
  const t: Target = { type, id, versions: [], bodies: [], times: [] };
  for (let v = 1; ; v++) {
    const h = await history.findOne({ _id: historyId(type, id, v) });
    if (!h) {
      if (v > knownVid) break;
      continue;
    }
    t.versions.push(h._id);
    t.times.push({ vid: h.vid, ts: h.ts });
    if (h.res) t.bodies.push(h.res);
  }
  const cur = await db.collection<CurrentDoc>(type).findOne({ _id: id });
  if (cur?.res) t.bodies.push(cur.res);
  return t;
}

/**
 * Every resource that ever was in the patient's compartment (any version), and the Patient
 * itself. History is scanned once (the embedded database has no secondary index to use), the
 * current collections once each, so resources moved out of the compartment since are found too.
 */
export async function compartmentKeys(db: Db, served: readonly string[], patientId: string): Promise<TargetKey[]> {
  const ref = `Patient/${patientId}`;
  const latest = new Map<string, number>();
  const note = (type: string, id: string, vid: number) => {
    const k = `${type}/${id}`;
    latest.set(k, Math.max(latest.get(k) ?? 0, vid));
  };
  const history = db.collection<HistoryDoc>(COLLECTIONS.history);
  const hs = history.find({ $or: [{ comp: ref }, { type: 'Patient', id: patientId }] }, { projection: { type: 1, id: 1, vid: 1 } });
  for await (const h of hs) note(h.type, h.id, h.vid);
  for (const type of served) {
    const col = db.collection<CurrentDoc>(type) as Collection<CurrentDoc>;
    const filter = type === 'Patient' ? { _id: patientId } : { comp: ref };
    for await (const c of col.find(filter, { projection: { vid: 1 } })) note(type, c._id, c.vid);
  }
  return [...latest].map(([k, vid]) => ({ type: k.slice(0, k.indexOf('/')), id: k.slice(k.indexOf('/') + 1), vid }));
}
