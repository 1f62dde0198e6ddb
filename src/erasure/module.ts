import type { Db } from 'mongodb';
import type { AuditModule } from '../http/audit-module';
import type { BulkModule } from '../bulk/module';
import type { ModuleParts } from '../module';
import type { ResourcesModule } from '../resources/module';
import { SERVED_TYPES } from '../resources/registry';
import { Eraser } from './eraser';

export interface ErasureModule extends ModuleParts {
  service: Eraser;
}

/** Patient erasure ($purge, $expunge): it reaches search entries, export files and the audit trail. */
export function createErasureModule(deps: { db: Db; core: ResourcesModule; bulk: BulkModule; audit: AuditModule; clock: () => Date }): ErasureModule {
  const { core, audit } = deps;
  const service = new Eraser({
    db: deps.db,
    served: SERVED_TYPES,
    eraseCandidates: (targets, patients) => core.search.eraseCandidates(targets, patients),
    jobs: deps.bulk.service.jobs,
    persistAudit: audit.persist,
    flushAudit: () => audit.trail.flush(),
    clock: deps.clock,
  });
  return { service };
}
