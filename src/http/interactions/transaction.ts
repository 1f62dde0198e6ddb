import type { Bundle, BundleEntry, FhirResource, Resource } from 'fhir/r4';
import type { AccessPolicy } from '../../auth/types';
import { breathe, checkDeadline } from '../../deadline';
import { Errors, FhirError } from '../../errors';
import { attachDecimals, decimalsOf } from '../../json';
import { existingResult, parseVersionTag, resultOf, stripServerMeta, type ResourceStore, type WriteCtx, type WriteResult } from '../../resources/store';
import type { CurrentDoc, PreparedWrite } from '../../storage';
import { outcomeOf, toFhirError } from '../outcome';
import { locationOf } from '../responses';
import type { Services } from '../services';
import type { FhirRequest } from '../types';
import { binaryJson, checkEntry, entryError, entryRequest, limitsOf, parseEntryUrl, responseEntry, type Dispatch, type ParsedUrl } from './bundle-entries';
import { knownType, validId } from './common';
import { patchFunction } from './patch';

const ORDER: Record<string, number> = { DELETE: 0, POST: 1, PUT: 2, PATCH: 2, GET: 3, HEAD: 3 };

interface Planned {
  index: number;
  method: string;
  url: ParsedUrl;
  entry: BundleEntry;
  target?: { type: string; id: string };
  /** Set when a conditional create found its match: the entry writes nothing. */
  existing?: WriteResult;
  write?: PreparedWrite;
  /** Conditional delete that matched nothing. */
  nothing?: boolean;
}

/** What every phase of one transaction works with. */
interface Tx {
  s: Services;
  req: FhirRequest;
  store: ResourceStore;
  ctx: WriteCtx;
  policy: AccessPolicy;
  /** fullUrls and conditional references, to the `Type/id` they stand for. */
  idMap: Map<string, string>;
}

/** Runs `fn` for entry `index`, naming the entry in any FhirError it raises. */
async function inEntry<T>(index: number, fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw e instanceof FhirError ? entryError(index, e) : e;
  }
}

/**
 * POST [base] with a transaction Bundle: every entry is resolved and checked first; then all
 * writes commit together through the journal (all or nothing); reads run last.
 */
export async function transaction(s: Services, req: FhirRequest, b: Bundle, dispatch: Dispatch, minimal: boolean, patients: Set<string>): Promise<Bundle> {
  const tx: Tx = { s, req, store: s.store, ctx: { principal: req.principal }, policy: req.principal.policy, idMap: new Map() };
  const plan: Planned[] = [];
  for (const [index, entry] of (b.entry ?? []).entries()) {
    plan.push(
      await inEntry(index, () => {
        const url = parseEntryUrl(entry.request!.url, s.config.baseUrl, index);
        checkEntry(entry, url);
        return { index, entry, method: entry.request!.method, url };
      }),
    );
  }
  // 1. Resolve targets: new ids for creates, matches for conditional interactions.
  for (const p of plan) await inEntry(p.index, () => resolveTarget(tx, p));
  checkDistinctTargets(plan);
  // 2. Conditional references, resolved once each.
  await resolveConditionalReferences(tx, plan);
  // 3. Prepare every write in the spec's order; any failure aborts with nothing written.
  const now = s.store.now();
  const ordered = [...plan].sort((a, b2) => ORDER[a.method] - ORDER[b2.method] || a.index - b2.index);
  const currents = await readTargets(tx.store, plan);
  for (const p of ordered) {
    if (!p.target || p.existing || p.nothing) continue;
    await inEntry(p.index, () => prepareWrite(tx, p, currents, now));
  }
  // 4. Commit all writes at once; past the deadline nothing is written (the commit point is in the journal).
  const writes = plan.map((p) => p.write).filter((w): w is PreparedWrite => Boolean(w));
  checkDeadline();
  await tx.store.commit(writes, { mode: 'atomic' });
  for (const w of writes) w.doc.comp.forEach((c) => patients.add(c));
  for (const p of plan) p.existing?.comp.forEach((c) => patients.add(c));
  // 5. Reads last, then the response in the order of the request.
  const responses = new Map<number, BundleEntry>();
  for (const p of ordered) {
    responses.set(p.index, p.method === 'GET' || p.method === 'HEAD' ? await readEntry(tx, p, dispatch, minimal, patients) : writeEntry(s, p, minimal));
  }
  return { resourceType: 'Bundle', type: 'transaction-response', entry: plan.map((p) => responses.get(p.index)!) };
}

