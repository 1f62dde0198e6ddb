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
  authorize: string;
  revoke: string;
  /** EHR launch: where an EHR obtains a `launch` value. */
  launch: string;
  /** The default `smart_style_url`. */
  style: string;
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
    authorize: `${u.origin}/auth/authorize`,
    revoke: `${u.origin}/auth/revoke`,
    launch: `${u.origin}/auth/launch`,
    style: `${u.origin}/auth/smart-style.json`,
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
  'launch',
  'launch/patient',
  'openid',
  'fhirUser',
  'offline_access',
  'online_access',
];

/** The SMART capabilities this server offers, exactly. */
export const SMART_CAPABILITIES = [
  'launch-standalone',
  'launch-ehr',
  'client-public',
  'client-confidential-symmetric',
  'client-confidential-asymmetric',
  'context-standalone-patient',
  'context-ehr-patient',
  'context-ehr-encounter',
  'context-banner',
  'context-style',
  'permission-patient',
  'permission-user',
  'permission-offline',
  'permission-online',
  'permission-v1',
  'permission-v2',
  'sso-openid-connect',
];

/** GET [base]/.well-known/smart-configuration (SMART App Launch 2.x and Backend Services). */
export function smartConfiguration(urls: AuthUrls): Record<string, unknown> {
  const capabilities = SMART_CAPABILITIES;
  return {
    // SMART App Launch 2.x: `issuer` is required with sso-openid-connect and otherwise left out
    // (strict clients then expect OpenID Connect discovery at it).
    ...(capabilities.includes('sso-openid-connect') ? { issuer: urls.issuer } : {}),
    jwks_uri: urls.jwks,
    authorization_endpoint: urls.authorize,
    token_endpoint: urls.token,
    introspection_endpoint: urls.introspect,
    revocation_endpoint: urls.revoke,
    grant_types_supported: ['authorization_code', 'client_credentials', 'refresh_token'],
    response_types_supported: ['code'],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic', 'none'],
    token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
    id_token_signing_alg_values_supported: ['RS256'],
    scopes_supported: SUPPORTED_SCOPES,
    capabilities,
  };
}

/**
 * CapabilityStatement.rest.security: the SMART service coding and the R4 `oauth-uris` extension
 * (which requires an `authorize` URL: the App Launch authorization endpoint; R4 defines only token,
 * authorize, register and manage in it). Revocation, introspection and the capabilities are at
 * `.well-known/smart-configuration`.
 */
export function capabilitySecurity(urls: AuthUrls): CapabilityStatementRestSecurity {
  return {
    cors: true,
    service: [
      {
        coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }],
        text: 'OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)',
      },
    ],
    extension: [
      {
        url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
        extension: [
          { url: 'token', valueUri: urls.token },
          { url: 'authorize', valueUri: urls.authorize },
        ],
      },
    ],
    description:
      'Bearer access tokens from the built-in authorization server: SMART App Launch (authorization code with PKCE S256, ' +
      'standalone and EHR launch, public and confidential apps, refresh tokens, OpenID Connect) and SMART Backend Services ' +
      '(client_credentials with private_key_jwt RS384/ES384 or client_secret_basic), or from configured external issuers. ' +
      'SMART v1 and v2 scopes (patient/, user/, system/; v2 ?param=value restrictions) are enforced on every interaction.',
  };
}
