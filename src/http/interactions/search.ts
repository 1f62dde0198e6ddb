import type { Limits } from '../../config';
import { Errors } from '../../errors';
import { checkSearchCost } from '../limits';
import type { Services } from '../services';
import type { FhirRequest, FhirResponse } from '../types';
import { knownType } from './common';

export function handling(req: FhirRequest): 'strict' | 'lenient' {
  const prefer = req.headers.prefer ?? '';
  return /handling\s*=\s*strict/i.test(prefer) ? 'strict' : 'lenient';
}

/** Query pairs of a search: the URL query, plus the form body of POST [type]/_search. */
export function searchParams(req: FhirRequest, limits: Limits): [string, string][] {
  const pairs = [...req.query.entries()];
  if (req.method === 'POST') {
    if (req.contentType !== 'application/x-www-form-urlencoded') {
      throw Errors.unsupportedMediaType('POST _search needs Content-Type application/x-www-form-urlencoded', 'MSG_UNSUPPORTED_MEDIA_TYPE');
    }
    if (req.body instanceof URLSearchParams) pairs.push(...req.body.entries());
  }
  checkSearchCost(pairs, limits);
  return pairs;
}

/** GET [type]?..., POST [type]/_search, and system-level GET [base]?_type=... */
export async function search(s: Services, req: FhirRequest, type?: string): Promise<FhirResponse> {
  if (type) {
    knownType(type);
    req.principal.policy.assertAllowed('search', type);
  }
  const bundle = await s.search.search({
    type,
    params: searchParams(req, s.config.limits),
    policy: req.principal.policy,
    baseUrl: s.config.baseUrl,
    handling: handling(req),
  });
  return { status: 200, body: bundle, headers: {} };
}

/** GET Observation/$lastn */
export async function lastn(s: Services, req: FhirRequest): Promise<FhirResponse> {
  req.principal.policy.assertAllowed('search', 'Observation');
  const bundle = await s.search.lastn({
    type: 'Observation',
    params: searchParams(req, s.config.limits),
    policy: req.principal.policy,
    baseUrl: s.config.baseUrl,
    handling: handling(req),
  });
  return { status: 200, body: bundle, headers: {} };
}
