import type { Services } from '../services';
import type { FhirRequest, FhirResponse } from '../types';

/** GET [base]/metadata */
export async function capabilities(s: Services, _req: FhirRequest): Promise<FhirResponse> {
  return { status: 200, body: s.capabilityStatement(), headers: {} };
}
