import type { CapabilityStatementRestSecurity } from 'fhir/r4';

/** The URLs of our authorization server, all derived from the public FHIR base URL. */
export interface AuthUrls {
  /** Our `iss` claim. */
  issuer: string;
  /** FHIR base: the audience of our access tokens. */
  fhirBase: string;
  token: string;
  jwks: string;
  introspect: string;
  /** Path of the discovery document below the server root. */
  smartConfigPath: string;
}

export function authUrls(baseUrl: string): AuthUrls {
  const u = new URL(baseUrl);
  const base = u.pathname.replace(/\/+$/, '');
  return {
    issuer: `${u.origin}/auth`,
    fhirBase: baseUrl,
    token: `${u.origin}/auth/token`,
    jwks: `${u.origin}/auth/jwks`,
    introspect: `${u.origin}/auth/introspect`,
    smartConfigPath: `${base}/.well-known/smart-configuration`,
  };
}

export const SUPPORTED_SCOPES = [
  'system/*.cruds',
  'system/*.rs',
  'system/*.read',
  'system/*.write',
  'user/*.cruds',
  'user/*.rs',
  'patient/*.cruds',
  'patient/*.rs',
  'patient/*.read',
  'patient/*.write',
];

/** GET [base]/.well-known/smart-configuration (SMART App Launch 2.x, backend services subset). */
export function smartConfiguration(urls: AuthUrls): Record<string, unknown> {
  const capabilities = [
    'client-confidential-asymmetric',
    'client-confidential-symmetric',
    'permission-v1',
    'permission-v2',
    'permission-patient',
    'permission-user',
  ];
  return {
    // SMART App Launch 2.x: `issuer` is required with sso-openid-connect and otherwise left out
    // (strict clients then expect OpenID Connect discovery at it).
    ...(capabilities.includes('sso-openid-connect') ? { issuer: urls.issuer } : {}),
    jwks_uri: urls.jwks,
    token_endpoint: urls.token,
    introspection_endpoint: urls.introspect,
    grant_types_supported: ['client_credentials'],
    token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic'],
    token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
    scopes_supported: SUPPORTED_SCOPES,
    capabilities,
  };
}

/**
 * CapabilityStatement.rest.security: the SMART service coding. The R4 `oauth-uris` extension is
 * left out: it requires an `authorize` URL, which a backend-services-only server does not have;
 * clients discover the endpoints at `.well-known/smart-configuration`.
 */
export function capabilitySecurity(_urls: AuthUrls): CapabilityStatementRestSecurity {
  return {
    cors: true,
    service: [
      {
        coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }],
        text: 'OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)',
      },
    ],
    description:
      'Bearer access tokens from the built-in SMART Backend Services authorization server ' +
      '(client_credentials with private_key_jwt RS384/ES384 or client_secret_basic) or from configured external issuers. ' +
      'SMART v1 and v2 scopes (patient/, user/, system/; v2 ?param=value restrictions) are enforced on every interaction.',
  };
}
