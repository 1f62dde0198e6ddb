import type { OperationOutcomeIssue } from 'fhir/r4';

/** OperationOutcome issue codes (http://hl7.org/fhir/ValueSet/issue-type). */
export type IssueCode = OperationOutcomeIssue['code'];

/**
 * The one error type of the server. Every failure a client can cause is a FhirError value;
 * `src/http/outcome.ts` maps it to an OperationOutcome response in one place.
 */
export class FhirError extends Error {
  constructor(
    /** HTTP status to answer with. */
    readonly status: number,
    /** OperationOutcome.issue.code. */
    readonly code: IssueCode,
    /** Stable, machine-readable message code (OperationOutcome.issue.details.coding.code). */
    readonly messageCode: string,
    message: string,
    /** FHIRPath of the offending element(s), when there is one. */
    readonly expression?: string[],
    /** Extra headers the response must carry (for example WWW-Authenticate). */
    readonly headers?: Record<string, string>,
    /** Every issue, when one error reports several problems (validation). */
    readonly issues?: OperationOutcomeIssue[],
  ) {
    super(message);
    this.name = 'FhirError';
  }
}

type Make = (message: string, messageCode?: string, expression?: string[]) => FhirError;
const make =
  (status: number, code: IssueCode, defaultCode: string): Make =>
  (message, messageCode = defaultCode, expression) =>
    new FhirError(status, code, messageCode, message, expression);

/** Constructors for the errors the server raises, by HTTP meaning. */
export const Errors = {
  badRequest: make(400, 'invalid', 'MSG_BAD_SYNTAX'),
  /**
   * 401. RFC 6750 section 3.1: a request without credentials gets a bare `Bearer` challenge (no
   * error code); credentials that were sent and refused get `error="invalid_token"`.
   */
  unauthorized: (message: string, messageCode = 'MSG_AUTH_REQUIRED', noCredentials = false) =>
    new FhirError(401, 'login', messageCode, message, undefined, {
      'WWW-Authenticate': noCredentials ? 'Bearer' : `Bearer error="invalid_token", error_description="${message.replace(/"/g, "'")}"`,
    }),
  forbidden: make(403, 'forbidden', 'MSG_FORBIDDEN'),
  notFound: make(404, 'not-found', 'MSG_NO_EXIST'),
  methodNotAllowed: make(405, 'not-supported', 'MSG_OP_NOT_ALLOWED'),
  notAcceptable: make(406, 'not-supported', 'MSG_NOT_ACCEPTABLE'),
  conflict: make(409, 'conflict', 'MSG_VERSION_CONFLICT'),
  gone: make(410, 'deleted', 'MSG_DELETED_ID'),
  preconditionFailed: make(412, 'conflict', 'MSG_VERSION_AWARE_CONFLICT'),
  tooLarge: make(413, 'too-costly', 'MSG_TOO_LARGE'),
  unsupportedMediaType: make(415, 'not-supported', 'MSG_UNSUPPORTED_MEDIA_TYPE'),
  unprocessable: make(422, 'invalid', 'MSG_INVALID'),
  tooManyRequests: make(429, 'throttled', 'MSG_THROTTLED'),
  notImplemented: make(501, 'not-supported', 'MSG_NOT_SUPPORTED'),
  /** The request ran past its server-side deadline and was stopped (nothing of it was written). */
  deadline: make(503, 'timeout', 'MSG_DEADLINE'),
  unavailable: make(503, 'transient', 'MSG_UNAVAILABLE'),
  internal: make(500, 'exception', 'MSG_INTERNAL'),
} as const;

export function isFhirError(e: unknown): e is FhirError {
  return e instanceof FhirError;
}
