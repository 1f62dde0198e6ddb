import { randomBytes } from 'node:crypto';
import type { Db } from 'mongodb';
import { Collections } from './collections';

/**
 * A server secret generated once and kept in the `meta` collection, so every instance and
 * every restart signs with the same one. A unique `_id` insert decides a race (atomic everywhere).
 */
export async function storedSecret(cols: Collections, key: string): Promise<string> {
  const found = await cols.meta.findOne({ _id: key });
  if (found) return found.value;
  try {
    await cols.meta.insertOne({ _id: key, value: randomBytes(32).toString('base64url') });
  } catch {
    // Another instance created it first; use theirs.
  }
  const doc = await cols.meta.findOne({ _id: key });
  if (!doc) throw new Error(`could not store the server secret "${key}"`);
  return doc.value;
}

/** storedSecret for callers holding only the database (tools, tests). */
export function serverSecret(db: Db, key: string): Promise<string> {
  return storedSecret(new Collections(db), key);
}
