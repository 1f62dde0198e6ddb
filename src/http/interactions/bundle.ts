import type { Bundle, BundleEntry, BundleEntryRequest, FhirResource, Resource } from 'fhir/r4';
import { Errors, FhirError } from '../../errors';
import { existingResult, parseVersionTag, resultOf, stripServerMeta, type ResourceStore, type WriteResult } from '../../resources/store';
import type { CurrentDoc, PreparedWrite } from '../../storage';
import { outcomeOf, toFhirError } from '../outcome';
import { locationOf } from '../responses';
import type { Services } from '../services';
import type { FhirRequest, FhirResponse } from '../types';
import type { Limits } from '../../config';
import { breathe, checkDeadline } from '../../deadline';
import { decodeUtf8, pathSegments, strictQuery } from '../../strict-text';
import { checkBundleSize, checkJsonBody, checkJsonDepth } from '../limits';
import { knownType, resourceBody, validId } from './common';

function limitsOf(s: Services): Limits & { maxJsonDepth: number } {
  return { ...s.config.limits, maxJsonDepth: s.config.maxJsonDepth };
}
import { patchFunction } from './patch';
import { attachDecimals, decimalsOf, parseJson } from '../../json';

export type Dispatch = (req: FhirRequest) => Promise<FhirResponse>;