async function resolveTarget(tx: Tx, p: Planned): Promise<void> {
  await breathe();
  const { type, id, query } = p.url;
  if (p.method === 'GET' || p.method === 'HEAD') return;
  if (!type) throw Errors.badRequest('Nested batch or transaction Bundles are not allowed', 'MSG_BUNDLE_NESTED');
  knownType(type);
  if (p.method === 'POST') {
    tx.policy.assertAllowed('create', type);
    const cond = p.entry.request!.ifNoneExist;
    const match = cond ? await tx.store.matchOne(type, cond.replace(/^.*\?/, ''), tx.ctx, 'If-None-Exist') : undefined;
    if (match) {
      p.existing = existingResult(type, match);
      p.target = { type, id: match._id };
    } else {
      p.target = { type, id: tx.store.newId() };
    }
  } else if (id) {
    validId(id);
    p.target = { type, id };
  } else if (p.method === 'PUT' || p.method === 'DELETE' || p.method === 'PATCH') {
    const match = await tx.store.matchOne(type, query.toString(), tx.ctx, `Conditional ${p.method.toLowerCase()}`);
    if (match) p.target = { type, id: match._id };
    else if (p.method === 'PUT') p.target = { type, id: (p.entry.resource?.id as string | undefined) ?? tx.store.newId() };
    else if (p.method === 'DELETE') p.nothing = true;
    else throw Errors.notFound(`Conditional patch ${type}?${query} matched nothing`, 'MSG_NO_MATCH');
  }
  if (p.target && p.entry.fullUrl) tx.idMap.set(p.entry.fullUrl, `${p.target.type}/${p.target.id}`);
}

function checkDistinctTargets(plan: readonly Planned[]): void {
  const seen = new Set<string>();
  for (const p of plan) {
    if (!p.target || p.existing) continue;
    const key = `${p.target.type}/${p.target.id}`;
    if (seen.has(key)) {
      throw Errors.badRequest(`Bundle entry ${p.index}: ${key} is the target of more than one entry`, 'MSG_BUNDLE_DUPLICATE');
    }
    seen.add(key);
  }
}

async function resolveConditionalReferences(tx: Tx, plan: readonly Planned[]): Promise<void> {
  const conds = new Set<string>();
  for (const p of plan) if (p.entry.resource) conditionalReferences(p.entry.resource, conds);
  for (const ref of conds) {
    const [type, query] = [ref.slice(0, ref.indexOf('?')), ref.slice(ref.indexOf('?') + 1)];
    knownType(type);
    const matches = await tx.store.findMatches(type, query, tx.policy, 2);
    if (matches.length !== 1) {
      throw Errors.preconditionFailed(
        `Conditional reference ${ref} matched ${matches.length === 0 ? 'nothing' : 'more than one resource'}`,
        'MSG_CONDITIONAL_REFERENCE',
      );
    }
    tx.idMap.set(ref, `${type}/${matches[0]._id}`);
  }
}

/** Checks one write entry against its target's current version and prepares it (nothing is written). */
async function prepareWrite(tx: Tx, p: Planned, currents: Map<string, CurrentDoc>, now: Date): Promise<void> {
  await breathe();
  const { store, ctx, policy } = tx;
  const { type, id } = p.target!;
  const body = p.entry.resource ? withTexts(rewriteReferences(p.entry.resource, tx.idMap), p.entry.resource) : undefined;
  const ifMatch = parseVersionTag(p.entry.request!.ifMatch);
  // A create's id was just generated: nothing can exist under it, so no lookup is needed.
  const current = p.method === 'POST' ? null : (currents.get(`${type}/${id}`) ?? null);
  if (current && !current.deleted && !policy.canRead(current.res, current.comp) && p.method !== 'POST') {
    throw Errors.notFound(`${type}/${id} is not known`, 'MSG_NO_EXIST');
  }
  if (ifMatch !== undefined && (!current || current.deleted || current.vid !== ifMatch)) {
    throw Errors.preconditionFailed(`If-Match W/"${ifMatch}" does not match ${type}/${id}`, 'MSG_VERSION_AWARE_CONFLICT');
  }
  if (p.method === 'POST') {
    p.write = await store.prepare(type, id, body, null, 'POST', ctx, now);
  } else if (p.method === 'PUT') {
    policy.assertAllowed('update', type);
    p.write = await store.prepare(type, id, { ...(body as object), id: (body as Resource).id ?? id }, current, 'PUT', ctx, now);
  } else if (p.method === 'PATCH') {
    policy.assertAllowed('patch', type);
    if (!current || current.deleted) throw Errors.notFound(`${type}/${id} is not known`, 'MSG_NO_EXIST');
    const r = p.entry.resource;
    if (!r) throw Errors.badRequest('PATCH entries need a Binary (JSON Patch) or Parameters (FHIRPath Patch) resource', 'MSG_PATCH_INVALID');
    const apply = r.resourceType === 'Binary' ? patchFunction('application/json-patch+json', binaryJson(r, limitsOf(tx.s))) : patchFunction('application/fhir+json', r);
    p.write = await store.prepare(type, id, apply(stripServerMeta(current.res)), current, 'PATCH', ctx, now);
  } else if (p.method === 'DELETE') {
    policy.assertAllowed('delete', type);
    if (!current || current.deleted) p.nothing = true;
    else p.write = store.prepareDelete(type, current, ctx, now);
  }
}

