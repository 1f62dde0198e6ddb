import type { Db } from 'mongodb';
import type { AlertingModule } from '../alerting/module';
import type { AuditModule } from '../http/audit-module';
import type { BulkModule } from '../bulk/module';
import type { ModuleParts } from '../module';
import type { ResourcesModule } from '../resources/module';
import { SERVED_TYPES } from '../resources/registry';
import { Eraser } from './eraser';
import { ErasureParticipants } from './participants';

export interface ErasureModule extends ModuleParts {
  service: Eraser;
}

/** Patient erasure ($purge, $expunge): it reaches search entries, export files and the audit trail. */
export function createErasureModule(deps: { db: Db; core: ResourcesModule; bulk: BulkModule; audit: AuditModule; alerting: AlertingModule; clock: () => Date }): ErasureModule {
  const { core, audit } = deps;
  const service = new Eraser({
    storage: core.storage.repository.erasure,
    db: deps.db,
    served: SERVED_TYPES,
    participants: new ErasureParticipants(),
    jobs: deps.bulk.service.jobs,
    persistAudit: audit.persist,
    flushAudit: () => audit.trail.flush(),
    clock: deps.clock,
  });
  // Modules that keep their own state about patients erase it when a patient is purged.
  const alerting = deps.alerting.service;
  service.participants.register('alerting', (patientId) => alerting.erase(patientId));
  return { service };
}
