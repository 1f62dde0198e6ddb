import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { MongoClient } from 'mongodb';

/** Latency buckets (seconds) for HTTP requests and database commands. */
const LATENCY_BUCKETS = [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** End-to-end notification delay (seconds, commit to delivery). */
const DELAY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300];
/** Database commands reported by name; anything else is "other" (bounded label values). */
const COMMANDS = new Set(['find', 'insert', 'update', 'delete', 'getMore', 'aggregate', 'count', 'findAndModify', 'createIndexes', 'ping']);
/**
 * Commands whose latency feeds back-pressure: the writes themselves. Reads are left out so that a
 * long export scan (a slow `find` on the embedded database) does not refuse device writes.
 */
const WRITE_COMMANDS = new Set(['insert', 'update', 'delete']);

export interface GaugeSpec {
  name: string;
  help: string;
  labelNames?: string[];
  /** Called at every scrape: the current values (one per label combination). */
  collect: () => Promise<{ labels?: Record<string, string>; value: number }[]> | { labels?: Record<string, string>; value: number }[];
}

/**
 * The server's Prometheus metrics, one registry per server instance (prom-client). Modules
 * record through the methods below; modules with a state worth showing (open alert episodes,
 * active subscriptions) register a gauge whose values are read at scrape time (`gauge`).
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'interaction' | 'type' | 'status'>;
  private readonly latency: Histogram<'interaction' | 'type' | 'status'>;
  private readonly ingested: Counter<'type'>;
  private readonly dbLatency: Histogram<'command' | 'outcome'>;
  private readonly deliveries: Counter<'channel'>;
  private readonly attempts: Counter<'channel'>;
  private readonly failures: Counter<'channel'>;
  private readonly delay: Histogram<'channel'>;
  private readonly refusals: Counter<'status' | 'reason'>;

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'vigil_' });
    const r = [this.registry];
    this.requests = new Counter({ name: 'vigil_http_requests_total', help: 'FHIR requests by interaction, resource type and status', labelNames: ['interaction', 'type', 'status'], registers: r });
    this.latency = new Histogram({
      name: 'vigil_http_request_duration_seconds',
      help: 'FHIR request latency by interaction, resource type and status',
      labelNames: ['interaction', 'type', 'status'],
      buckets: LATENCY_BUCKETS,
      registers: r,
    });
    this.ingested = new Counter({ name: 'vigil_resources_committed_total', help: 'Committed resource versions by type (Observations ingested: type="Observation")', labelNames: ['type'], registers: r });
    this.dbLatency = new Histogram({ name: 'vigil_db_command_duration_seconds', help: 'Database command latency (driver command monitoring)', labelNames: ['command', 'outcome'], buckets: LATENCY_BUCKETS, registers: r });
    this.deliveries = new Counter({ name: 'vigil_notification_events_delivered_total', help: 'Subscription events delivered', labelNames: ['channel'], registers: r });
    this.attempts = new Counter({ name: 'vigil_notification_attempts_total', help: 'Notification delivery attempts', labelNames: ['channel'], registers: r });
    this.failures = new Counter({ name: 'vigil_notification_failures_total', help: 'Failed notification delivery attempts', labelNames: ['channel'], registers: r });
    this.refusals = new Counter({ name: 'vigil_writes_refused_total', help: 'Writes refused by back-pressure (503 server, 429 client rate)', labelNames: ['status', 'reason'], registers: r });
    this.delay = new Histogram({ name: 'vigil_notification_delay_seconds', help: 'Delay from a version\'s commit to the delivery of its notification', labelNames: ['channel'], buckets: DELAY_BUCKETS, registers: r });
  }

  /** One finished FHIR request. */
  request(interaction: string, type: string, status: number, seconds: number): void {
    const labels = { interaction, type, status: String(status) };
    this.requests.inc(labels);
    this.latency.observe(labels, seconds);
  }

  /** Committed versions (the outbox hands every one over exactly once per lease holder). */
  committed(events: readonly { type: string }[]): void {
    for (const e of events) this.ingested.inc({ type: e.type });
  }

  /** One notification attempt (rest-hook POST or websocket push) and its outcome. */
  delivery(channel: string, ok: boolean, committedAt: Date[], now: Date): void {
    this.attempts.inc({ channel });
    if (!ok) {
      this.failures.inc({ channel });
      return;
    }
    this.deliveries.inc({ channel }, committedAt.length);
    for (const t of committedAt) this.delay.observe({ channel }, Math.max(0, (now.getTime() - t.getTime()) / 1000));
  }

  /** A write refused by back-pressure. */
  refused(status: number, reason: string): void {
    this.refusals.inc({ status: String(status), reason });
  }

  /** Registers a gauge read at scrape time (the hook for modules with state: alert episodes, subscriptions). */
  gauge(spec: GaugeSpec): void {
    new Gauge({
      name: spec.name,
      help: spec.help,
      labelNames: spec.labelNames ?? [],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const v of await spec.collect()) {
          if (v.labels) this.set(v.labels, v.value);
          else this.set(v.value);
        }
      },
    });
  }

  /**
   * Database latency from the driver's command monitoring (the client must be created with
   * `monitorCommands: true`, as src/server.ts does). Also feeds `onLatency` (back-pressure).
   */
  watchDatabase(client: MongoClient, onLatency?: (ms: number, started: boolean, id: number) => void): void {
    client.on('commandStarted', (e) => {
      if (WRITE_COMMANDS.has(e.commandName)) onLatency?.(0, true, e.requestId);
    });
    client.on('commandSucceeded', (e) => {
      this.dbLatency.observe({ command: COMMANDS.has(e.commandName) ? e.commandName : 'other', outcome: 'ok' }, e.duration / 1000);
      if (WRITE_COMMANDS.has(e.commandName)) onLatency?.(e.duration, false, e.requestId);
    });
    client.on('commandFailed', (e) => {
      this.dbLatency.observe({ command: COMMANDS.has(e.commandName) ? e.commandName : 'other', outcome: 'error' }, e.duration / 1000);
      if (WRITE_COMMANDS.has(e.commandName)) onLatency?.(e.duration, false, e.requestId);
    });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
