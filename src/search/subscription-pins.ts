import type { Resource } from 'fhir/r4';

/**
 * The patient a Subscription is about, from its criteria: the R4 criteria, or every Backport
 * filter of a topic-based one, must pin exactly one patient with `patient=` or `subject=`
 * (`Patient/<id>`, a bare id for `patient`, or an absolute `.../Patient/<id>`). That patient
 * becomes the Subscription's patient compartment, so `patient/Subscription.*` scopes reach
 * exactly the subscriptions about their own patient.
 */
const FILTER_EXT = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria';
const PIN_PARAMS = new Set(['patient', 'patient:Patient', 'subject', 'subject:Patient']);

function pinOf(query: string): string | undefined {
  const found = new Set<string>();
  for (const [key, value] of new URLSearchParams(query)) {
    if (!PIN_PARAMS.has(key)) continue;
    if (value.includes(',')) return undefined; // several patients: pins none of them
    const m = /^(?:.*\/)?Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(value);
    const bareOk = key !== 'subject' && /^[A-Za-z0-9\-.]{1,64}$/.test(value);
    const id = m ? m[1] : bareOk ? value : undefined;
    if (!id) return undefined;
    found.add(id);
  }
  return found.size === 1 ? [...found][0] : undefined;
}

function queryOf(filter: string): string {
  const q = filter.indexOf('?');
  return q < 0 ? filter : filter.slice(q + 1);
}

export function subscriptionPatient(resource: Resource): string | undefined {
  if (resource.resourceType !== 'Subscription') return undefined;
  const criteria = (resource as { criteria?: unknown }).criteria;
  if (typeof criteria !== 'string') return undefined;
  let filters: string[];
  if (/^(https?:|urn:)/.test(criteria.trim())) {
    const exts = (resource as { _criteria?: { extension?: { url?: string; valueString?: unknown }[] } })._criteria?.extension ?? [];
    filters = exts.filter((e) => e.url === FILTER_EXT && typeof e.valueString === 'string').map((e) => e.valueString as string);
  } else {
    filters = [criteria];
  }
  if (filters.length === 0) return undefined;
  const pins = new Set(filters.map((f) => pinOf(queryOf(f.trim()))));
  if (pins.size !== 1) return undefined;
  return [...pins][0];
}
