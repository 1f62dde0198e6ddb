import type { Resource } from 'fhir/r4';
import type { Filter, Document } from 'mongodb';

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
   * A MongoDB filter on the current-document shape (`comp`, `idx`) that limits what of this
   * type may be read; undefined when everything granted is readable.
   */
  readFilter(type: string): Filter<Document> | undefined;
  /** In-memory twin of readFilter, for a resource already at hand. */
  canRead(resource: Resource, comp: string[]): boolean;
  /** Whether the caller may write this resource (as it would be stored). */
  canWrite(resource: Resource, comp: string[]): boolean;
}

/** Who is calling. */
export interface Principal {
  /** Client id (or subject) for the audit trail. */
  clientId: string;
  scopes: string[];
  /** Patient id of the launch context, for patient/ scopes. */
  patient?: string;
  policy: AccessPolicy;
}

/** Policy used when authentication is switched off for local experiments. */
export const allowAllPolicy: AccessPolicy = {
  assertAllowed() {},
  readFilter() {
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
