import type { Principal } from '../auth/types';
import { Errors, FhirError } from '../errors';
import { compartmentParams } from '../search/indexer';
import type { KickoffParams } from './parameters';
import type { ExportLevel, ExportSpec } from './types';

/** The NDJSON media type and the short forms the Bulk Data IG says servers should accept. */
export const NDJSON = 'application/fhir+ndjson';
const NDJSON_FORMS = new Set([NDJSON, 'application/ndjson', 'ndjson']);

/** Types that can hold data of a patient (Patient itself and the types of its compartment). */
export function patientTypes(served: readonly string[]): string[] {
  return served.filter((t) => t === 'Patient' || compartmentParams(t).length > 0);
}

export interface KickoffInput {
  level: ExportLevel;
  params: KickoffParams;
  prefer: string | undefined;
  served: readonly string[];
  principal: Principal;
  groupId?: string;
  /** The FHIR base: absolute `patient` references must point here. */
  baseUrl: string;
  /** Compiles a `_typeFilter` query; throws a FhirError when the search engine refuses it. */
  checkFilter: (type: string, query: string) => void;
}

const KNOWN = new Set(['_type', '_since', '_outputFormat', '_typeFilter', '_elements', 'patient']);
/** Parameters this server does not offer, and why: refused by name rather than ignored (the IG's SHOULD). */
const UNSUPPORTED: Record<string, string> = {
  includeAssociatedData: 'this server keeps no Provenance resources to add or omit',
  _until: 'it is not part of the Bulk Data IG STU 2 that this server implements',
  organizeOutputBy: 'it is not part of the Bulk Data IG STU 2 that this server implements',
  allowPartialManifests: 'it is not part of the Bulk Data IG STU 2 that this server implements',
};
/** At most this many `patient` references in one kick-off (each is checked by a point read). */
export const MAX_PATIENTS = 1000;

const refuse = (name: string, why: string) => new FhirError(400, 'not-supported', 'MSG_PARAM_UNKNOWN', `The export parameter ${name} is not supported: ${why}`);

/**
 * Checks a kick-off request (Bulk Data IG STU 2, "Bulk Data Kick-off Request") from either form
 * (GET query or POST Parameters: the same names and rules) and returns what the job will export.
 * Types the caller may not read are left out here and reported in the error file by the job, as
 * the IG allows; a type the server does not serve at all is a 400.
 */
export function parseKickoff(k: KickoffInput): { spec: ExportSpec; denied: string[] } {
  if (!/\brespond-async\b/i.test(k.prefer ?? '')) {
    throw Errors.badRequest('A Bulk Data export needs the header "Prefer: respond-async"', 'MSG_BULK_PREFER');
  }
  const all = (name: string) => k.params.pairs.filter(([n]) => n === name).map(([, v]) => v);
  const one = (name: string) => {
    const v = all(name);
    if (v.length > 1) throw Errors.badRequest(`The export parameter ${name} may be given once`, 'MSG_PARAM_INVALID');
    return v[0];
  };
  const list = (name: string) => all(name).flatMap((v) => v.split(',')).map((t) => t.trim()).filter(Boolean);
  for (const [name] of k.params.pairs) {
    if (UNSUPPORTED[name]) throw refuse(name, UNSUPPORTED[name]);
    if (!KNOWN.has(name)) throw Errors.badRequest(`Unknown export parameter ${name}`, 'MSG_PARAM_UNKNOWN');
  }
  const format = one('_outputFormat');
  if (format !== undefined && !NDJSON_FORMS.has(format.trim().toLowerCase())) {
    throw Errors.badRequest(`_outputFormat "${format}" is not supported; use ${NDJSON}`, 'MSG_BULK_FORMAT');
  }
  const candidates = k.level === 'system' ? [...k.served] : patientTypes(k.served);
  let types = candidates;
  const asked = list('_type');
  if (asked.length > 0) {
    for (const t of asked) {
      if (!candidates.includes(t)) {
        const why = k.served.includes(t) ? 'holds no patient data' : 'is not served';
        throw Errors.badRequest(`_type ${t} ${why} in a ${k.level}-level export`, 'MSG_BULK_TYPE');
      }
    }
    types = [...new Set(asked)];
  }
  const since = instant('_since', one('_since'));
  const typeFilters: Record<string, string[]> = {};
  for (const f of list('_typeFilter')) {
    const m = /^([A-Z][A-Za-z]+)\?(.+)$/.exec(f);
    if (!m) throw Errors.badRequest(`_typeFilter "${f}" must look like Type?search-parameters`, 'MSG_BULK_TYPEFILTER');
    const [, type, q] = m;
    if (!types.includes(type)) throw Errors.badRequest(`_typeFilter names ${type}, which this export does not include`, 'MSG_BULK_TYPEFILTER');
    k.checkFilter(type, q);
    (typeFilters[type] ??= []).push(q);
  }
  const elements = parseElements(list('_elements'), types);
  const patients = parsePatients(k, list('patient'));
  const denied = types.filter((t) => !canReadType(k.principal, t));
  const spec: ExportSpec = { level: k.level, types, since, typeFilters, groupId: k.groupId, ...(elements ? { elements } : {}), ...(patients ? { patients } : {}) };
  return { spec, denied };
}

