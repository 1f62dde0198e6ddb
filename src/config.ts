import path from 'node:path';

/** Typed, validated server configuration, read once from the environment. */
export interface Config {
  port: number;
  /** Public FHIR base URL, without trailing slash (e.g. http://localhost:8080/fhir). */
  baseUrl: string;
  /** MongoDB connection string; undefined means: start the embedded FerretDB. */
  mongodbUri?: string;
  /** Database name inside the MongoDB deployment. */
  dbName: string;
  /** Directory for the embedded database and generated keys. */
  dataDir: string;
  /** EMBEDDED_DB_SYNC_MS: the embedded database fsyncs its commits at most this far apart (0: each commit; src/storage/embedded.ts). */
  embeddedSyncMs: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Largest accepted request body, in bytes. */
  bodyLimitBytes: number;
  /** Deepest accepted JSON nesting. */
  maxJsonDepth: number;
  /** Allowed CORS origins; empty means CORS is off. '*' allows any. */
  corsOrigins: string[];
  authEnabled: boolean;
  /** Default and maximum page size for searches and history. */
  defaultCount: number;
  maxCount: number;
  /** Secret for signing paging cursors; generated per data dir when not given. */
  cursorSecret?: string;
  smartClientsFile?: string;
  /** SMART App Launch users (JSON array, like the clients file); see docs/auth.md. */
  smartUsersFile?: string;
  /** `smart_style_url` of token responses; default: the server's own style document. */
  smartStyleUrl?: string;
  /** Comma-separated JSON descriptions of external token issuers (see README). */
  externalIssuers: ExternalIssuer[];
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /** Derive Observation.interpretation from reference ranges when absent. */
  deriveInterpretation: boolean;
  /** Clinical alerting: episodes, NEWS2, silent devices (src/alerting). */
  alerting: AlertingConfig;
  /** Bounded work per request (README "Limits"): refused before any work is done. */
  limits: Limits;
  /** Bulk Data export: how long finished files stay downloadable, and the job lease length. */
  bulkExportTtlSeconds: number;
  bulkLeaseMs: number;
  /** Resources per stored chunk of an export file (the unit of progress and of memory). */
  bulkChunkResources: number;
  /** Bearer token that GET /metrics requires; unset: /metrics is off. */
  metricsToken?: string;
  /** Back-pressure: writes answer 503 above these (0 turns a check off). */
  maxOutboxLagMs: number;
  maxDbLatencyMs: number;
  /** Seconds a refused write is told to wait (Retry-After). */
  backpressureRetryAfterSeconds: number;
}

export interface AlertingConfig {
  enabled: boolean;
  /** Consecutive normal readings that resolve an episode. */
  normalsToResolve: number;
  /** Minutes without an abnormal reading that resolve an episode; 0 turns the quiet period off. */
  quietMinutes: number;
  news2: boolean;
  /** How old (minutes) a parameter may be to count towards NEWS2. */
  news2FreshnessMinutes: number;
  /** How often durable deadlines (silent devices, quiet periods) are checked. */
  deadlinePollMs: number;
  /** A repeat reading moves an episode Flag's latest triggering reading at most this often (seconds; 0: every outbox batch). */
  latestRefreshSeconds: number;
}

/** The work one request may ask for; every limit names its setting in the refusal. */
export interface Limits {
  /** BUNDLE_MAX_ENTRIES: entries of a batch or transaction Bundle. */
  bundleEntries: number;
  /** JSON_MAX_ARRAY_LENGTH: elements of any one JSON array in a body. */
  arrayElements: number;
  /** RESOURCE_MAX_ELEMENTS: array elements of one resource in all (nested arrays multiply index work). */
  resourceElements: number;
  /** JSON_MAX_STRING_LENGTH: characters of any one JSON string (base64 `data` and narrative `div` excepted). */
  stringLength: number;
  /** SEARCH_FORM_LIMIT: bytes of a `POST _search` form body. */
  searchFormBytes: number;
  /** SEARCH_MAX_PARAMS: parameters of one search, counting each comma-separated alternative. */
  searchParams: number;
  /** SEARCH_MAX_CHAIN_DEPTH: links of a chain (`a.b.c`) or nested `_has`. */
  chainDepth: number;
  /** SEARCH_MAX_INCLUDE_PARAMS: `_include` and `_revinclude` parameters of one search. */
  includeParams: number;
  /** SEARCH_MAX_INCLUDES: resources `_include`/`_revinclude` may add to one page. */
  includeResults: number;
  /** REQUEST_DEADLINE_MS: server-side deadline of one request (503 after it, nothing written). */
  requestDeadlineMs: number;
  /** STORAGE_INLINE_MAX: characters of JSON up to which a resource is stored inside its scanned documents (src/storage/bodies.ts). */
  storageInlineMax: number;
  /** EMBEDDED_DB_WRITERS: writes in flight at once to the embedded database (src/storage/write-gate.ts); MongoDB is not gated. */
  embeddedWriters: number;
}

