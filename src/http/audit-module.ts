import type { AuditEvent } from 'fhir/r4';
import type { Logger } from 'pino';
import { AuditTrail } from '../auth/audit';
import { Counters } from '../metrics';
import type { ModuleParts } from '../module';
import type { ResourcesModule } from '../resources/module';
import { accessAudit } from './audit-mapping';
import { safeAuditPersist } from './audit-persist';
import type { AccessRecord } from './edge';

export interface AuditModule extends ModuleParts {
  trail: AuditTrail;
  /** Operator-visible counters (audit events refused, dropped or failed). */
  counters: Counters;
  /** Stores AuditEvents durably (the trail's own write path; the eraser writes through it too). */
  persist(events: AuditEvent[]): Promise<void>;
  /** Every access the edge (or a module beside it) served. */
  onAccess(r: AccessRecord): void;
}

/** Audit events go through the one commit path, as an append-only trail; a bad one never blocks the rest. */
export function createAuditModule(deps: { logger: Logger; core: ResourcesModule }): AuditModule {
  const { logger, core } = deps;
  const counters = new Counters();
  const persist = safeAuditPersist({
    logger,
    counters,
    prepare: (e: AuditEvent) => core.prepareAudit(e),
    insert: (writes) => core.store.commit(writes, { mode: 'trail' }),
  });
  const trail = new AuditTrail({ logger, persist });
  return {
    trail,
    counters,
    persist,
    onAccess(r) {
      if (r.segments[0] === 'metadata') return;
      // An erasure's own access record names no erased id (its AuditEvent holds a hash instead).
      const erasing = r.segments.some((s) => s === '$purge' || s === '$expunge');
      trail.record(accessAudit(erasing ? { ...r, segments: r.segments.filter((_s, i) => i !== 1) } : r));
    },
    stop: () => trail.close(),
  };
}
