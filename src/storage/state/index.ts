import { COLLECTIONS } from '../collections';
import { ALERTING_COLLECTIONS } from './alerting';
import { AUTH_COLLECTIONS } from './auth';
import { BULK_COLLECTIONS } from './bulk';
import { SUBSCRIPTION_COLLECTIONS } from './subscriptions';

/**
 * Every collection Vigil keeps besides one per served resource type, by owner: storage's own and
 * each module's state. One list, so an operator (and the test that checks no code opens a
 * collection around the wall) sees them all.
 */
export const STATE_COLLECTIONS: Readonly<Record<string, readonly string[]>> = {
  storage: Object.values(COLLECTIONS),
  auth: Object.values(AUTH_COLLECTIONS),
  subscriptions: Object.values(SUBSCRIPTION_COLLECTIONS),
  alerting: Object.values(ALERTING_COLLECTIONS),
  bulk: Object.values(BULK_COLLECTIONS),
};

/** All declared collection names (resource type collections aside). */
export function declaredCollections(): Set<string> {
  return new Set(Object.values(STATE_COLLECTIONS).flat());
}

export { ALERTING_COLLECTIONS, AUTH_COLLECTIONS, BULK_COLLECTIONS, SUBSCRIPTION_COLLECTIONS };
