import type { Resource } from 'fhir/r4';
import { applyPatch, JsonPatchError, type Operation } from 'fast-json-patch';
import { Errors } from '../../errors';
import { applyFhirPathPatch, isFhirPathPatch } from '../../resources/fhirpath-patch';
import { parseVersionTag } from '../../resources/store';
import { writeResponse } from '../responses';
import type { Services } from '../services';
import type { FhirRequest, FhirResponse } from '../types';
import { FORBIDDEN_KEYS } from '../limits';
import { jsonBody, knownType, validId } from './common';

const OPS = new Set(['add', 'remove', 'replace', 'move', 'copy', 'test']);

function parseJsonPatch(body: unknown): Operation[] {
  if (!Array.isArray(body)) throw Errors.badRequest('A JSON Patch document must be an array of operations', 'MSG_PATCH_INVALID');
  body.forEach((op: unknown, i) => {
    const o = op as Record<string, unknown>;
    if (typeof o !== 'object' || o === null || typeof o.op !== 'string' || !OPS.has(o.op) || typeof o.path !== 'string') {
      throw Errors.badRequest(`JSON Patch operation ${i} is malformed: it needs "op" (add, remove, replace, move, copy, test) and "path"`, 'MSG_PATCH_INVALID');
    }
    if (o.from !== undefined && typeof o.from !== 'string') {
      throw Errors.badRequest(`JSON Patch operation ${i}: "from" must be a JSON Pointer string`, 'MSG_PATCH_INVALID');
    }
    if (/^\/(id|resourceType|meta\/(versionId|lastUpdated))(\/|$)/.test(o.path)) {
      throw Errors.unprocessable(`JSON Patch operation ${i} may not change ${o.path}`, 'MSG_PATCH_INVALID');
    }
  });
  checkPointers(body as Operation[]);
  return body as Operation[];
}

/**
 * No pointer may step through `__proto__`, `constructor` or `prototype`: refused here for every
 * caller, whatever the body parser let through (the patch library would throw a TypeError).
 */
function checkPointers(ops: Operation[]): void {
  ops.forEach((o, i) => {
    for (const pointer of [o.path, (o as { from?: unknown }).from]) {
      if (typeof pointer !== 'string') continue;
      const bad = pointer.split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~')).find((t) => FORBIDDEN_KEYS.has(t));
      if (bad) throw Errors.badRequest(`JSON Patch operation ${i}: the path may not contain "${bad}"`, 'MSG_PATCH_FORBIDDEN_PATH', [`[${i}].path`]);
    }
  });
}

/** Applies a JSON Patch (RFC 6902) to a copy of the resource. */
export function applyJsonPatch(resource: Resource, ops: Operation[]): unknown {
  checkPointers(ops);
  try {
    return applyPatch(structuredClone(resource), ops, true, false).newDocument;
  } catch (e) {
    if (e instanceof JsonPatchError) {
      if (e.name === 'TEST_OPERATION_FAILED') {
        throw Errors.unprocessable(`JSON Patch test operation ${e.index ?? ''} failed`, 'MSG_PATCH_TEST_FAILED');
      }
      throw Errors.unprocessable(`JSON Patch operation ${e.index ?? ''} cannot be applied: ${e.message.split('\n')[0]}`, 'MSG_PATCH_INVALID');
    }
    throw e;
  }
}

/**
 * The patch a PATCH body asks for: JSON Patch (application/json-patch+json) or FHIRPath Patch
 * (a Parameters resource as application/fhir+json).
 */
export function patchFunction(contentType: string | undefined, body: unknown): (current: Resource) => unknown {
  if (contentType === 'application/json-patch+json') {
    const ops = parseJsonPatch(body);
    return (cur) => applyJsonPatch(cur, ops);
  }
  if ((contentType === 'application/fhir+json' || contentType === 'application/json') && isFhirPathPatch(body)) {
    return (cur) => applyFhirPathPatch(cur, body);
  }
  throw Errors.unsupportedMediaType(
    `PATCH needs application/json-patch+json (JSON Patch) or application/fhir+json with a Parameters resource (FHIRPath Patch), got ${contentType ?? 'none'}`,
    'MSG_UNSUPPORTED_MEDIA_TYPE',
  );
}

/** PATCH [type]/[id] */
export async function patch(s: Services, req: FhirRequest, type: string, id: string): Promise<FhirResponse> {
  knownType(type);
  validId(id);
  req.principal.policy.assertAllowed('patch', type);
  const apply = patchFunction(req.contentType, jsonBody(req));
  const r = await s.store.patch(type, id, apply, { principal: req.principal }, parseVersionTag(req.headers['if-match']));
  return writeResponse(s.config.baseUrl, r);
}
