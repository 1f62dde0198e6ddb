import { Errors } from '../../errors';
import { typeDef } from '../../resources/registry';
import { parseSummary, shape } from '../../search/shape';
import type { Resource } from 'fhir/r4';
import type { FhirRequest } from '../types';
import { ID_RE } from '../../resources/id';


export function knownType(type: string): string {
  if (!typeDef(type)) throw Errors.notFound(`Resource type "${type}" is not supported by this server`, 'MSG_UNKNOWN_TYPE');
  return type;
}

export function validId(id: string): string {
  if (!ID_RE.test(id)) throw Errors.badRequest(`Invalid resource id "${id}": ids are 1-64 of A-Z a-z 0-9 - .`, 'MSG_ID_INVALID');
  return id;
}

export function validVersion(v: string): number {
  if (!/^[1-9]\d{0,9}$/.test(v)) throw Errors.notFound(`Version "${v}" is not known`, 'MSG_NO_EXIST');
  return Number(v);
}

/** Applies _summary / _elements from the query to a resource being returned (same rules as search). */
export function shaped<T extends Resource>(req: FhirRequest, r: T): T {
  const summary = req.query.get('_summary');
  const elements = req.query.get('_elements');
  return shape(
    r,
    summary === null ? undefined : parseSummary(summary),
    elements === null ? undefined : elements.split(',').map((e) => e.trim()).filter(Boolean),
  ) as T;
}

/** The JSON body of a write, which must be an object. */
export function jsonBody(req: FhirRequest): unknown {
  if (req.body === undefined || req.body === null || (typeof req.body === 'string' && req.body.length === 0)) {
    throw Errors.badRequest('The request has no body; a FHIR resource was expected', 'MSG_BODY_MISSING');
  }
  return req.body;
}

const RESOURCE_MEDIA_TYPES = new Set(['application/fhir+json', 'application/json']);

/**
 * The body of an interaction that takes a resource (create, update, $validate, Bundles): a
 * JSON object sent as FHIR JSON. A JSON Patch or form body sent there is a 415, not a resource.
 */
export function resourceBody(req: FhirRequest): unknown {
  if (req.contentType !== undefined && !RESOURCE_MEDIA_TYPES.has(req.contentType)) {
    throw Errors.unsupportedMediaType(`This interaction takes a FHIR resource as application/fhir+json, not ${req.contentType}`, 'MSG_UNSUPPORTED_MEDIA_TYPE');
  }
  const body = jsonBody(req);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw Errors.badRequest('The body must be a JSON object (a FHIR resource)', 'MSG_BODY_INVALID');
  }
  return body;
}

export function queryOf(req: FhirRequest): string {
  return req.query.toString();
}
