import type { Goal, Patient, Resource } from 'fhir/r4';
import type { Db } from 'mongodb';
import type { Logger } from 'pino';
import { allowAllPolicy, anonymousPrincipal } from '../auth/types';
import type { AlertingConfig } from '../config';
import { isFhirError } from '../errors';
import type { ResourceStore } from '../resources/store';
import type { SearchService } from '../search/service';
import type { ResourcePort } from './episodes';
import { AlertingService } from './service';

export { AlertingService } from './service';

/**
 * Builds the alerting module on the server's own commit path: its Flags and NEWS2 Observations
 * are server-side writes (versioned, in the outbox, notified like any other version).
 */
export function createAlerting(deps: {
  db: Db;
  config: AlertingConfig;
  logger: Logger;
  store: ResourceStore;
  search: SearchService;
  clock: () => Date;
}): AlertingService {
  const { store, search } = deps;
  const resources: ResourcePort = {
    async read(type, id) {
      const d = await readOrUndefined(store, type, id);
      return d ? { resource: d.res, vid: d.vid } : undefined;
    },
    async write(resource: Resource, ifMatch?: number) {
      const ctx = { principal: anonymousPrincipal, internal: true };
      if (ifMatch !== 0) {
        await store.update(resource.resourceType, resource.id!, resource, ctx, ifMatch);
        return;
      }
      // Create only: of two racing creators the second fails on the unique first version.
      const w = await store.prepare(resource.resourceType, resource.id!, resource, null, 'PUT', ctx, deps.clock());
      if (!w.noop) await store.commit([w]);
    },
  };
  return new AlertingService({
    db: deps.db,
    config: deps.config,
    logger: deps.logger,
    resources,
    now: deps.clock,
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
async function readOrUndefined(store: ResourceStore, type: string, id: string) {
  try {
    return await store.read(type, id, allowAllPolicy);
  } catch (e) {
    if (isFhirError(e) && (e.status === 404 || e.status === 410)) return undefined;
    throw e;
  }
}
