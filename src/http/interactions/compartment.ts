import type { Bundle } from 'fhir/r4';
import { Errors } from '../../errors';
import { compartmentPolicy, PATIENT_COMPARTMENT_TYPES } from '../compartment-policy';
import type { Services } from '../services';
import type { FhirRequest, FhirResponse } from '../types';
import { knownType, validId } from './common';
import { handling, searchParams } from './search';

/**
 * GET [base]/Patient/[id]/[type]?params: the search of [type] restricted to the patient's
 * compartment. Links keep the compartment path, so paging stays inside it.
 */
export async function compartmentSearch(s: Services, req: FhirRequest, id: string, type: string): Promise<FhirResponse> {
  validId(id);
  knownType(type);
  if (!PATIENT_COMPARTMENT_TYPES.includes(type)) {
    throw Errors.badRequest(`${type} is not in the Patient compartment (in it: ${PATIENT_COMPARTMENT_TYPES.join(', ')})`, 'MSG_NOT_IN_COMPARTMENT');
  }
  req.principal.policy.assertAllowed('search', type);
  const bundle = await s.search.search({
    type,
    params: searchParams(req, s.config.limits),
    policy: compartmentPolicy(req.principal.policy, id),
    baseUrl: s.config.baseUrl,
    handling: handling(req),
  });
  return { status: 200, body: relink(bundle, `${s.config.baseUrl}/${type}`, `${s.config.baseUrl}/Patient/${id}/${type}`), headers: {}, patients: [id] };
}

/** Rewrites the type-level search links of a Bundle to the compartment path. */
function relink(bundle: Bundle, from: string, to: string): Bundle {
  const link = bundle.link?.map((l) => (l.url === from || l.url.startsWith(`${from}?`) ? { ...l, url: to + l.url.slice(from.length) } : l));
  return link ? { ...bundle, link } : bundle;
}
