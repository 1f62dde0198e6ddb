import type { Parameters, ParametersParameter, Resource } from 'fhir/r4';
import fhirpath from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4';
import { Errors } from '../errors';
import { cloneJson, setText, textOf } from '../json';

/**
 * FHIRPath Patch (http://hl7.org/fhir/R4/fhirpatch.html): a Parameters resource of `operation`
 * parts (add, insert, delete, replace, move) whose `path` is a FHIRPath expression. The path
 * is evaluated with the fhirpath engine in its node mode, which tells for every match the
 * object holding it, the property name and the array index, so edits land exactly there.
 */

interface Node {
  data: unknown;
  path: string;
  propName?: string;
  index?: number | null;
  parentResNode?: Node | null;
}

type Json = Record<string, unknown>;

const repeating = (r4 as unknown as { path2Repeating: Record<string, boolean> }).path2Repeating;

/** Names that could reach an object's prototype if assigned: refused in paths, names and parts. */
const FORBIDDEN = new Set(['__proto__', 'constructor', 'prototype']);
const FORBIDDEN_IN_PATH = /(^|[^A-Za-z0-9_])(__proto__|constructor|prototype)([^A-Za-z0-9_]|$)/;

function forbidden(name: string, i: number): never {
  throw Errors.badRequest(`FHIRPath Patch operation ${i}: "${name}" is not an element name`, 'MSG_PATCH_FORBIDDEN_PATH');
}

function evaluate(target: Resource, path: string, i: number): Node[] {
  if (FORBIDDEN_IN_PATH.test(path)) forbidden(path, i);
  try {
    return fhirpath.evaluate(target, path, undefined, r4, { resolveInternalTypes: false }) as unknown as Node[];
  } catch (e) {
    throw Errors.badRequest(`FHIRPath Patch operation ${i}: invalid path "${path}": ${(e as Error).message}`, 'MSG_PATCH_INVALID');
  }
}

function part(op: ParametersParameter, name: string): ParametersParameter | undefined {
  return op.part?.find((p) => p.name === name);
}

function stringPart(op: ParametersParameter, name: string, i: number, required = true): string | undefined {
  const p = part(op, name);
  const v = p?.valueString ?? p?.valueCode ?? p?.valueUri;
  if (required && typeof v !== 'string') {
    throw Errors.badRequest(`FHIRPath Patch operation ${i} needs "${name}"`, 'MSG_PATCH_INVALID');
  }
  return v;
}

function intPart(op: ParametersParameter, name: string, i: number): number {
  const v = part(op, name)?.valueInteger;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw Errors.badRequest(`FHIRPath Patch operation ${i} needs a non-negative integer "${name}"`, 'MSG_PATCH_INVALID');
  }
  return v;
}

const FORBIDDEN_NAMES = new Set(['__proto__', 'constructor', 'prototype']);

/** An element name from the patch; names that could reach an object prototype are refused. */
function elementName(name: string, i: number): string {
  if (FORBIDDEN_NAMES.has(name)) throw Errors.badRequest(`FHIRPath Patch operation ${i}: the name "${name}" is not accepted, at Parameters.parameter[${i}]`, 'MSG_JSON_FORBIDDEN_KEY', [`Parameters.parameter[${i}]`]);
  return name;
}

/** The sender's text of a primitive value[x] (a valueDecimal of 1.50 stays 1.50), if it has one. */
function valueText(p: ParametersParameter | undefined): string | undefined {
  const key = p && Object.keys(p).find((k) => k.startsWith('value') && k.length > 5);
  return key ? textOf(p, key) : undefined;
}

/** The value of a `value` part: a value[x], or nested parts for an anonymous complex type. */
function valueOf(p: ParametersParameter | undefined, i: number): unknown {
  if (!p) throw Errors.badRequest(`FHIRPath Patch operation ${i} needs a "value"`, 'MSG_PATCH_INVALID');
  const key = Object.keys(p).find((k) => k.startsWith('value') && k.length > 5);
  if (key) return cloneJson((p as unknown as Json)[key]);
  if (p.resource) return cloneJson(p.resource);
  if (p.part?.length) {
    const out: Json = {};
    for (const sub of p.part) {
      if (typeof sub.name !== 'string' || FORBIDDEN.has(sub.name)) forbidden(String(sub.name), i);
      const v = valueOf(sub, i);
      const name = elementName(sub.name, i);
      const existing = out[name];
      out[name] = existing === undefined ? v : Array.isArray(existing) ? [...existing, v] : [existing, v];
      if (existing === undefined) setText(out, name, valueText(sub));
    }
    return out;
  }
  throw Errors.badRequest(`FHIRPath Patch operation ${i}: "value" has no value`, 'MSG_PATCH_INVALID');
}

function single(nodes: Node[], i: number, what: string): Node {
  if (nodes.length !== 1) {
    throw Errors.unprocessable(`FHIRPath Patch operation ${i} (${what}): the path matched ${nodes.length} elements, expected exactly one`, 'MSG_PATCH_INVALID');
  }
  return nodes[0];
}

