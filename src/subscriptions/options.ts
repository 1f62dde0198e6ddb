import { ConfigError } from '../config';

/** Tunables of the subscription engine; read from the environment with safe defaults. */
export interface SubscriptionOptions {
  /** How long a notification is retried before it is given up for push (it stays available via $events). */
  retryForMs: number;
  /** First back-off delay; doubles per consecutive failure, with full jitter. */
  backoffBaseMs: number;
  /** Longest back-off delay. */
  backoffMaxMs: number;
  /** Consecutive failures after which the Subscription status becomes `error`. */
  errorAfterFailures: number;
  /** Default rest-hook request timeout when the Subscription sets none (backport-timeout). */
  deliveryTimeoutMs: number;
  /** How often idle workers look for work left by other instances or due retries. */
  pollMs: number;
  /** Lease length for delivering one subscription; renewed while working. */
  leaseMs: number;
  /** How long the previous signing secret stays valid after a rotation. */
  secretRotationMs: number;
  /** Lifetime of websocket binding tokens. */
  wsTokenTtlMs: number;
  /** Largest number of notification rows delivered in one rest-hook request (caps backport-max-count). */
  maxEventsPerNotification: number;
}

function num(env: NodeJS.ProcessEnv, name: string, def: number, min: number): number {
  const raw = env[name]?.trim();
  if (!raw) return def;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new ConfigError(`${name} must be a number >= ${min}, got "${raw}"`);
  return n;
}

export function subscriptionOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): SubscriptionOptions {
  return {
    retryForMs: num(env, 'SUBSCRIPTION_RETRY_HOURS', 6, 0) * 3600_000,
    backoffBaseMs: num(env, 'SUBSCRIPTION_BACKOFF_BASE_MS', 1000, 1),
    backoffMaxMs: num(env, 'SUBSCRIPTION_BACKOFF_MAX_MS', 5 * 60_000, 1),
    errorAfterFailures: num(env, 'SUBSCRIPTION_ERROR_AFTER_FAILURES', 3, 1),
    deliveryTimeoutMs: num(env, 'SUBSCRIPTION_DELIVERY_TIMEOUT_MS', 10_000, 100),
    pollMs: num(env, 'SUBSCRIPTION_POLL_MS', 500, 10),
    leaseMs: num(env, 'SUBSCRIPTION_LEASE_MS', 30_000, 100),
    secretRotationMs: num(env, 'SUBSCRIPTION_SECRET_ROTATION_HOURS', 24, 0) * 3600_000,
    wsTokenTtlMs: num(env, 'SUBSCRIPTION_WS_TOKEN_TTL_S', 300, 1) * 1000,
    maxEventsPerNotification: num(env, 'SUBSCRIPTION_MAX_EVENTS_PER_NOTIFICATION', 50, 1),
  };
}
