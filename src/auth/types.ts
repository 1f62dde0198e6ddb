import type { Resource } from 'fhir/r4';
import type { Cond } from '../search/cond';

/** What a request does to a resource type; scopes and policies speak in these terms. */
export type Interaction =
  | 'read'
  | 'vread'
  | 'history'
  | 'search'
  | 'create'
  | 'update'
  | 'patch'
  | 'delete'
  | 'operation';

/**
 * What the caller may do, derived from the token's scopes and launch context. Every path
 * (read, search, include, history, bundle entries, operations, subscriptions) asks it.
 */
export interface AccessPolicy {
  /** Throws a 403 FhirError when the interaction on this type is not granted at all. */
  assertAllowed(interaction: Interaction, type: string): void;
  /**
   * A condition (src/search/cond.ts) on the current-document shape (`_id`, `comp`, `idx`) that
   * limits what of this type may be read; storage's executors compose it with the query's own.
   * Undefined when everything granted is readable; a type the caller may not read at all yields
   * FALSE. Given `interaction` (read, search...), only scopes granting that interaction count;
   * without it, scopes granting read or search do.
   */
  readCond(type: string, interaction?: Interaction): Cond | undefined;
  /** In-memory twin of readCond, for a resource already at hand (indexed afresh). */
  canRead(resource: Resource, comp: string[], interaction?: Interaction): boolean;
  /**
   * Whether the caller may write this resource (as it would be stored). Given `interaction`
   * (create/update/patch/delete), only scopes granting that interaction count; without it, any
   * write scope does. Updates should check both the stored and the new version.
   */
  canWrite(resource: Resource, comp: string[], interaction?: Interaction): boolean;
}

/** Who is calling. */
export interface Principal {
  /** Client id (or subject) for the audit trail. */
  clientId: string;
  scopes: string[];
  /** The signed-in user (SMART App Launch tokens) and their FHIR identity (absolute URL). */
  user?: string;
  fhirUser?: string;
  /** Patient id of the launch context, for patient/ scopes. */
  patient?: string;
  policy: AccessPolicy;
  /** Issuer of the token (our authorization server or a configured external one). */
  issuer?: string;
  /** The token's `jti`, for correlating audit records without storing the token. */
  tokenId?: string;
  /** When the token stops being valid. */
  expiresAt?: Date;
}

/** Policy used when authentication is switched off for local experiments. */
export const allowAllPolicy: AccessPolicy = {
  assertAllowed() {},
  readCond() {
    return undefined;
  },
  canRead() {
    return true;
  },
  canWrite() {
    return true;
  },
};

export const anonymousPrincipal: Principal = {
  clientId: 'anonymous (auth disabled)',
  scopes: ['system/*.*'],
  policy: allowAllPolicy,
};

/**
 * What the search engine provides so that v2 scope restrictions (`?category=...`) mean exactly
 * what the same search means, in the database and in memory.
 */
export interface CriteriaPort {
  /** Compiles `query` (e.g. `category=http://...|vital-signs`) for `type`; throws FhirError on bad criteria. */
  compileCriteria(type: string, query: string): unknown;
  /** Whether a resource matches compiled criteria. */
  matches(criteria: unknown, resource: Resource): boolean;
  /** The condition of compiled criteria, on the CurrentDoc shape (exact: inexact restrictions are refused). */
  criteriaCond(criteria: unknown): Cond;
}
