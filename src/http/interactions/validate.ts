import type { Parameters, Resource } from 'fhir/r4';
import { Errors } from '../../errors';
import type { Services } from '../services';
import type { FhirRequest, FhirResponse } from '../types';
import { resourceBody, knownType } from './common';

/** POST [type]/$validate (and [type]/[id]/$validate): the resource directly or in a Parameters "resource". */
export async function validate(s: Services, req: FhirRequest, type: string, id?: string): Promise<FhirResponse> {
  knownType(type);
  req.principal.policy.assertAllowed('operation', type);
  let body = resourceBody(req);
  let mode: 'create' | 'update' = id ? 'update' : 'create';
  if ((body as Resource).resourceType === 'Parameters') {
    const p = body as Parameters;
    const res = p.parameter?.find((x) => x.name === 'resource')?.resource;
    if (!res) throw Errors.badRequest('$validate Parameters need a "resource" parameter', 'MSG_PARAM_MISSING');
    const m = p.parameter?.find((x) => x.name === 'mode')?.valueCode;
    if (m === 'update') mode = 'update';
    body = res;
  }
  const outcome = s.validateOperation(body, type, mode, id);
  return { status: 200, body: outcome, headers: {} };
}
