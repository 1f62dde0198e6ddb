import { parseVersionTag } from '../../resources/store';
import { versionHeaders } from '../responses';
import type { Services } from '../services';
import type { FhirRequest, FhirResponse } from '../types';
import { knownType, queryOf, validId } from './common';

/** DELETE [type]/[id] */
export async function remove(s: Services, req: FhirRequest, type: string, id: string): Promise<FhirResponse> {
  knownType(type);
  validId(id);
  req.principal.policy.assertAllowed('delete', type);
  const r = await s.store.delete(type, id, { principal: req.principal }, parseVersionTag(req.headers['if-match']));
  return { status: 204, headers: r ? versionHeaders(r.vid, r.ts) : {}, patients: r?.comp };
}

/** DELETE [type]?[search]: conditional delete. */
export async function conditionalRemove(s: Services, req: FhirRequest, type: string): Promise<FhirResponse> {
  knownType(type);
  req.principal.policy.assertAllowed('delete', type);
  req.principal.policy.assertAllowed('search', type);
  const r = await s.store.conditionalDelete(type, queryOf(req), { principal: req.principal });
  return { status: 204, headers: r ? versionHeaders(r.vid, r.ts) : {}, patients: r?.comp };
}
