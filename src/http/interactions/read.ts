import { readResponse } from '../responses';
import type { Services } from '../services';
import type { FhirRequest, FhirResponse } from '../types';
import { knownType, shaped, validId } from './common';

/** GET [type]/[id] */
export async function read(s: Services, req: FhirRequest, type: string, id: string): Promise<FhirResponse> {
  knownType(type);
  validId(id);
  req.principal.policy.assertAllowed('read', type);
  const doc = await s.store.read(type, id, req.principal.policy);
  const res = readResponse(doc, shaped(req, doc.res));
  const inm = req.headers['if-none-match'];
  if (inm && inm.replace(/^W\//, '') === `"${doc.vid}"`) return { ...res, status: 304, body: undefined };
  return res;
}
