import { parseVersionTag } from '../../resources/store';
import { writeResponse } from '../responses';
import type { Services } from '../services';
import type { FhirRequest, FhirResponse } from '../types';
import { resourceBody, knownType, queryOf, validId } from './common';

/** PUT [type]/[id] (update, or update-as-create for a client-chosen id). */
export async function update(s: Services, req: FhirRequest, type: string, id: string): Promise<FhirResponse> {
  knownType(type);
  validId(id);
  req.principal.policy.assertAllowed('update', type);
  const ifMatch = parseVersionTag(req.headers['if-match']);
  const r = await s.store.update(type, id, resourceBody(req), { principal: req.principal }, ifMatch);
  return writeResponse(s.config.baseUrl, r);
}

/** PUT [type]?[search]: conditional update. */
export async function conditionalUpdate(s: Services, req: FhirRequest, type: string): Promise<FhirResponse> {
  knownType(type);
  req.principal.policy.assertAllowed('update', type);
  req.principal.policy.assertAllowed('search', type);
  const ifMatch = parseVersionTag(req.headers['if-match']);
  const r = await s.store.conditionalUpdate(type, queryOf(req), resourceBody(req), { principal: req.principal }, ifMatch);
  return writeResponse(s.config.baseUrl, r);
}
