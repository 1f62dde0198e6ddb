import type { Observation } from 'fhir/r4';
import type { Db } from 'mongodb';
import type { Logger } from 'pino';
import type { AlertingConfig } from '../config';
import type { AlertsPort } from '../http/services';
import type { ModuleParts } from '../module';
import type { ResourcesModule } from '../resources/module';
import { createAlerting, patientReader } from '.';
import type { RangeContext } from '../subscriptions/interpretation';
import type { AlertingService } from './service';

export interface AlertingModuleDeps {
  config: AlertingConfig;
  db: Db;
  logger: Logger;
  core: ResourcesModule;
  clock: () => Date;
}

export interface AlertingModule extends ModuleParts {
  service: AlertingService;
  /** For the HTTP layer (acknowledging a Flag); absent when alerting is switched off. */
  port?: AlertsPort;
  /** Reference ranges for a reading (used by subscriptions' range-aware criteria). */
  rangeContext(obs: Observation): Promise<RangeContext | undefined>;
}

/** Alert episodes and NEWS2: checks client writes, follows committed versions, runs deadlines. */
export function createAlertingModule(deps: AlertingModuleDeps): AlertingModule {
  const { config, core } = deps;
  const alerts = createAlerting({ db: deps.db, config, logger: deps.logger, store: core.store, search: core.search, clock: deps.clock, leaseEpoch: () => core.storage.outbox.heldEpoch() });
  const patients = patientReader(core.store);
  core.addBeforeWrite(async (_ctx, r) => alerts.beforeWrite(r));
  return {
    service: alerts,
    port: config.enabled ? alerts : undefined,
    rangeContext: (obs) => alerts.rangeContext(obs, patients),
    consumers: [(events, info) => alerts.onCommitted(events, info)],
    finishers: [(events) => alerts.onFinished(events)],
    gauges: config.enabled
      ? [{ name: 'vigil_alert_episodes_open', help: 'Open (active) alert episodes', collect: async () => [{ value: await alerts.openEpisodeCount() }] }]
      : [],
    prepare: () => alerts.ensureIndexes(),
    start: () => alerts.start(),
    stop: () => alerts.stop(),
  };
}