/** The object holding a matched element, the property, and the index when it sits in a list. */
function location(n: Node, i: number): { holder: Json; prop: string; index?: number } {
  const holder = n.parentResNode?.data;
  if (!n.propName || !holder || typeof holder !== 'object') {
    throw Errors.unprocessable(`FHIRPath Patch operation ${i}: the path does not name an element that can be changed`, 'MSG_PATCH_INVALID');
  }
  return { holder: holder as Json, prop: n.propName, index: Array.isArray((holder as Json)[n.propName]) ? (n.index ?? 0) : undefined };
}

function list(n: Node[], i: number): unknown[] {
  if (n.length === 0) throw Errors.unprocessable(`FHIRPath Patch operation ${i}: the path matched no list`, 'MSG_PATCH_INVALID');
  const { holder, prop } = location(n[0], i);
  const l = holder[prop];
  if (!Array.isArray(l)) throw Errors.unprocessable(`FHIRPath Patch operation ${i}: the path does not name a list`, 'MSG_PATCH_INVALID');
  return l;
}

export function isFhirPathPatch(body: unknown): body is Parameters {
  return typeof body === 'object' && body !== null && (body as Resource).resourceType === 'Parameters';
}

export function applyFhirPathPatch(resource: Resource, patch: Parameters): unknown {
  const target = cloneJson(resource);
  const ops = patch.parameter ?? [];
  if (ops.length === 0) throw Errors.badRequest('A FHIRPath Patch needs at least one "operation" parameter', 'MSG_PATCH_INVALID');
  ops.forEach((op, i) => {
    if (op.name !== 'operation') throw Errors.badRequest(`FHIRPath Patch parameter ${i} must be named "operation"`, 'MSG_PATCH_INVALID');
    const type = stringPart(op, 'type', i)!;
    const path = stringPart(op, 'path', i)!;
    const nodes = evaluate(target, path, i);
    switch (type) {
      case 'add': {
        const name = elementName(stringPart(op, 'name', i)!, i);
        const holderNode = single(nodes, i, 'add');
        const holder = holderNode.data as Json;
        if (typeof holder !== 'object' || holder === null || Array.isArray(holder)) {
          throw Errors.unprocessable(`FHIRPath Patch operation ${i}: add needs a path to an object`, 'MSG_PATCH_INVALID');
        }
        const value = valueOf(part(op, 'value'), i);
        if (repeating[`${holderNode.path}.${name}`]) holder[name] = [...((holder[name] as unknown[] | undefined) ?? []), value];
        else if (holder[name] !== undefined) {
          throw Errors.unprocessable(`FHIRPath Patch operation ${i}: ${path}.${name} already has a value; use replace`, 'MSG_PATCH_INVALID');
        } else {
          holder[name] = value;
          setText(holder, name, valueText(part(op, 'value')));
        }
        break;
      }
      case 'insert': {
        const l = list(nodes, i);
        const index = intPart(op, 'index', i);
        if (index > l.length) throw Errors.unprocessable(`FHIRPath Patch operation ${i}: index ${index} is beyond the list`, 'MSG_PATCH_INVALID');
        l.splice(index, 0, valueOf(part(op, 'value'), i));
        setText(l, index, valueText(part(op, 'value')));
        break;
      }
      case 'delete': {
        if (nodes.length === 0) break; // nothing to delete is not an error
        const { holder, prop, index } = location(single(nodes, i, 'delete'), i);
        if (index !== undefined) {
          (holder[prop] as unknown[]).splice(index, 1);
          if ((holder[prop] as unknown[]).length === 0) delete holder[prop];
        } else delete holder[prop];
        break;
      }
      case 'replace': {
        const { holder, prop, index } = location(single(nodes, i, 'replace'), i);
        const value = valueOf(part(op, 'value'), i);
        if (index !== undefined) (holder[prop] as unknown[])[index] = value;
        else holder[prop] = value;
        if (index !== undefined) setText(holder[prop] as unknown[], index, valueText(part(op, 'value')));
        else setText(holder, prop, valueText(part(op, 'value')));
        break;
      }
      case 'move': {
        const l = list(nodes, i);
        const source = intPart(op, 'source', i);
        const destination = intPart(op, 'destination', i);
        if (source >= l.length || destination >= l.length) {
          throw Errors.unprocessable(`FHIRPath Patch operation ${i}: source or destination is beyond the list`, 'MSG_PATCH_INVALID');
        }
        const [moved] = l.splice(source, 1);
        l.splice(destination, 0, moved);
        break;
      }
      default:
        throw Errors.badRequest(`FHIRPath Patch operation ${i}: unknown type "${type}" (add, insert, delete, replace, move)`, 'MSG_PATCH_INVALID');
    }
  });
  return target;
}
