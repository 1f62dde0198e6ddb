import { createHash } from 'node:crypto';

/**
 * Fingerprint of a resource's content without the parts the store sets (id, versionId,
 * lastUpdated): keys sorted, so the same content always gives the same text.
 */
export function fingerprint(resource: object): string {
  const { id: _id, meta, ...rest } = resource as { id?: string; meta?: Record<string, unknown> };
  const m = { ...(meta ?? {}) };
  delete m.versionId;
  delete m.lastUpdated;
  const body = Object.keys(m).length ? { ...rest, meta: m } : rest;
  const canon = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canon) : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon((v as Record<string, unknown>)[k])])) : v;
  return createHash('sha256').update(JSON.stringify(canon(body))).digest('hex');
}
