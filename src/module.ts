import type { GaugeSpec } from './metrics/registry';
import type { CommitConsumer } from './storage';

/**
 * What a module hands the composition root (`createVigil` in src/app.ts): its post-commit
 * consumers, its gauges and its lifecycle. The root registers them in module order, prepares
 * every module before any worker starts, and stops them in the reverse order.
 */
export interface ModuleParts {
  /** Post-commit consumers, registered with the outbox in module order. */
  consumers?: CommitConsumer[];
  /** Post-commit work run after every consumer, beside the next batch (see Outbox.addConsumer 'last'). */
  finishers?: CommitConsumer[];
  /** Gauges read at every scrape of /metrics. */
  gauges?: GaugeSpec[];
  /** Before any worker runs (indexes, shipped resources): in module order. */
  prepare?(): Promise<void>;
  /** Starts the module's workers, once every module is prepared. */
  start?(): void | Promise<void>;
  /** Stops the module's workers (in reverse module order). */
  stop?(): void | Promise<void>;
}
