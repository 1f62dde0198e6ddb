import type { Resource } from 'fhir/r4';
import { applyOperation, getValueByPointer, JsonPatchError, type Operation } from 'fast-json-patch';
import { Errors } from '../../errors';
import { attachDecimals, cloneJson, decimalsOf, setText, textOf } from '../../json';
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
    for (const field of ['path', 'from'] as const) {
      const pointer = (o as { path?: unknown; from?: unknown })[field];
      if (typeof pointer !== 'string') continue;
      const bad = pointer.split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~')).find((t) => FORBIDDEN_KEYS.has(t));
      if (bad) {
        throw Errors.badRequest(`JSON Patch operation ${i}: ${field} "${pointer}" names a key that is not accepted ("${bad}"), at [${i}].${field}`, 'MSG_JSON_FORBIDDEN_KEY', [`[${i}].${field}`]);
      }
    }
  });
}

/** The object and key a JSON pointer names after an operation (`-` is the element just appended). */
function target(doc: unknown, pointer: string): { holder: object; key: string | number } | undefined {
  const at = pointer.lastIndexOf('/');
  if (at < 0) return undefined;
  let holder: unknown;
  try {
    holder = at === 0 ? doc : getValueByPointer(doc, pointer.slice(0, at));
  } catch {
    return undefined; // an unresolvable `from`: the operation itself reports it
  }
  const key = pointer.slice(at + 1).replace(/~1/g, '/').replace(/~0/g, '~');
  if (typeof holder !== 'object' || holder === null) return undefined;
  return { holder, key: Array.isArray(holder) && key === '-' ? holder.length - 1 : key };
}

/**
 * Applies a JSON Patch (RFC 6902) to a copy of the resource, one operation at a time so that
 * decimal texts follow: an added or replaced number takes the patch's text, a moved or copied
 * value keeps its own, untouched elements keep theirs.
 */
export function applyJsonPatch(resource: Resource, ops: Operation[]): unknown {
  checkPointers(ops);
  let doc: unknown = cloneJson(resource);
  try {
    ops.forEach((op, i) => {
      const source = op.op === 'move' || op.op === 'copy' ? target(doc, op.from) : undefined;
      const moved = source ? (source.holder as Record<string, unknown>)[source.key] : undefined;
      const sourceTexts = typeof moved === 'object' ? decimalsOf(moved) : undefined;
      const sourceText = source && typeof moved === 'number' ? textOf(source.holder, source.key) : undefined;
      doc = applyOperation(doc, op, true, true, true, i).newDocument;
      const t = op.op === 'add' || op.op === 'replace' || op.op === 'move' || op.op === 'copy' ? target(doc, op.path) : undefined;
      if (!t) return;
      const value = (t.holder as Record<string, unknown>)[t.key];
      if (op.op === 'add' || op.op === 'replace') setText(t.holder, t.key, textOf(op, 'value'));
      else if (typeof value === 'number') setText(t.holder, t.key, sourceText);
      else attachDecimals(value, sourceTexts);
    });
    return doc;
  } catch (e) {
    if (e instanceof JsonPatchError) {
      if (e.name === 'TEST_OPERATION_FAILED') {
        throw Errors.unprocessable(`JSON Patch test operation ${e.index ?? ''} failed`, 'MSG_PATCH_TEST_FAILED');
      }
      throw Errors.unprocessable(`JSON Patch operation ${e.index ?? ''} cannot be applied: ${e.message.split('\n')[0]}`, 'MSG_PATCH_INVALID');
    }
    // The library walks into primitives with a TypeError (e.g. /valueQuantity/value/x): the client's path, not our bug.
    if (e instanceof TypeError) throw Errors.unprocessable('A JSON Patch operation names a path inside a primitive value', 'MSG_PATCH_INVALID');
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
