import type { Bundle, BundleEntry, BundleEntryRequest, FhirResource, Resource } from 'fhir/r4';
import type { Limits } from '../../config';
import { Errors, FhirError } from '../../errors';
import { parseJson } from '../../json';
import { decodeUtf8, pathSegments, strictQuery } from '../../strict-text';
import { checkBundleSize, checkJsonBody, checkJsonDepth } from '../limits';
import type { Services } from '../services';
import type { FhirRequest, FhirResponse } from '../types';

/**
 * A Bundle's entries as batch and transaction both see them: the Bundle's own rules, each
 * entry's URL and rules, the request an entry stands for and the response entry of a result.
 */

export function limitsOf(s: Services): Limits & { maxJsonDepth: number } {
  return { ...s.config.limits, maxJsonDepth: s.config.maxJsonDepth };
}
export type Dispatch = (req: FhirRequest) => Promise<FhirResponse>;

export interface ParsedUrl {
  type?: string;
  id?: string;
  query: URLSearchParams;
  segments: string[];
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']);

/** Entry URLs are relative to the base ("Patient/1", "Patient?identifier=x") or absolute on our base. */
export function parseEntryUrl(url: string, baseUrl: string, i: number): ParsedUrl {
  let rel = url.startsWith(baseUrl + '/') ? url.slice(baseUrl.length + 1) : url;
  if (/^[a-z]+:/i.test(rel)) throw Errors.badRequest(`Bundle entry ${i}: request.url "${url}" is not on this server`, 'MSG_BUNDLE_URL');
  rel = rel.replace(/^\//, '');
  const q = rel.indexOf('?');
  const path = q >= 0 ? rel.slice(0, q) : rel;
  const query = strictQuery(q >= 0 ? rel.slice(q + 1) : '');
  const segments = pathSegments(path);
  return { type: segments[0], id: segments[1], query, segments };
}

export function entryError(i: number, e: FhirError): FhirError {
  return new FhirError(e.status, e.code, e.messageCode, `Bundle entry ${i}: ${e.message}`, e.expression, e.headers);
}

export function checkBundle(body: unknown, limits: Limits): Bundle {
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
export function checkEntry(e: BundleEntry, url: ParsedUrl): void {
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
export function entryRequest(parent: FhirRequest, e: BundleEntry, url: ParsedUrl, limits: Limits & { maxJsonDepth: number }): FhirRequest {
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
export function binaryJson(r: Resource, limits: Limits & { maxJsonDepth: number }): unknown {
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

export function responseEntry(s: Services, res: FhirResponse, preferMinimal: boolean): BundleEntry {
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

