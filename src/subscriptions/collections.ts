/**
 * The module's stored shapes now live behind the storage wall (src/storage/state/subscriptions.ts).
 * Kept for the importers outside this module (src/erasure, src/bulk) until they import from there.
 */
export type { NotificationRow, StoredPrincipal } from '../storage/state/subscriptions';