/**
 * Reads run after the commit point, so their failures are reported per entry: the writes have
 * happened and must not be reported as failed.
 */
async function readEntry(tx: Tx, p: Planned, dispatch: Dispatch, minimal: boolean, patients: Set<string>): Promise<BundleEntry> {
  try {
    const res = await dispatch(entryRequest(tx.req, p.entry, p.url, limitsOf(tx.s)));
    res.patients?.forEach((x) => patients.add(x));
    return responseEntry(tx.s, res, minimal);
  } catch (e) {
    const fe = toFhirError(e);
    return { response: { status: String(fe.status), outcome: outcomeOf(fe) } };
  }
}

/** The response entry of a committed (or no-op) write. */
function writeEntry(s: Services, p: Planned, minimal: boolean): BundleEntry {
  const result = p.existing ?? (p.write ? resultOf(p.write, 200) : undefined);
  if (!result) return { response: { status: '204 No Content' } };
  const created = !p.existing && !p.write?.noop && !(p.write?.current && !p.write.current.deleted);
  const entry: BundleEntry = {
    fullUrl: `${s.config.baseUrl}/${result.type}/${result.id}`,
    response: {
      status: p.method === 'DELETE' ? '204 No Content' : created ? '201 Created' : '200 OK',
      etag: `W/"${result.vid}"`,
      lastModified: result.ts.toISOString(),
    },
  };
  if (p.method !== 'DELETE') entry.response!.location = locationOf(s.config.baseUrl, result);
  if (result.resource && p.method !== 'DELETE' && !minimal) entry.resource = result.resource as FhirResource;
  return entry;
}

/** Replaces every `reference` that names a fullUrl of the Bundle with the id assigned to it. */
function rewriteReferences(value: unknown, map: Map<string, string>): unknown {
  if (Array.isArray(value)) return value.map((v) => rewriteReferences(v, map));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = k === 'reference' && typeof v === 'string' && map.has(v) ? map.get(v) : rewriteReferences(v, map);
    }
    return out;
  }
  return value;
}

/** The copy keeps the decimal texts of the original (only reference strings changed). */
function withTexts(copy: unknown, original: unknown): unknown {
  attachDecimals(copy, decimalsOf(original));
  return copy;
}

/** Collects conditional references ("Patient?identifier=...") so they can be resolved once. */
function conditionalReferences(value: unknown, out: Set<string>): void {
  if (Array.isArray(value)) value.forEach((v) => conditionalReferences(v, out));
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === 'reference' && typeof v === 'string' && /^[A-Z][A-Za-z]+\?/.test(v)) out.add(v);
      else conditionalReferences(v, out);
    }
  }
}

/**
 * The current documents of every entry that updates, patches or deletes, read at once (one
 * concurrent wave per type instead of one sequential read per entry). Targets are distinct
 * (checked above) and nothing is written before the commit, so this equals reading each in turn.
 */
async function readTargets(store: ResourceStore, plan: readonly Planned[]): Promise<Map<string, CurrentDoc>> {
  const byType = new Map<string, string[]>();
  for (const p of plan) {
    if (!p.target || p.existing || p.nothing || p.method === 'POST') continue;
    byType.set(p.target.type, [...(byType.get(p.target.type) ?? []), p.target.id]);
  }
  const out = new Map<string, CurrentDoc>();
  await Promise.all(
    [...byType].map(async ([type, ids]) => {
      for (const [id, doc] of await store.repository.readMany(type, ids)) out.set(`${type}/${id}`, doc);
    }),
  );
  return out;
}
