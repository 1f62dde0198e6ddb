import { Errors } from '../errors';
import { checkJsonBody, checkJsonDepth } from '../http/limits';
import { parseJson } from '../json';
import type { Limits } from '../config';
import { decodeUtf8 } from '../strict-text';

/**
 * A kick-off's parameters as name/value text pairs in the order given, from either form the IG
 * defines: the query of a GET, or the Parameters resource of a POST. Repeated parameters stay
 * repeated; `patient` values are the references' text.
 */
export interface KickoffParams {
  method: 'GET' | 'POST';
  pairs: [string, string][];
}

export function paramsFromQuery(query: URLSearchParams): KickoffParams {
  return { method: 'GET', pairs: [...query.entries()] };
}

/** The value[x] each kick-off parameter takes in a Parameters body (Bulk Data IG OperationDefinitions). */
const VALUE_TYPE: Record<string, string> = {
  _outputFormat: 'valueString',
  _since: 'valueInstant',
  _until: 'valueInstant',
  _type: 'valueString',
  _elements: 'valueString',
  _typeFilter: 'valueString',
  includeAssociatedData: 'valueString',
  patient: 'valueReference',
};

const JSON_TYPES = new Set(['application/fhir+json', 'application/json']);

export interface BodyRules {
  maxJsonDepth: number;
  limits: Pick<Limits, 'arrayElements' | 'stringLength' | 'resourceElements'>;
}

/** Reads the raw body of a POST kick-off: a FHIR JSON Parameters resource, checked as the edge checks bodies. */
export function paramsFromBody(raw: unknown, contentType: string | undefined, rules: BodyRules): KickoffParams {
  const ct = contentType?.split(';')[0].trim().toLowerCase();
  if (!ct || !JSON_TYPES.has(ct)) {
    throw Errors.unsupportedMediaType(`A POST kick-off takes a Parameters resource as application/fhir+json, not "${ct ?? 'none'}"`, 'MSG_UNSUPPORTED_MEDIA_TYPE');
  }
  if (!Buffer.isBuffer(raw) || raw.length === 0) throw Errors.badRequest('A POST kick-off needs a Parameters resource in its body', 'MSG_BODY_MISSING');
  const text = decodeUtf8(raw);
  checkJsonDepth(text, rules.maxJsonDepth);
  const body = parseJson(text);
  checkJsonBody(body, rules.limits);
  const p = body as { resourceType?: unknown; parameter?: unknown };
  if (!p || typeof p !== 'object' || p.resourceType !== 'Parameters') {
    throw Errors.badRequest('The body of a POST kick-off must be a Parameters resource', 'MSG_BULK_PARAMETERS', ['Parameters']);
  }
  if (p.parameter !== undefined && !Array.isArray(p.parameter)) throw Errors.badRequest('Parameters.parameter must be an array', 'MSG_BULK_PARAMETERS', ['Parameters.parameter']);
  const pairs: [string, string][] = [];
  ((p.parameter ?? []) as unknown[]).forEach((item, i) => pairs.push(pairOf(item, `Parameters.parameter[${i}]`)));
  return { method: 'POST', pairs };
}

function pairOf(item: unknown, at: string): [string, string] {
  const e = (item ?? {}) as Record<string, unknown>;
  if (typeof e.name !== 'string' || e.name === '') throw Errors.badRequest(`${at} has no name`, 'MSG_BULK_PARAMETERS', [at]);
  const name = e.name;
  const values = Object.keys(e).filter((k) => k.startsWith('value'));
  if (e.resource !== undefined || e.part !== undefined || values.length !== 1) {
    throw Errors.badRequest(`${at} (${name}) must carry exactly one value[x], and no resource or part`, 'MSG_BULK_PARAMETERS', [at]);
  }
  const expected = VALUE_TYPE[name];
  if (expected && values[0] !== expected) {
    throw Errors.badRequest(`${at} (${name}) takes ${expected}, not ${values[0]}`, 'MSG_BULK_PARAMETERS', [`${at}.${values[0]}`]);
  }
  const v = e[values[0]];
  if (expected === 'valueReference') {
    const ref = (v as { reference?: unknown } | null)?.reference;
    if (typeof ref !== 'string') throw Errors.badRequest(`${at} (${name}) needs valueReference.reference`, 'MSG_BULK_PARAMETERS', [`${at}.valueReference`]);
    return [name, ref];
  }
  if (typeof v !== 'string') {
    // Unknown parameters are refused by name later; their values only need to be text here.
    if (expected) throw Errors.badRequest(`${at} (${name}) must be a string`, 'MSG_BULK_PARAMETERS', [`${at}.${values[0]}`]);
    return [name, JSON.stringify(v)];
  }
  return [name, v];
}
