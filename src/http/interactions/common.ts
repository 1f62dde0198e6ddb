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

export function queryOf(req: FhirRequest): string {
  return req.query.toString();
}