interface ParsedUrl {
  type?: string;
  id?: string;
  query: URLSearchParams;
  segments: string[];
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']);

/** Entry URLs are relative to the base ("Patient/1", "Patient?identifier=x") or absolute on our base. */
function parseEntryUrl(url: string, baseUrl: string, i: number): ParsedUrl {
  let rel = url.startsWith(baseUrl + '/') ? url.slice(baseUrl.length + 1) : url;
  if (/^[a-z]+:/i.test(rel)) throw Errors.badRequest(`Bundle entry ${i}: request.url "${url}" is not on this server`, 'MSG_BUNDLE_URL');
  rel = rel.replace(/^\//, '');
  const q = rel.indexOf('?');
  const path = q >= 0 ? rel.slice(0, q) : rel;
  const query = strictQuery(q >= 0 ? rel.slice(q + 1) : '');
  const segments = pathSegments(path);
  return { type: segments[0], id: segments[1], query, segments };
}

function entryError(i: number, e: FhirError): FhirError {
  return new FhirError(e.status, e.code, e.messageCode, `Bundle entry ${i}: ${e.message}`, e.expression, e.headers);
}

function checkBundle(body: unknown, limits: Limits): Bundle {
  const b = body as Bundle;
  if (typeof b !== 'object' || b === null || b.resourceType !== 'Bundle') {
    throw Errors.badRequest('POST to the base needs a Bundle of type batch or transaction', 'MSG_BUNDLE_TYPE');
  }
  if (b.type !== 'batch' && b.type !== 'transaction') {
    throw Errors.badRequest(`Bundle.type must be batch or transaction, got "${String(b.type)}"`, 'MSG_BUNDLE_TYPE', ['Bundle.type']);
  }
  if (b.entry !== undefined && !Array.isArray(b.entry)) throw Errors.badRequest('Bundle.entry must be an array', 'MSG_BUNDLE_ENTRY', ['Bundle.entry']);
  checkBundleSize(b.entry?.length ?? 0, limits);
  const fullUrls = new Map<string, string | undefined>();
  (b.entry ?? []).forEach((e, i) => {
    if (typeof e !== 'object' || e === null || Array.isArray(e)) {
      throw Errors.badRequest(`Bundle entry ${i} must be an object`, 'MSG_BUNDLE_ENTRY', [`Bundle.entry[${i}]`]);
    }
    const r = e.request as BundleEntryRequest | undefined;
    if (!r || typeof r.method !== 'string' || !METHODS.has(r.method) || typeof r.url !== 'string' || !r.url) {
      throw Errors.badRequest(`Bundle entry ${i} needs request.method and request.url`, 'MSG_BUNDLE_ENTRY', [`Bundle.entry[${i}].request`]);
    }
    if (['POST', 'PUT'].includes(r.method) && (typeof e.resource !== 'object' || e.resource === null)) {
      throw Errors.badRequest(`Bundle entry ${i} (${r.method}) needs a resource`, 'MSG_BUNDLE_ENTRY', [`Bundle.entry[${i}].resource`]);
    }
    checkFullUrl(e, i, fullUrls);
  });
  return b;
}

/** bdl-7 and bdl-8: a fullUrl is an absolute URI, not version-specific, and unique in the Bundle. */
function checkFullUrl(e: BundleEntry, i: number, seen: Map<string, string | undefined>): void {
  const where = [`Bundle.entry[${i}].fullUrl`];
  if (e.fullUrl === undefined) return;
  if (typeof e.fullUrl !== 'string' || !/^[A-Za-z][A-Za-z0-9+.-]*:\S+$/.test(e.fullUrl)) {
    throw Errors.badRequest(`Bundle entry ${i}: fullUrl must be an absolute URI (a URL or urn:uuid:...)`, 'MSG_BUNDLE_FULLURL', where);
  }
  if (/\/_history\//.test(e.fullUrl)) throw Errors.badRequest(`Bundle entry ${i}: fullUrl must not name a version (_history)`, 'MSG_BUNDLE_FULLURL', where);
  const version = e.resource?.meta?.versionId;
  if (seen.has(e.fullUrl) && (seen.get(e.fullUrl) === undefined || seen.get(e.fullUrl) === version)) {
    throw Errors.badRequest(`Bundle entry ${i}: fullUrl ${e.fullUrl} appears in more than one entry`, 'MSG_BUNDLE_FULLURL', where);
  }
  seen.set(e.fullUrl, version);
}

/**
 * The rules of one entry that need its parsed URL, checked before anything is written: writes
 * never name a version, a PUT to [type]/[id] carries a resource of that type with that id, a
 * POST a resource of the URL's type.
 */
function checkEntry(e: BundleEntry, url: ParsedUrl): void {
  const method = e.request!.method;
  if (method !== 'GET' && method !== 'HEAD' && url.segments.includes('_history')) {
    throw Errors.badRequest(`request.url "${e.request!.url}" names a version (_history): ${method} cannot write a past version`, 'MSG_BUNDLE_URL');
  }
  const r = e.resource;
  if ((method === 'PUT' || method === 'POST') && url.type && r && r.resourceType !== url.type) {
    throw Errors.badRequest(`the resource is a ${String(r.resourceType)} but request.url names ${url.type}`, 'MSG_RESOURCE_TYPE_MISMATCH');
  }
  if (method === 'PUT' && url.id !== undefined) {
    if (typeof r?.id !== 'string') throw Errors.badRequest(`PUT ${url.type}/${url.id} needs a resource with id "${url.id}"`, 'MSG_RESOURCE_ID_MISSING');
    if (r.id !== url.id) throw Errors.badRequest(`the resource id "${r.id}" does not match request.url ${url.type}/${url.id}`, 'MSG_RESOURCE_ID_MISMATCH');
  }
}

/** Builds the request an entry stands for, so batch entries run through the normal routes. */
function entryRequest(parent: FhirRequest, e: BundleEntry, url: ParsedUrl, limits: Limits & { maxJsonDepth: number }): FhirRequest {
  const r = e.request!;
  const isPatch = r.method === 'PATCH';
  const isJsonPatch = isPatch && e.resource?.resourceType === 'Binary';
  const body = isJsonPatch ? binaryJson(e.resource!, limits) : e.resource;
  return {
    method: r.method as FhirRequest['method'],
    segments: url.segments,
    query: url.query,
    headers: {
      'if-match': r.ifMatch,
      'if-none-exist': r.ifNoneExist,
      'if-none-match': r.ifNoneMatch,
      'if-modified-since': r.ifModifiedSince,
    },
    body,
    contentType: isJsonPatch ? 'application/json-patch+json' : 'application/fhir+json',
    principal: parent.principal,
    requestId: parent.requestId,
    ip: parent.ip,
    inBundle: true,
  };
}

/** JSON Patch inside a Bundle travels as a Binary with base64 data (spec: http.html#patch). */
function binaryJson(r: Resource, limits: Limits & { maxJsonDepth: number }): unknown {
  const data = (r as { data?: string }).data;
  if (!data) throw Errors.badRequest('PATCH entry Binary has no data', 'MSG_PATCH_INVALID');
  const text = decodeUtf8(Buffer.from(data, 'base64'), 'PATCH entry Binary data');
  checkJsonDepth(text, limits.maxJsonDepth);
  let parsed: unknown;
  try {
    parsed = parseJson(text);
  } catch (e) {
    const why = e instanceof Error ? `: ${e.message}` : '';
    throw Errors.badRequest(`PATCH entry Binary data is not a JSON Patch document${why}`, 'MSG_PATCH_INVALID');
  }
  checkJsonBody(parsed, limits);
  return parsed;
}

function responseEntry(s: Services, res: FhirResponse, preferMinimal: boolean): BundleEntry {
  const out: BundleEntry = {
    response: {
      status: String(res.status),
      etag: res.headers.ETag,
      lastModified: res.headers['Last-Modified'] ? new Date(res.headers['Last-Modified']).toISOString() : undefined,
      location: res.headers.Location,
    },
  };
  if (res.body && !(preferMinimal && res.isWrite)) {
    out.resource = res.body as FhirResource;
    if (res.isWrite && res.body.id) out.fullUrl = `${s.config.baseUrl}/${res.body.resourceType}/${res.body.id}`;
  }
  for (const k of Object.keys(out.response!) as (keyof NonNullable<BundleEntry['response']>)[]) {
    if (out.response![k] === undefined) delete out.response![k];
  }
  return out;
}

/** POST [base] with a batch Bundle: every entry on its own, failures reported per entry. */
async function batch(s: Services, req: FhirRequest, b: Bundle, dispatch: Dispatch, minimal: boolean, patients: Set<string>): Promise<Bundle> {
  const entries: BundleEntry[] = [];
  for (const [i, e] of (b.entry ?? []).entries()) {
    try {
      await breathe();
      const url = parseEntryUrl(e.request!.url, s.config.baseUrl, i);
      checkEntry(e, url);
      if (url.segments.length === 0 && e.request!.method === 'POST') {
        throw Errors.badRequest('Nested batch or transaction Bundles are not allowed', 'MSG_BUNDLE_NESTED');
      }
      const res = await dispatch(entryRequest(req, e, url, limitsOf(s)));
      res.patients?.forEach((p) => patients.add(p));
      entries.push(responseEntry(s, res, minimal));
    } catch (err) {
      const fe = toFhirError(err);
      entries.push({ response: { status: String(fe.status), outcome: outcomeOf(fe) } });
    }
  }
  return { resourceType: 'Bundle', type: 'batch-response', entry: entries };
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

/**
 * POST [base] with a transaction Bundle: every entry is resolved and checked first; then all
 * writes commit together through the journal (all or nothing); reads run last.
 */
async function transaction(
  s: Services,
  req: FhirRequest,
  b: Bundle,
  dispatch: Dispatch,
  minimal: boolean,
  patients: Set<string>,
): Promise<Bundle> {
  const store: ResourceStore = s.store;
  const ctx = { principal: req.principal };
  const policy = req.principal.policy;
  const plan: Planned[] = (b.entry ?? []).map((entry, index) => {
    try {
      const url = parseEntryUrl(entry.request!.url, s.config.baseUrl, index);
      checkEntry(entry, url);
      return { index, entry, method: entry.request!.method, url };
    } catch (e) {
      throw e instanceof FhirError ? entryError(index, e) : e;
    }
  });
  const idMap = new Map<string, string>();

  // 1. Resolve targets: new ids for creates, matches for conditional interactions.
  for (const p of plan) {
    try {
      await breathe();
      const { type, id, query } = p.url;
      if (p.method === 'GET' || p.method === 'HEAD') continue;
      if (!type) throw Errors.badRequest('Nested batch or transaction Bundles are not allowed', 'MSG_BUNDLE_NESTED');
      knownType(type);
      if (p.method === 'POST') {
        policy.assertAllowed('create', type);
        const cond = p.entry.request!.ifNoneExist;
        const match = cond ? await store.matchOne(type, cond.replace(/^.*\?/, ''), ctx, 'If-None-Exist') : undefined;
        if (match) {
          p.existing = existingResult(type, match);
          p.target = { type, id: match._id };
        } else {
          p.target = { type, id: s.store.newId() };
        }
      } else if (id) {
        validId(id);
        p.target = { type, id };
      } else if (p.method === 'PUT' || p.method === 'DELETE' || p.method === 'PATCH') {
        const match = await store.matchOne(type, query.toString(), ctx, `Conditional ${p.method.toLowerCase()}`);
        if (match) p.target = { type, id: match._id };
        else if (p.method === 'PUT') p.target = { type, id: (p.entry.resource?.id as string | undefined) ?? s.store.newId() };
        else if (p.method === 'DELETE') p.nothing = true;
        else throw Errors.notFound(`Conditional patch ${type}?${query} matched nothing`, 'MSG_NO_MATCH');
      }
      if (p.target && p.entry.fullUrl) idMap.set(p.entry.fullUrl, `${p.target.type}/${p.target.id}`);
    } catch (e) {
      throw e instanceof FhirError ? entryError(p.index, e) : e;
    }
  }
  const seen = new Set<string>();
  for (const p of plan) {
    if (!p.target || p.existing) continue;
    const key = `${p.target.type}/${p.target.id}`;
    if (seen.has(key)) {
      throw Errors.badRequest(`Bundle entry ${p.index}: ${key} is the target of more than one entry`, 'MSG_BUNDLE_DUPLICATE');
    }
    seen.add(key);
  }

  // 2. Conditional references, resolved once each.
  const conds = new Set<string>();
  for (const p of plan) if (p.entry.resource) conditionalReferences(p.entry.resource, conds);
  for (const ref of conds) {
    const [type, query] = [ref.slice(0, ref.indexOf('?')), ref.slice(ref.indexOf('?') + 1)];
    knownType(type);
    const matches = await s.store.findMatches(type, query, policy, 2);
    if (matches.length !== 1) {
      throw Errors.preconditionFailed(
        `Conditional reference ${ref} matched ${matches.length === 0 ? 'nothing' : 'more than one resource'}`,
        'MSG_CONDITIONAL_REFERENCE',
      );
    }
    idMap.set(ref, `${type}/${matches[0]._id}`);
  }

  // 3. Prepare every write in the spec's order; any failure aborts with nothing written.
  const now = s.store.now();
  const ordered = [...plan].sort((a, b2) => ORDER[a.method] - ORDER[b2.method] || a.index - b2.index);
  const currents = await readTargets(store, plan);
  for (const p of ordered) {
    if (!p.target || p.existing || p.nothing) continue;
    try {
      await breathe();
      const { type, id } = p.target;
      const body = p.entry.resource ? withTexts(rewriteReferences(p.entry.resource, idMap), p.entry.resource) : undefined;
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
        const apply = r.resourceType === 'Binary' ? patchFunction('application/json-patch+json', binaryJson(r, limitsOf(s))) : patchFunction('application/fhir+json', r);
        p.write = await store.prepare(type, id, apply(stripServerMeta(current.res)), current, 'PATCH', ctx, now);
      } else if (p.method === 'DELETE') {
        policy.assertAllowed('delete', type);
        if (!current || current.deleted) p.nothing = true;
        else p.write = store.prepareDelete(type, current, ctx, now);
      }
    } catch (e) {
      throw e instanceof FhirError ? entryError(p.index, e) : e;
    }
  }

  // 4. Commit all writes at once; past the deadline nothing is written (the commit point is in the journal).
  const writes = plan.map((p) => p.write).filter((w): w is PreparedWrite => Boolean(w));
  checkDeadline();
  await store.commit(writes, { mode: 'atomic' });
  for (const w of writes) w.doc.comp.forEach((c) => patients.add(c));
  for (const p of plan) p.existing?.comp.forEach((c) => patients.add(c));

  // 5. Reads last, then the response in the order of the request.
  const responses = new Map<number, BundleEntry>();
  for (const p of ordered) {
    if (p.method === 'GET' || p.method === 'HEAD') {
      // Reads run after the commit point, so their failures are reported per entry: the
      // writes have happened and must not be reported as failed.
      try {
        const res = await dispatch(entryRequest(req, p.entry, p.url, limitsOf(s)));
        res.patients?.forEach((x) => patients.add(x));
        responses.set(p.index, responseEntry(s, res, minimal));
      } catch (e) {
        const fe = toFhirError(e);
        responses.set(p.index, { response: { status: String(fe.status), outcome: outcomeOf(fe) } });
      }
      continue;
    }
    const result = p.existing ?? (p.write ? resultOf(p.write, 200) : undefined);
    if (!result) {
      responses.set(p.index, { response: { status: '204 No Content' } });
      continue;
    }
    const entry: BundleEntry = {
      fullUrl: `${s.config.baseUrl}/${result.type}/${result.id}`,
      response: {
        status: p.method === 'DELETE' ? '204 No Content' : p.existing ? '200 OK' : p.write?.noop ? '200 OK' : p.write?.current && !p.write.current.deleted ? '200 OK' : '201 Created',
        etag: `W/"${result.vid}"`,
        lastModified: result.ts.toISOString(),
      },
    };
    if (p.method !== 'DELETE') entry.response!.location = locationOf(s.config.baseUrl, result);
    if (result.resource && p.method !== 'DELETE' && !minimal) entry.resource = result.resource as FhirResource;
    responses.set(p.index, entry);
  }
  return { resourceType: 'Bundle', type: 'transaction-response', entry: plan.map((p) => responses.get(p.index)!) };
}

/** POST [base] */
export async function processBundle(
  s: Services,
  req: FhirRequest,
  dispatch: Dispatch,
): Promise<FhirResponse> {
  if (req.inBundle) throw Errors.badRequest('Nested batch or transaction Bundles are not allowed', 'MSG_BUNDLE_NESTED');
  const b = checkBundle(resourceBody(req), s.config.limits);
  const minimal = /return\s*=\s*minimal/i.test(req.headers.prefer ?? '');
  // Every patient whose data an entry touched goes to the audit trail of the Bundle request.
  const patients = new Set<string>();
  const out =
    b.type === 'batch'
      ? await batch(s, req, b, dispatch, minimal, patients)
      : await transaction(s, req, b, dispatch, minimal, patients);
  return { status: 200, body: out, headers: {}, patients: [...patients] };
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
