/**
 * An OAuth 2.0 error response (RFC 6749 5.2). Token and introspection endpoints answer with these
 * instead of OperationOutcomes, because OAuth clients expect them.
 */
export class OAuthError extends Error {
  constructor(
    readonly status: 400 | 401 | 429,
    readonly error: 'invalid_request' | 'invalid_client' | 'invalid_grant' | 'invalid_scope' | 'unsupported_grant_type' | 'unauthorized_client',
    readonly description: string,
    /** Basic auth was attempted: a 401 must then carry WWW-Authenticate: Basic. */
    readonly basicChallenge = false,
    readonly retryAfterSec?: number,
  ) {
    super(description);
    this.name = 'OAuthError';
  }

  body(): { error: string; error_description: string } {
    return { error: this.error, error_description: this.description };
  }
}
