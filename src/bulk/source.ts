import type { Resource } from 'fhir/r4';
import type { Db, Document, Filter } from 'mongodb';
import type { AccessPolicy } from '../auth/types';
import type { CompiledCriteria } from '../search';
import { toMongo } from '../search/cond';
import { streamCurrent } from '../storage';
import type { ExportSpec } from './types';

/** What the export needs from the search engine: the `_typeFilter` criteria, both ways. */
export interface FilterPort {
  compileCriteria(type: string, query: string): CompiledCriteria;
  criteriaFilter(c: CompiledCriteria): Filter<Document>;
  matches(c: CompiledCriteria, r: Resource): boolean;
}

export interface ExportRow {
  res: Resource;
  comp: string[];
}

/**
 * The current, not deleted versions of one type that an export includes, streamed from the
 * database through one cursor (the driver holds one batch at a time). The database filter narrows
 * (access policy, `_since`, `_typeFilter`, Group members); every row is then checked again in
 * memory with the same policy and criteria the search path uses, so a filter the database can
 * only approximate never widens what is exported.
 */
export async function* exportRows(
  db: Db,
  type: string,
  spec: ExportSpec,
  policy: AccessPolicy,
  filters: FilterPort,
  members?: string[],
  /** Called every few hundred documents read, matching or not (the job's heartbeat). */
  beat: () => Promise<void> = async () => {},
): AsyncGenerator<ExportRow> {
  const criteria = (spec.typeFilters[type] ?? []).map((q) => filters.compileCriteria(type, q));
  const parts: Filter<Document>[] = [{ deleted: false }];
  if (spec.since) parts.push({ ts: { $gte: spec.since } });
  const pc = policy.readCond(type, 'search');
  if (pc) parts.push(toMongo(pc));
  if (criteria.length === 1) parts.push(filters.criteriaFilter(criteria[0]));
  else if (criteria.length > 1) parts.push({ $or: criteria.map((c) => filters.criteriaFilter(c)) });
  if (members) parts.push(type === 'Patient' ? ({ _id: { $in: members } } as unknown as Filter<Document>) : { comp: { $in: members.map((m) => `Patient/${m}`) } });
  // Storage streams the documents with their resources complete (big ones are kept out of line).
  const docs = streamCurrent(db, type, parts.length === 1 ? parts[0] : { $and: parts });
  const memberRefs = members ? new Set(members.map((m) => `Patient/${m}`)) : undefined;
  let seen = 0;
  for await (const doc of docs) {
    if (++seen % 500 === 0) await beat();
    const res = doc.res;
    const comp = doc.comp ?? [];
    if (doc.deleted || !policy.canRead(res, comp, 'search')) continue;
    if (criteria.length > 0 && !criteria.some((c) => filters.matches(c, res))) continue;
    if (!inScope(spec, type, res, comp, memberRefs)) continue;
    yield { res, comp };
  }
}

/** Patient-level exports take only what belongs to some patient; Group exports, to a member. */
function inScope(spec: ExportSpec, type: string, res: Resource, comp: string[], members?: Set<string>): boolean {
  if (spec.level === 'system') return true;
  if (type === 'Patient') return !members || members.has(`Patient/${res.id}`);
  const patients = comp.filter((c) => c.startsWith('Patient/'));
  return members ? patients.some((p) => members.has(p)) : patients.length > 0;
}

/** Patient ids a Group lists as members (`Group.member.entity` references to Patient). */
export function groupMembers(group: Resource): string[] {
  const members = (group as { member?: { entity?: { reference?: string }; inactive?: boolean }[] }).member ?? [];
  const ids = new Set<string>();
  for (const m of members) {
    const ref = m.entity?.reference ?? '';
    const hit = /(?:^|\/)Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(ref);
    if (hit && !m.inactive) ids.add(hit[1]);
  }
  return [...ids];
}