/** An instant with a time zone, as the IG requires (FHIR instant). */
function instant(name: string, raw: string | undefined): Date | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(raw.trim()) || Number.isNaN(Date.parse(raw.trim()))) {
    throw Errors.badRequest(`${name} must be a FHIR instant such as 2024-01-01T00:00:00Z, got "${raw}"`, 'MSG_BULK_SINCE');
  }
  return new Date(raw.trim());
}

/**
 * `_elements`: `Type.element` or `element`, root elements only (the IG's form); kept by type,
 * `*` for names given without one. The shaping itself is search's (src/search/shape.ts).
 */
function parseElements(items: string[], types: string[]): Record<string, string[]> | undefined {
  if (items.length === 0) return undefined;
  const out: Record<string, string[]> = {};
  for (const item of items) {
    const m = /^(?:([A-Z][A-Za-z]+)\.)?([a-z][A-Za-z0-9]*)$/.exec(item);
    if (!m) throw Errors.badRequest(`_elements "${item}" must be Type.element or element, a root element of the resource`, 'MSG_PARAM_INVALID', ['_elements']);
    const [, type, name] = m;
    if (type && !types.includes(type)) throw Errors.badRequest(`_elements names ${type}, which this export does not include`, 'MSG_PARAM_INVALID', ['_elements']);
    (out[type ?? '*'] ??= []).push(name);
  }
  return out;
}

/** `patient` (POST only, not at system level): the referenced Patient ids, checked later against the data. */
function parsePatients(k: KickoffInput, refs: string[]): string[] | undefined {
  if (refs.length === 0) return undefined;
  if (k.params.method !== 'POST') throw refuse('patient', 'the IG defines it for POST kick-offs only; send a Parameters body');
  if (k.level === 'system') throw Errors.badRequest('The export parameter patient does not apply to a system-level export; use Patient/$export or Group/[id]/$export', 'MSG_BULK_PATIENT');
  if (refs.length > MAX_PATIENTS) throw Errors.badRequest(`At most ${MAX_PATIENTS} patient references per kick-off`, 'MSG_BULK_PATIENT');
  const base = k.baseUrl.replace(/\/+$/, '');
  const ids = refs.map((ref) => {
    const local = ref.startsWith(`${base}/`) ? ref.slice(base.length + 1) : ref;
    const m = /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(local);
    if (!m) throw Errors.badRequest(`patient "${ref}" must reference a Patient of this server (Patient/[id])`, 'MSG_BULK_PATIENT', ['Parameters.parameter']);
    return m[1];
  });
  return [...new Set(ids)];
}

function canReadType(p: Principal, type: string): boolean {
  try {
    p.policy.assertAllowed('search', type);
    return true;
  } catch {
    return false;
  }
}
