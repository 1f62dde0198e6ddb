import type { Principal } from '../auth/types';
import { Errors } from '../errors';
import { compartmentParams } from '../search/indexer';
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
  query: URLSearchParams;
  prefer: string | undefined;
  served: readonly string[];
  principal: Principal;
  groupId?: string;
  /** Compiles a `_typeFilter` query; throws a FhirError when the search engine refuses it. */
  checkFilter: (type: string, query: string) => void;
}

const KNOWN = new Set(['_type', '_since', '_outputFormat', '_typeFilter']);
/** Parameters of the IG this server does not offer: refused by name rather than ignored. */
const UNSUPPORTED = new Set(['_elements', 'patient', 'includeAssociatedData', '_until', 'organizeOutputBy', 'allowPartialManifests']);

/**
 * Checks a kick-off request (Bulk Data IG STU 2, "Bulk Data Kick-off Request") and returns what
 * the job will export. Types the caller may not read are left out here and reported in the
 * error file by the job, as the IG allows; a type the server does not serve at all is a 400.
 */
export function parseKickoff(k: KickoffInput): { spec: ExportSpec; denied: string[] } {
  if (!/\brespond-async\b/i.test(k.prefer ?? '')) {
    throw Errors.badRequest('A Bulk Data export needs the header "Prefer: respond-async"', 'MSG_BULK_PREFER');
  }
  for (const name of new Set(k.query.keys())) {
    if (UNSUPPORTED.has(name)) throw Errors.badRequest(`The export parameter ${name} is not supported by this server`, 'MSG_PARAM_UNKNOWN');
    if (!KNOWN.has(name)) throw Errors.badRequest(`Unknown export parameter ${name}`, 'MSG_PARAM_UNKNOWN');
  }
  const format = k.query.get('_outputFormat');
  if (format !== null && !NDJSON_FORMS.has(format.trim().toLowerCase())) {
    throw Errors.badRequest(`_outputFormat "${format}" is not supported; use ${NDJSON}`, 'MSG_BULK_FORMAT');
  }
  const candidates = k.level === 'system' ? [...k.served] : patientTypes(k.served);
  let types = candidates;
  const asked = k.query.getAll('_type').flatMap((v) => v.split(',')).map((t) => t.trim()).filter(Boolean);
  if (asked.length > 0) {
    for (const t of asked) {
      if (!candidates.includes(t)) {
        const why = k.served.includes(t) ? 'holds no patient data' : 'is not served';
        throw Errors.badRequest(`_type ${t} ${why} in a ${k.level}-level export`, 'MSG_BULK_TYPE');
      }
    }
    types = [...new Set(asked)];
  }
  let since: Date | undefined;
  const sinceRaw = k.query.get('_since');
  if (sinceRaw !== null) {
    // An instant with a time zone, as the IG requires (FHIR instant).
    if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(sinceRaw.trim())) {
      throw Errors.badRequest(`_since must be a FHIR instant such as 2024-01-01T00:00:00Z, got "${sinceRaw}"`, 'MSG_BULK_SINCE');
    }
    since = new Date(sinceRaw.trim());
  }
  const typeFilters: Record<string, string[]> = {};
  for (const raw of k.query.getAll('_typeFilter').flatMap((v) => v.split(','))) {
    const f = raw.trim();
    const m = /^([A-Z][A-Za-z]+)\?(.+)$/.exec(f);
    if (!m) throw Errors.badRequest(`_typeFilter "${f}" must look like Type?search-parameters`, 'MSG_BULK_TYPEFILTER');
    const [, type, q] = m;
    if (!types.includes(type)) throw Errors.badRequest(`_typeFilter names ${type}, which this export does not include`, 'MSG_BULK_TYPEFILTER');
    k.checkFilter(type, q);
    (typeFilters[type] ??= []).push(q);
  }
  const denied = types.filter((t) => !canReadType(k.principal, t));
  return { spec: { level: k.level, types, since, typeFilters, groupId: k.groupId }, denied };
}

function canReadType(p: Principal, type: string): boolean {
  try {
    p.policy.assertAllowed('search', type);
    return true;
  } catch {
    return false;
  }
}
