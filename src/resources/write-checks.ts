import type { Resource } from 'fhir/r4';
import { Errors } from '../errors';
import type { CurrentDoc } from '../storage';
import { typeDef } from './registry';

/** The checks and normal forms a write goes through before anything is prepared. */

export function parseVersionTag(etag: string | undefined, header = 'If-Match'): number | undefined {
  if (etag === undefined) return undefined;
  const m = /^(?:W\/)?"?(\d+)"?$/.exec(etag.trim());
  if (!m) throw Errors.badRequest(`Invalid ${header} header "${etag}": expected W/"<versionId>"`, 'MSG_BAD_ETAG');
  return Number(m[1]);
}

export function requireWritableType(type: string): void {
  const def = typeDef(type);
  if (!def) throw Errors.notFound(`Resource type "${type}" is not supported`, 'MSG_UNKNOWN_TYPE');
  if (!def.clientWritable) {
    throw Errors.methodNotAllowed(`${type} resources are written by the server only`, 'MSG_OP_NOT_ALLOWED');
  }
}

export function checkIfMatch(type: string, id: string, current: CurrentDoc | null, ifMatch: number | undefined): void {
  if (ifMatch === undefined) return;
  if (!current || current.deleted) {
    throw Errors.preconditionFailed(`If-Match W/"${ifMatch}" given but ${type}/${id} does not exist`, 'MSG_VERSION_AWARE_CONFLICT');
  }
  if (current.vid !== ifMatch) {
    throw Errors.preconditionFailed(
      `If-Match W/"${ifMatch}" does not match the current version W/"${current.vid}" of ${type}/${id}`,
      'MSG_VERSION_AWARE_CONFLICT',
    );
  }
}
export function stripServerMeta<T extends Resource>(r: T): T {
  if (!r.meta) return r;
  const meta = { ...r.meta };
  delete meta.versionId;
  delete meta.lastUpdated;
  const out = { ...r };
  if (Object.keys(meta).length > 0) out.meta = meta;
  else delete out.meta;
  return out;
}
/** Canonical form of a condition so the same query in another order takes the same lock. */
export function normaliseQuery(query: string): string {
  const params = new URLSearchParams(query);
  const pairs = [...params.entries()].sort(([a, av], [b, bv]) => (a === b ? av.localeCompare(bv) : a.localeCompare(b)));
  return new URLSearchParams(pairs).toString();
}
