import { readResponse } from '../responses';
import type { Services } from '../services';
import type { FhirRequest, FhirResponse } from '../types';
import { knownType, shaped, validId, validVersion } from './common';

/** GET [type]/[id]/_history/[vid] */
export async function vread(s: Services, req: FhirRequest, type: string, id: string, v: string): Promise<FhirResponse> {
  knownType(type);
  validId(id);
  req.principal.policy.assertAllowed('vread', type);
  const h = await s.store.vread(type, id, validVersion(v), req.principal.policy);
  const res = h.res!;
  return readResponse({ res, vid: h.vid, ts: h.ts, comp: h.comp }, shaped(req, res));
}
