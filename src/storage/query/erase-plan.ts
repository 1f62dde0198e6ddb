/**
 * What an erasure removes from the engine-side structures (FerretDB's candidate buckets), as plain
 * data. It is worked out where the erasure runs, from the erased versions, and applied by the one
 * process that writes the buckets, the outbox lease holder (as an outbox job, outbox.ts): on
 * FerretDB every update is a read-modify-write of the whole document, so a bucket rewritten by
 * another process beside the holder's appends would lose the appended entries of other patients.
 */
export interface ErasePlan {
  /** Buckets, and the ids of resources (of one type) whose entries go from them. */
  entries: { keys: string[]; ids: string[] }[];
  /** Directories that go with the buckets of their units (and of the `extra` unit names). */
  dirs: { key: string; extra: string[] }[];
  /** (unit, value) pairs that go from directories shared with others (the same values from each of `keys`). */
  dirCodes: { keys: string[]; unit: string; values: string[] }[];
}

export function emptyErasePlan(): ErasePlan {
  return { entries: [], dirs: [], dirCodes: [] };
}

export function isEmptyErasePlan(p: ErasePlan): boolean {
  return p.entries.every((e) => e.keys.length === 0 || e.ids.length === 0) && p.dirs.length === 0 && p.dirCodes.length === 0;
}

/** Adds `more` to `into` (one plan for a sweep over several types). */
export function mergeErasePlan(into: ErasePlan, more: ErasePlan): ErasePlan {
  into.entries.push(...more.entries);
  into.dirs.push(...more.dirs);
  into.dirCodes.push(...more.dirCodes);
  return into;
}
