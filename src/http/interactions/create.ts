import { writeResponse } from '../responses';
import type { Services } from '../services';
import type { FhirRequest, FhirResponse } from '../types';
import { resourceBody, knownType } from './common';

/** POST [type], with optional If-None-Exist (conditional create). */
export async function create(s: Services, req: FhirRequest, type: string): Promise<FhirResponse> {
  knownType(type);
  req.principal.policy.assertAllowed('create', type);
  const body = resourceBody(req);
  const ifNoneExist = req.headers['if-none-exist'];
  if (ifNoneExist !== undefined) req.principal.policy.assertAllowed('search', type);
  const r = await s.store.create(type, body, { principal: req.principal }, ifNoneExist?.replace(/^\?/, '').replace(new RegExp(`^${type}\\?`), ''));
  return writeResponse(s.config.baseUrl, r);
}
