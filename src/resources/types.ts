/**
 * The stored document shapes moved to src/storage/types.ts. This re-export stays only while
 * src/subscriptions/delivery.ts (owned by another change this phase) still imports from here.
 */
export type { CurrentDoc, HistoryDoc, WriteMethod } from '../storage/types';
