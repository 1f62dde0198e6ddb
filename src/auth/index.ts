export { AuthService, type AuthDeps } from './service';
export { AuditTrail, toAuditEvent, type AuditRecord } from './audit';
export { ScopePolicy, MATCH_NOTHING } from './policy';
export { createTlsServer, HSTS_VALUE } from './tls';
export { parseScope, formatScope, grantScopes, type ResourceScope } from './scopes';
export {
  allowAllPolicy,
  anonymousPrincipal,
  type AccessPolicy,
  type CriteriaPort,
  type Interaction,
  type Principal,
} from './types';
