/** Subscriptions and alerts: the module's public surface (see README.md here). */
export { SubscriptionService, type CommittedEvent, type SubscriptionDeps } from './service';
export { subscriptionOptionsFromEnv, type SubscriptionOptions } from './options';
export { verifySignature, signatureHeader } from './signature';
export { TOPIC, EXT as SUBSCRIPTION_EXTENSIONS, SIGNATURE_HEADER } from './constants';
