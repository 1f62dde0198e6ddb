import type { Bundle, BundleEntry } from 'fhir/r4';
import { breathe } from '../../deadline';
import { Errors } from '../../errors';
import { outcomeOf, toFhirError } from '../outcome';
import type { Services } from '../services';
import type { FhirRequest, FhirResponse } from '../types';
import { checkBundle, checkEntry, entryRequest, limitsOf, parseEntryUrl, responseEntry, type Dispatch } from './bundle-entries';
import { resourceBody } from './common';
import { transaction } from './transaction';

export type { Dispatch } from './bundle-entries';

/** POST [base] with a batch Bundle: every entry on its own, failures reported per entry. */
async function batch(s: Services, req: FhirRequest, b: Bundle, dispatch: Dispatch, minimal: boolean, patients: Set<string>): Promise<Bundle> {
  const entries: BundleEntry[] = [];
  for (const [i, e] of (b.entry ?? []).entries()) {
    try {
      await breathe();
      const url = parseEntryUrl(e.request!.url, s.config.baseUrl, i);
      checkEntry(e, url);
      if (url.segments.length === 0 && e.request!.method === 'POST') {
        throw Errors.badRequest('Nested batch or transaction Bundles are not allowed', 'MSG_BUNDLE_NESTED');
      }
      const res = await dispatch(entryRequest(req, e, url, limitsOf(s)));
      res.patients?.forEach((p) => patients.add(p));
      entries.push(responseEntry(s, res, minimal));
    } catch (err) {
      const fe = toFhirError(err);
      entries.push({ response: { status: String(fe.status), outcome: outcomeOf(fe) } });
    }
  }
  return { resourceType: 'Bundle', type: 'batch-response', entry: entries };
}

/** POST [base] */
export async function processBundle(s: Services, req: FhirRequest, dispatch: Dispatch): Promise<FhirResponse> {
  if (req.inBundle) throw Errors.badRequest('Nested batch or transaction Bundles are not allowed', 'MSG_BUNDLE_NESTED');
  const b = checkBundle(resourceBody(req), s.config.limits);
  const minimal = /return\s*=\s*minimal/i.test(req.headers.prefer ?? '');
  // Every patient whose data an entry touched goes to the audit trail of the Bundle request.
  const patients = new Set<string>();
  const out =
    b.type === 'batch'
      ? await batch(s, req, b, dispatch, minimal, patients)
      : await transaction(s, req, b, dispatch, minimal, patients);
  return { status: 200, body: out, headers: {}, patients: [...patients] };
}
