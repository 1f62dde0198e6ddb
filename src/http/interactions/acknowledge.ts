import { Errors } from '../../errors';
import { readResponse } from '../responses';
import type { Services } from '../services';
import type { FhirRequest, FhirResponse } from '../types';
import { validId } from './common';

/**
 * POST Flag/[id]/$acknowledge: a clinician acknowledges an alert episode. Authorised like an
 * update of that Flag; answers the Flag as it now is (with the acknowledgement extension).
 */
export async function acknowledge(s: Services, req: FhirRequest, id: string): Promise<FhirResponse> {
  validId(id);
  if (!s.alerts) throw Errors.notFound('Operation $acknowledge is not supported: alerting is off', 'MSG_OP_NOT_SUPPORTED');
  req.principal.policy.assertAllowed('update', 'Flag');
  const doc = await s.store.read('Flag', id, req.principal.policy);
  if (!req.principal.policy.canWrite(doc.res, doc.comp, 'update')) {
    throw Errors.forbidden(`Your access does not allow changing Flag/${id}`, 'MSG_FORBIDDEN', ['Flag']);
  }
  await s.alerts.acknowledge(id, req.principal);
  const now = await s.store.read('Flag', id, req.principal.policy);
  return readResponse(now, now.res);
}
