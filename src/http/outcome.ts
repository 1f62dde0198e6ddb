import type { OperationOutcome } from 'fhir/r4';
import { FhirError, isFhirError } from '../errors';

export function outcomeOf(e: FhirError): OperationOutcome {
  if (e.issues?.length) return { resourceType: 'OperationOutcome', issue: e.issues };
  const issue: OperationOutcome['issue'][number] = {
    severity: e.status >= 500 ? 'fatal' : 'error',
    code: e.code,
    details: { coding: [{ system: 'urn:vigil:message-codes', code: e.messageCode }], text: e.message },
    diagnostics: e.message,
  };
  if (e.expression?.length) issue.expression = e.expression;
  return { resourceType: 'OperationOutcome', issue: [issue] };
}

export function informationOutcome(text: string, code: OperationOutcome['issue'][number]['code'] = 'informational'): OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code, diagnostics: text }] };
}

/**
 * The one place where failures become responses. Anything that is not a FhirError is our own
 * fault: it is logged by the caller and answered with a 500 that reveals no details.
 */
export function toFhirError(e: unknown): FhirError {
  if (isFhirError(e)) return e;
  return new FhirError(500, 'exception', 'MSG_INTERNAL', 'Internal server error; it has been logged');
}
