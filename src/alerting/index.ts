import type { Goal, Patient, Resource } from 'fhir/r4';
import type { Db } from 'mongodb';
import type { Logger } from 'pino';
import { allowAllPolicy, anonymousPrincipal } from '../auth/types';
import type { AlertingConfig } from '../config';
import { isFhirError } from '../errors';
import type { ResourceStore } from '../resources/store';
import type { SearchService } from '../search/service';
import type { CurrentDoc } from '../storage';
import type { ResourcePort } from './batch';
import { AlertingService } from './service';

export { AlertingService } from './service';

/**
 * Builds the alerting module on the server's own commit path: its Flags and NEWS2 Observations
 * are server-side writes (versioned, in the outbox, notified like any other version).
 * `leaseEpoch` is the outbox's `heldEpoch` (its memory is trusted only while the lease is held);
 * the module's consumer is registered as `(events, info) => alerting.onCommitted(events, info)`.
 */
export function createAlerting(deps: {
  db: Db;
  config: AlertingConfig;
  logger: Logger;
  store: ResourceStore;
  search: SearchService;
  clock: () => Date;
  leaseEpoch?: () => number | undefined;
}): AlertingService {
  const { store, search } = deps;
  const ctx = { principal: anonymousPrincipal, internal: true };
  const resources: ResourcePort = {
    read: (type, id) => readOrUndefined(store, type, id),
    async commit(writes) {
      const now = deps.clock();
      return Promise.all(
        writes.map(async (w) => {
          const p = await store.prepare(w.resource.resourceType, w.resource.id!, w.resource as Resource, w.current, 'PUT', ctx, now);
          try {
            await store.commit([p]);
            return p.doc;
          } catch (e) {
            if (isFhirError(e) && e.status === 409) return 'conflict' as const;
            throw e;
          }
        }),
      );
    },
  };
  return new AlertingService({
    db: deps.db,
    config: deps.config,
    logger: deps.logger,
    resources,
    now: deps.clock,
    leaseEpoch: deps.leaseEpoch,
    patient: async (id) => (await readOrUndefined(store, 'Patient', id))?.res as Patient | undefined,
    goals: async (patientRef) =>
      (await search.findMatches('Goal', `subject=${encodeURIComponent(patientRef)}`, allowAllPolicy, 50)).map((d) => d.res as Goal),
  });
}

/** Reads a Patient for range resolution (age, gender). */
export function patientReader(store: ResourceStore): { patient(id: string): Promise<Patient | undefined> } {
  return {
    async patient(id) {
      return (await readOrUndefined(store, 'Patient', id))?.res as Patient | undefined;
    },
  };
}

/** The current version, or undefined when absent or deleted (the server reads with no restriction). */
async function readOrUndefined(store: ResourceStore, type: string, id: string): Promise<CurrentDoc | undefined> {
  try {
    return await store.read(type, id, allowAllPolicy);
  } catch (e) {
    if (isFhirError(e) && (e.status === 404 || e.status === 410)) return undefined;
    throw e;
  }
}