export interface ExternalIssuer {
  issuer: string;
  audience: string;
  jwksUri: string;
}

export class ConfigError extends Error {}

function int(env: NodeJS.ProcessEnv, name: string, def: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got "${raw}"`);
  }
  return n;
}

function bool(env: NodeJS.ProcessEnv, name: string, def: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return def;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got "${env[name]}"`);
}

/** An optional absolute http(s) URL. */
function url(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const raw = env[name]?.trim();
  if (!raw) return undefined;
  try {
    if (/^https?:$/.test(new URL(raw).protocol)) return raw;
  } catch {
    /* reported below */
  }
  throw new ConfigError(`${name} must be an absolute http(s) URL, got "${raw}"`);
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Parses sizes such as 1mb, 512kb or 1048576. */
function bytes(env: NodeJS.ProcessEnv, name: string, def: number): number {
  const raw = env[name]?.trim().toLowerCase();
  if (!raw) return def;
  const m = /^(\d+)\s*(b|kb|mb)?$/.exec(raw);
  if (!m) throw new ConfigError(`${name} must be a size such as 5mb, 512kb or 1048576, got "${env[name]}"`);
  const mult = m[2] === 'mb' ? 1024 * 1024 : m[2] === 'kb' ? 1024 : 1;
  return Number(m[1]) * mult;
}

function metricsToken(env: NodeJS.ProcessEnv): string | undefined {
  const t = env.METRICS_TOKEN?.trim();
  if (!t) return undefined;
  if (t.length < 16) throw new ConfigError('METRICS_TOKEN must be at least 16 characters');
  return t;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const port = int(env, 'PORT', 8080, 0, 65535);
  const baseUrl = (env.BASE_URL?.trim() || `http://localhost:${port}/fhir`).replace(/\/+$/, '');
  try {
    const u = new URL(baseUrl);
    if (!/^https?:$/.test(u.protocol)) throw new Error('protocol');
  } catch {
    throw new ConfigError(`BASE_URL must be an absolute http(s) URL, got "${env.BASE_URL}"`);
  }
  const logLevel = (env.LOG_LEVEL?.trim() || 'info') as Config['logLevel'];
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${env.LOG_LEVEL}"`);
  }
  let externalIssuers: ExternalIssuer[] = [];
  if (env.SMART_EXTERNAL_ISSUERS?.trim()) {
    try {
      const parsed: unknown = JSON.parse(env.SMART_EXTERNAL_ISSUERS);
      if (!Array.isArray(parsed)) throw new Error('not an array');
      externalIssuers = parsed.map((p: Record<string, unknown>) => {
        if (typeof p.issuer !== 'string' || typeof p.audience !== 'string' || typeof p.jwksUri !== 'string') {
          throw new Error('each issuer needs issuer, audience and jwksUri strings');
        }
        return { issuer: p.issuer, audience: p.audience, jwksUri: p.jwksUri };
      });
    } catch (e) {
      throw new ConfigError(`SMART_EXTERNAL_ISSUERS must be a JSON array: ${(e as Error).message}`);
    }
  }
  const defaultCount = int(env, 'SEARCH_DEFAULT_COUNT', 50, 1, 10000);
  const maxCount = int(env, 'SEARCH_MAX_COUNT', 1000, 1, 10000);
  if (defaultCount > maxCount) throw new ConfigError('SEARCH_DEFAULT_COUNT must not exceed SEARCH_MAX_COUNT');
  const tlsCertFile = env.TLS_CERT_FILE?.trim() || undefined;
  const tlsKeyFile = env.TLS_KEY_FILE?.trim() || undefined;
  if (Boolean(tlsCertFile) !== Boolean(tlsKeyFile)) {
    throw new ConfigError('TLS_CERT_FILE and TLS_KEY_FILE must be set together');
  }
  return {
    port,
    baseUrl,
    mongodbUri: env.MONGODB_URI?.trim() || undefined,
    dbName: env.MONGODB_DB?.trim() || 'vigil',
    dataDir: path.resolve(env.DATA_DIR?.trim() || './data'),
    embeddedSyncMs: int(env, 'EMBEDDED_DB_SYNC_MS', 100, 0, 1000),
    logLevel,
    bodyLimitBytes: bytes(env, 'BODY_LIMIT', 5 * 1024 * 1024),
    maxJsonDepth: int(env, 'JSON_MAX_DEPTH', 64, 4, 1000),
    corsOrigins: (env.CORS_ORIGINS ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    authEnabled: bool(env, 'AUTH_ENABLED', true),
    defaultCount,
    maxCount,
    cursorSecret: env.CURSOR_SECRET?.trim() || undefined,
    smartClientsFile: env.SMART_CLIENTS_FILE?.trim() || undefined,
    smartUsersFile: env.SMART_USERS_FILE?.trim() || undefined,
    smartStyleUrl: url(env, 'SMART_STYLE_URL'),
    externalIssuers,
    tlsCertFile,
    tlsKeyFile,
    deriveInterpretation: bool(env, 'DERIVE_INTERPRETATION', true),
    alerting: {
      enabled: bool(env, 'ALERTING_ENABLED', true),
      normalsToResolve: int(env, 'ALERT_NORMALS_TO_RESOLVE', 2, 1, 100),
      quietMinutes: int(env, 'ALERT_QUIET_PERIOD_MIN', 60, 0, 7 * 24 * 60),
      news2: bool(env, 'NEWS2_ENABLED', true),
      news2FreshnessMinutes: int(env, 'NEWS2_FRESHNESS_MIN', 60, 1, 24 * 60),
      deadlinePollMs: int(env, 'ALERT_DEADLINE_POLL_MS', 1000, 50, 60_000),
      latestRefreshSeconds: int(env, 'ALERT_LATEST_REFRESH_S', 60, 0, 3600),
    },
    bulkExportTtlSeconds: int(env, 'BULK_EXPORT_TTL_SECONDS', 3600, 10, 30 * 86400),
    bulkLeaseMs: int(env, 'BULK_LEASE_MS', 30_000, 500, 600_000),
    bulkChunkResources: int(env, 'BULK_CHUNK_RESOURCES', 1000, 1, 100_000),
    metricsToken: metricsToken(env),
    maxOutboxLagMs: int(env, 'BACKPRESSURE_MAX_OUTBOX_LAG_MS', 30_000, 0, 3_600_000),
    maxDbLatencyMs: int(env, 'BACKPRESSURE_MAX_DB_LATENCY_MS', 5_000, 0, 600_000),
    backpressureRetryAfterSeconds: int(env, 'BACKPRESSURE_RETRY_AFTER_SECONDS', 5, 1, 3600),
    limits: loadLimits(env),
  };
}

/** Defaults sized for a 2-core server (README "Limits"). */
function loadLimits(env: NodeJS.ProcessEnv): Limits {
  return {
    bundleEntries: int(env, 'BUNDLE_MAX_ENTRIES', 500, 1, 100_000),
    arrayElements: int(env, 'JSON_MAX_ARRAY_LENGTH', 1000, 10, 1_000_000),
    resourceElements: int(env, 'RESOURCE_MAX_ELEMENTS', 1000, 10, 10_000_000),
    stringLength: int(env, 'JSON_MAX_STRING_LENGTH', 65_536, 256, 100 * 1024 * 1024),
    searchFormBytes: bytes(env, 'SEARCH_FORM_LIMIT', 64 * 1024),
    searchParams: int(env, 'SEARCH_MAX_PARAMS', 50, 1, 10_000),
    chainDepth: int(env, 'SEARCH_MAX_CHAIN_DEPTH', 3, 1, 10),
    includeParams: int(env, 'SEARCH_MAX_INCLUDE_PARAMS', 10, 0, 1000),
    includeResults: int(env, 'SEARCH_MAX_INCLUDES', 1000, 1, 100_000),
    requestDeadlineMs: int(env, 'REQUEST_DEADLINE_MS', 15_000, 100, 600_000),
    storageInlineMax: int(env, 'STORAGE_INLINE_MAX', 16 * 1024, 1024, 100 * 1024 * 1024),
    embeddedWriters: int(env, 'EMBEDDED_DB_WRITERS', 1, 1, 64),
  };
}
